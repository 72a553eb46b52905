import { describe, expect, it } from 'vitest';
import { max, mean, reduceSum, sum, type ReduceOptions } from '../src/ops/reduce.ts';
import { maxBackwardRef, maxRef, meanRef, sumBackwardRef, sumRef } from '../src/reference/reduce.ts';
import { Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { numericGrads, randomArray, relError, runWithGrads, toGpu, useGpu, withGpuLayouts } from './helpers.ts';
import { torchRun } from './torch.ts';

useGpu();

const OPS = { sum: [sum, sumRef], mean: [mean, meanRef], max: [max, maxRef] } as const;
type OpName = keyof typeof OPS;

const allAxes = (shape: number[]) => shape.map((_, i) => i);
const sortedAxes = (shape: number[], axes: number[] | undefined) => (axes ?? allAxes(shape)).map((a) => (a < 0 ? a + shape.length : a)).sort((a, b) => a - b);
const expectedShape = (shape: number[], axes: number[], keepdim: boolean) =>
  keepdim ? shape.map((d, i) => (axes.includes(i) ? 1 : d)) : shape.filter((_, i) => !axes.includes(i));

// [shape, axes]: non-contiguous axes, axes at both ends, size-1 dims, odd sizes, vec4-friendly
// inner sizes (8, 4: vec4 rows, or vec4 columns of 4 outputs when the innermost dim is kept), sizes
// that need several slices per output (a second pass) and several lanes per output with several
// outputs per workgroup (rows and columns)
const CASES: [number[], number[] | undefined][] = [
  [[2, 3, 5, 7], [1, 3]],
  [[2, 3, 5, 7], [0]],
  [[2, 3, 5, 7], [-1]],
  [[2, 3, 5, 7], [0, 3]],
  [[2, 3, 5, 7], undefined],
  [[2, 3, 5, 7], []],
  [[1, 5, 1, 3], [0, 2]],
  [[3, 7, 5], [0, 2]],
  [[6, 4, 5, 8], [1, 3]],
  [[3, 8], [1]],
  [[1], [0]],
  [[3, 40001], [1]],
  [[40003, 3], [0]],
  [[2, 20000, 3], [1]],
  [[4001, 24], [0]],
  [[40000, 4], [0]],
  [[3, 8, 5, 4], [1, 2]],
  [[24, 5001], [1]],
  [[5, 2, 3, 2, 3, 2], [0, 2, 4]],
];

describe('reductions over axes: forward vs the float64 reference', () => {
  for (const [shape, axes] of CASES) {
    it(`${JSON.stringify(shape)} axes ${JSON.stringify(axes)}`, async () => {
      const x = randomArray(shape, new Rng(shape.reduce((a, b) => a * 31 + b, 7)));
      const norm = sortedAxes(shape, axes);
      for (const keepdim of [false, true]) {
        const results = await tidy(async () => {
          const t = toGpu(x, shape);
          const opts: ReduceOptions = { axes, keepdim };
          return Promise.all((Object.keys(OPS) as OpName[]).map(async (name) => {
            const y = OPS[name][0](t, opts);
            return { name, shape: [...y.shape], out: await y.toArray() };
          }));
        });
        for (const r of results) {
          expect(r.shape, `${r.name} keepdim ${keepdim}`).toEqual(expectedShape(shape, norm, keepdim));
          expect(relError(r.out, OPS[r.name][1](x, shape, norm)), `${r.name} keepdim ${keepdim}`).toBeLessThan(1e-5);
        }
      }
    });
  }

  it('the layouts a GPU gets (256-wide workgroups, many lanes per output) give the same results', async () => {
    for (const [shape, axes] of [[[2, 3, 5, 7], [1, 3]], [[3, 40001], [1]], [[40003, 3], [0]], [[5000, 24], [0]], [[24, 5001], [1]], [[6, 4, 5, 8], [1, 3]]] as [number[], number[]][]) {
      const x = randomArray(shape, new Rng(shape[0]));
      const dy = randomArray(expectedShape(shape, axes, false), new Rng(3));
      for (const name of ['sum', 'max'] as const) {
        const { out, grads } = await withGpuLayouts(() => runWithGrads(([t]) => OPS[name][0](t, { axes }), [{ data: x, shape }], dy));
        expect(relError(out, OPS[name][1](x, shape, axes)), `${name} ${JSON.stringify(shape)}`).toBeLessThan(1e-5);
        const ref = name === 'max' ? maxBackwardRef(x, shape, axes, dy) : sumBackwardRef(shape, axes, dy);
        expect(relError(grads[0]!, ref), `${name} ${JSON.stringify(shape)} backward`).toBeLessThan(1e-6);
      }
    }
  });

  it('whole-tensor sums of positive values keep their precision (9M elements)', async () => {
    const n = 9_000_001;
    const rng = new Rng(9);
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = rng.next();
    const s = await tidy(() => sum(Tensor.from(x, [n])).toArray());
    let ref = 0;
    for (let i = 0; i < n; i++) ref += x[i];
    expect(relError(s, [ref])).toBeLessThan(1e-5);
  });

  it('reduceSum scales the result into [1]', async () => {
    const x = randomArray([1000], new Rng(5), 0, 1);
    const { shape, out } = await tidy(async () => {
      const y = reduceSum(toGpu(x, [1000]), 0.25, 'test');
      return { shape: y.shape, out: await y.toArray() };
    });
    expect(shape).toEqual([1]);
    expect(relError(out, [sumRef(x, [1000], [0])[0] * 0.25])).toBeLessThan(1e-5);
  });

  it('empty tensors: sum 0, mean NaN, max refused; a 0-d tensor reduces to itself', async () => {
    const [s, m] = await tidy(() => {
      const t = Tensor.zeros([2, 0, 3]);
      return Promise.all([sum(t, { axes: 1 }).toArray(), mean(t, { axes: [1] }).toArray()]);
    });
    expect([...s]).toEqual([0, 0, 0, 0, 0, 0]);
    expect(m.every(Number.isNaN)).toBe(true);
    expect(() => tidy(() => max(Tensor.zeros([2, 0]), { axes: 1 }))).toThrow(/max over the empty axes \[1\] of \[2,0\]/);
    expect(await tidy(() => sum(Tensor.from([2.5], []), { axes: -1 }).toArray())).toEqual(Float32Array.of(2.5));
    expect(tidy(() => sum(Tensor.zeros([0, 3]), { axes: 1 }).shape)).toEqual([0]);
  });

  it('max propagates NaN, as torch.amax; -inf is a maximum like any other', async () => {
    const x = Float32Array.of(1, NaN, 3, -Infinity, -Infinity, -Infinity, 2, 5, -1, 0, 4, 4);
    const out = await tidy(() => max(Tensor.from(x, [4, 3]), { axes: 1 }).toArray());
    expect(out[0]).toBeNaN();
    expect([...out.slice(1)]).toEqual([-Infinity, 5, 4]);
    const cols = await tidy(() => max(Tensor.from(x, [3, 4]), { axes: 0 }).toArray());
    expect(cols[1]).toBeNaN();
    expect([cols[0], cols[2], cols[3]]).toEqual([1, 4, 5]);
  });

  it('bad axes are one line naming the op and the shape', () => {
    tidy(() => {
      const t = Tensor.zeros([2, 3]);
      expect(() => sum(t, { axes: 2 })).toThrow('sum: axis 2 is out of range for [2,3]');
      expect(() => mean(t, { axes: [0, -2] })).toThrow('mean: axis repeated in [0,-2] for [2,3]');
      expect(() => max(t, { axes: [0.5] })).toThrow('max: axis 0.5 is out of range for [2,3]');
    });
  });
});

describe('reductions over axes: backward', () => {
  const gradCases: [number[], number[]][] = [[[2, 3, 5, 7], [1, 3]], [[3, 7, 5], [0]], [[3, 8], [1]], [[3, 8], [0]], [[1, 5, 1, 3], [3, 0]]];
  for (const name of Object.keys(OPS) as OpName[]) {
    for (const [shape, axes] of gradCases) {
      it(`${name} ${JSON.stringify(shape)} axes ${JSON.stringify(axes)} vs finite differences`, async () => {
        const rng = new Rng(shape.length * 13 + axes.length);
        const x = randomArray(shape, rng);
        const norm = sortedAxes(shape, axes);
        const dy = randomArray(expectedShape(shape, norm, true), rng);
        const [op, ref] = OPS[name];
        const { out, grads } = await runWithGrads(([t]) => op(t, { axes, keepdim: true }), [{ data: x, shape }], dy);
        expect(relError(out, ref(x, shape, norm))).toBeLessThan(1e-5);
        const [numeric] = numericGrads(([v]) => ref(v, shape, norm), [x], dy);
        expect(relError(grads[0]!, numeric)).toBeLessThan(1e-4);
      });
    }
  }

  it('max shares the gradient evenly among tied maxima, also across slices and vec4 lanes', async () => {
    for (const [shape, axes] of [[[4, 6, 5], [0, 2]], [[3, 20000], [1]], [[20000, 3], [0]], [[2, 8], [1]], [[40000, 4], [0]], [[6, 8], [0]]] as [number[], number[]][]) {
      const rng = new Rng(shape[1]);
      // few distinct values: every output has several maxima
      const x = randomArray(shape, rng).map((v) => Math.round(v * 2));
      const dy = randomArray(expectedShape(shape, axes, false), rng);
      const { out, grads } = await runWithGrads(([t]) => max(t, { axes }), [{ data: x, shape }], dy);
      expect(relError(out, maxRef(x, shape, axes))).toBe(0);
      expect(relError(grads[0]!, maxBackwardRef(x, shape, axes, dy))).toBeLessThan(1e-6);
    }
  });

  it('matches PyTorch forward and backward (x.sum, x.mean, torch.amax with ties)', async () => {
    const rng = new Rng(21);
    const cases: { name: OpName; shape: number[]; axes: number[]; keepdim: boolean; ties: boolean }[] = [
      { name: 'sum', shape: [2, 3, 5, 7], axes: [1, 3], keepdim: false, ties: false },
      { name: 'sum', shape: [2, 3, 5, 7], axes: [0, 1, 2, 3], keepdim: false, ties: false },
      { name: 'mean', shape: [2, 3, 5, 7], axes: [0, 2], keepdim: true, ties: false },
      { name: 'mean', shape: [4, 1, 9], axes: [2], keepdim: false, ties: false },
      { name: 'max', shape: [2, 3, 5, 7], axes: [1, 3], keepdim: true, ties: false },
      { name: 'max', shape: [3, 4, 6], axes: [0, 2], keepdim: false, ties: true },
    ];
    const data = cases.map((c) => {
      const x = randomArray(c.shape, rng).map((v) => (c.ties ? Math.round(v * 2) : v));
      return { x, dy: randomArray(expectedShape(c.shape, c.axes, c.keepdim), rng) };
    });
    const expr = { sum: 'x.sum', mean: 'x.mean', max: 'x.amax' } as const;
    const ref = await torchRun(cases.map((c, i) => ({
      inputs: { x: { shape: c.shape, data: data[i].x, grad: true } },
      expr: `${expr[c.name]}(dim=${JSON.stringify(c.axes)}, keepdim=${c.keepdim ? 'True' : 'False'})`,
      dy: data[i].dy,
    })));
    for (const [i, c] of cases.entries()) {
      const { out, grads } = await runWithGrads(([t]) => OPS[c.name][0](t, { axes: c.axes, keepdim: c.keepdim }), [{ data: data[i].x, shape: c.shape }], data[i].dy);
      expect(relError(out, ref[i].out), c.name).toBeLessThan(1e-5);
      expect(relError(grads[0]!, ref[i].grads!.x), c.name).toBeLessThan(1e-5);
    }
  });
});
