import { describe, expect, it } from 'vitest';
import { concat, split } from '../src/ops/concat.ts';
import { expand, gather, pad, slice, sliceRanges, transpose, type PadMode, type SliceSpec } from '../src/ops/layout.ts';
import { OpError, Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { numericGrads, randomArray, relError, runWithGrads, shapeSize, toGpu, useGpu } from './helpers.ts';
import { expandRef, gatherRef, padRef, sliceRef, transposeRef } from '../src/reference/layout.ts';
import { torchRun, type TorchCase } from './torch.ts';

useGpu();

/** One op on one input: its GPU run, its float64 reference and, when PyTorch can say it, the torch expression over x. */
interface LayoutCase {
  name: string;
  shape: number[];
  gpu: (x: Tensor) => Tensor;
  ref: (x: Float64Array) => Float64Array;
  torch?: string;
}

const transposes: [number[], number[] | undefined][] = [
  [[2, 3, 4], [2, 0, 1]],
  [[1, 5, 1, 3], [3, 1, 0, 2]],
  [[7, 5], undefined],
  [[2, 3, 4], [-1, 0, 1]],
  // Swin's window partition: [B, H/w, w, W/w, w, C] -> [B, H/w, W/w, w, w, C]
  [[2, 2, 3, 2, 3, 2], [0, 1, 3, 2, 4, 5]],
  // the innermost dim stays in place and holds whole vec4s: the kernel moves vec4s
  [[2, 3, 8], [1, 0, 2]],
];

const slices: [number[], SliceSpec][] = [
  [[5, 7], { starts: [1, -3], ends: [4, 100], steps: [1, 2] }],
  [[6, 5], { starts: [-1], ends: [-100], axes: [0], steps: [-2] }],
  [[3, 4, 5], { starts: [0, 3], ends: [5, 0], axes: [-1, 1], steps: [2, -1] }],
  [[4, 3], { starts: [10], ends: [20], axes: [0] }],
  [[1, 9], { starts: [-7], ends: [9], axes: [1], steps: [3] }],
  // whole rows of 8 from an offset of 16: vec4s forward and in the backward's scatter
  [[3, 2, 8], { starts: [1], ends: [3], axes: [0] }],
];

const gathers: [number[], number | number[], number][] = [
  [[5, 4], [3, 0, 3, -1], 0],
  [[2, 5, 3], [4, 4, 4], 1],
  [[3, 4], 2, -1],
  [[2, 3], [], 1],
];

// (shape, target, the broadcast result): ONNX's target may be the smaller one, torch's -1 keeps a dim
const expands: [number[], number[], number[]][] = [
  [[3, 1], [2, 3, 4], [2, 3, 4]],
  [[1], [5], [5]],
  [[2, 1, 3], [2, 4, 3], [2, 4, 3]],
  [[4], [3, 1, 4], [3, 1, 4]],
  [[3, 1], [1, 1], [3, 1]],
  [[3, 1], [-1, 5], [3, 5]],
];

// (shape, pads over axes, mode, value, axes, F.pad of it: (before, after) from the last dim back)
const pads: [number[], number[], PadMode, number, number[] | undefined, string][] = [
  [[2, 3, 4], [0, 1, 2, 1, 0, 1], 'constant', 0.5, undefined, 'F.pad(x, (2, 1, 1, 0, 0, 1), value=0.5)'],
  [[1, 3, 5, 4], [2, 1, 1, 3], 'reflect', 0, [2, 3], "F.pad(x, (1, 3, 2, 1), mode='reflect')"],
  [[1, 2, 5], [3, 2], 'edge', 0, [-1], "F.pad(x, (3, 2), mode='replicate')"],
  [[5], [4, 4], 'reflect', 0, undefined, "F.pad(x.reshape(1, 1, 5), (4, 4), mode='reflect')"],
  [[3, 1], [0, 2, 0, 3], 'edge', 0, undefined, "F.pad(x.reshape(1, 3, 1), (2, 3), mode='replicate')"],
];

/** every axis' pads for padRef, from pads over `axes` */
function allAxes(shape: number[], p: number[], axes: number[] | undefined): number[] {
  const list = (axes ?? shape.map((_, i) => i)).map((a) => (a < 0 ? a + shape.length : a));
  const full = new Array<number>(2 * shape.length).fill(0);
  list.forEach((a, i) => {
    full[a] = p[i];
    full[a + shape.length] = p[i + list.length];
  });
  return full;
}

const cases: LayoutCase[] = [
  ...transposes.map(([shape, perm]): LayoutCase => {
    const p = perm ? perm.map((a) => (a < 0 ? a + shape.length : a)) : shape.map((_, i) => shape.length - 1 - i);
    return { name: `transpose [${shape}] perm ${JSON.stringify(perm)}`, shape, gpu: (x) => transpose(x, perm), ref: (x) => transposeRef(x, shape, p), torch: `x.permute(${p.join(', ')})` };
  }),
  ...slices.map(([shape, spec]): LayoutCase => {
    const ranges = sliceRanges('slice', shape, spec);
    const positive = (spec.steps ?? []).every((s) => s > 0);
    const py = ranges.map((r) => `${r.start}:${r.start + r.count * r.step}:${r.step}`).join(', ');
    return { name: `slice [${shape}] ${JSON.stringify(spec)}`, shape, gpu: (x) => slice(x, spec), ref: (x) => sliceRef(x, shape, ranges), torch: positive ? `x[${py}]` : undefined };
  }),
  ...gathers.map(([shape, indices, axis]): LayoutCase => {
    const a = axis < 0 ? axis + shape.length : axis;
    const list = typeof indices === 'number' ? [indices] : indices;
    const positive = list.map((i) => (i < 0 ? i + shape[a] : i));
    return {
      name: `gather [${shape}] ${JSON.stringify(indices)} axis ${axis}`,
      shape,
      gpu: (x) => gather(x, indices, axis),
      ref: (x) => gatherRef(x, shape, list, a),
      torch: `torch.index_select(x, ${a}, torch.tensor(${JSON.stringify(positive)}, dtype=torch.long))`,
    };
  }),
  ...expands.map(([shape, to, out]): LayoutCase => ({
    name: `expand [${shape}] to [${to}]`,
    shape,
    gpu: (x) => expand(x, to),
    ref: (x) => expandRef(x, shape, out),
    torch: `x.expand(${JSON.stringify(out)})`,
  })),
  ...pads.map(([shape, p, mode, value, axes, torch]): LayoutCase => ({
    name: `pad ${mode} [${shape}] ${JSON.stringify(p)} axes ${JSON.stringify(axes)}`,
    shape,
    gpu: (x) => pad(x, p, mode, value, axes),
    ref: (x) => padRef(x, shape, allAxes(shape, p, axes), mode, value),
    torch,
  })),
];

/** random values as the GPU holds them (f32): a copy is then exact */
const f32Array = (shape: readonly number[], rng: Rng) => Float64Array.from(Float32Array.from(randomArray(shape, rng)));

function inputs(c: LayoutCase, seed: number) {
  const rng = new Rng(seed);
  const x = f32Array(c.shape, rng);
  const y = c.ref(x);
  return { x, dy: randomArray([y.length], rng), y };
}

describe('data movement vs the float64 reference and finite differences', () => {
  cases.forEach((c, i) => {
    it(c.name, async () => {
      const inp = inputs(c, 10 + i);
      const { out, grads } = await runWithGrads(([t]) => c.gpu(t), [{ data: inp.x, shape: c.shape }], inp.dy);
      expect(relError(out, inp.y)).toBe(0);
      const [numeric] = numericGrads(([v]) => c.ref(v), [inp.x], inp.dy);
      expect(relError(grads[0]!, numeric)).toBeLessThan(1e-6);
    });
  });

  it('split into listed sizes and into pieces of one size; gradients through every piece', async () => {
    for (const [shape, sizes, axis] of [[[5, 7], [2, 3, 2], 1], [[7, 3], 3, 0], [[2, 4], [0, 4], -1]] as [number[], number | number[], number][]) {
      const rng = new Rng(shape[0]);
      const x = f32Array(shape, rng);
      const a = axis < 0 ? axis + shape.length : axis;
      const lengths = typeof sizes === 'number' ? [3, 3, 1] : sizes;
      // the pieces in reverse order, joined again: every piece's gradient is needed
      const starts = lengths.map((_, k) => lengths.slice(0, k).reduce((s, v) => s + v, 0));
      const order = lengths.map((_, k) => lengths.length - 1 - k);
      const ref = (v: Float64Array) => {
        const perm = order.flatMap((k) => Array.from({ length: lengths[k] }, (_, j) => starts[k] + j));
        return gatherRef(v, shape, perm, a);
      };
      const dy = randomArray(shape, rng);
      const { out, grads } = await runWithGrads(([t]) => concat(split(t, sizes, axis).reverse(), axis), [{ data: x, shape }], dy);
      expect(tidy(() => split(toGpu(x, shape), sizes, axis).map((p) => p.shape[a]))).toEqual(lengths);
      expect(relError(out, ref(x))).toBe(0);
      const [numeric] = numericGrads(([v]) => ref(v), [x], dy);
      expect(relError(grads[0]!, numeric)).toBeLessThan(1e-6);
    }
  });

  it('matches PyTorch forward and backward', async () => {
    const withTorch = cases.filter((c) => c.torch);
    const runs = withTorch.map((c, i) => ({ c, inp: inputs(c, 200 + i) }));
    const torchCases: TorchCase[] = runs.map(({ c, inp }) => ({ inputs: { x: { shape: c.shape, data: inp.x, grad: true } }, expr: `(${c.torch}).reshape(-1)`, dy: inp.dy }));
    torchCases.push({ inputs: { x: { shape: [5, 7], data: f32Array([5, 7], new Rng(1)), grad: true } }, expr: 'torch.cat(list(reversed(torch.split(x, [2, 3, 2], 1))), 1).reshape(-1)', dy: randomArray([35], new Rng(2)) });
    const ref = await torchRun(torchCases);
    for (const [i, { c, inp }] of runs.entries()) {
      const { out, grads } = await runWithGrads(([t]) => c.gpu(t), [{ data: inp.x, shape: c.shape }], inp.dy);
      expect(relError(out, ref[i].out), c.name).toBe(0);
      expect(relError(grads[0]!, ref[i].grads!.x), c.name).toBeLessThan(1e-6);
    }
    const last = torchCases[torchCases.length - 1];
    const s = await runWithGrads(([t]) => concat(split(t, [2, 3, 2], 1).reverse(), 1), [{ data: Float64Array.from(last.inputs.x.data), shape: [5, 7] }], Float64Array.from(last.dy!));
    expect(relError(s.out, ref[runs.length].out)).toBe(0);
    expect(relError(s.grads[0]!, ref[runs.length].grads!.x)).toBeLessThan(1e-6);
  });

  it('refuses bad permutations, slices, indices, shapes and pads, naming the op and the shapes', () => {
    tidy(() => {
      const x = Tensor.zeros([2, 3, 4]);
      const bad: [() => unknown, RegExp][] = [
        [() => transpose(x, [0, 1]), /transpose: perm \[0,1\] is not a permutation of the 3 dims of \[2,3,4\]/],
        [() => transpose(x, [0, 0, 1]), /transpose: perm \[0,0,1\] is not a permutation/],
        [() => slice(x, { starts: [0], ends: [1], steps: [0] }), /slice: step 0 on axis 0 must be a non-zero integer/],
        [() => slice(x, { starts: [0, 1], ends: [1] }), /slice: starts, ends, axes and steps differ in length/],
        [() => slice(x, { starts: [0], ends: [1], axes: [3] }), /slice: axis 3 out of range for \[2,3,4\]/],
        [() => slice(x, { starts: [0, 0], ends: [1, 1], axes: [1, -2] }), /slice: axis 1 given twice/],
        [() => gather(x, [0, 3], 1), /gather: index 3 is out of range for axis 1 of \[2,3,4\]/],
        [() => gather(x, [1.5], 0), /gather: index 1.5/],
        [() => expand(x, [3, 3, 4]), /expand: \[2,3,4\] does not broadcast to \[3,3,4\]/],
        [() => pad(x, [1, 1], 'constant'), /pad: expected 6 non-negative integer pads for x\[2,3,4\], got \[1,1\]/],
        [() => pad(x, [0, 0, 4, 0, 0, 0], 'reflect'), /pad: reflect pads 4, 0 of axis 2 must be smaller than its size 4/],
        [() => pad(x, [1, 1], 'wrap' as PadMode, 0, [0]), /pad: mode must be 'constant', 'reflect' or 'edge'/],
        [() => split(x, [1, 1], 1), /split: sizes \[1,1\] do not split axis 1 of \[2,3,4\] \(3 rows\)/],
        [() => split(x, 0, 1), /split: the piece size 0 must be a positive integer/],
      ];
      for (const [fn, msg] of bad) {
        expect(fn).toThrow(OpError);
        expect(fn).toThrow(msg);
      }
    });
  });

  it('empty results: a slice past the end, no indices', async () => {
    const shapes = await tidy(async () => {
      const x = toGpu(randomArray([4, 3], new Rng(1)), [4, 3]);
      return [slice(x, { starts: [5], ends: [9], axes: [0] }).shape, gather(x, [], 0).shape];
    });
    expect(shapes).toEqual([[0, 3], [0, 3]]);
    expect(shapeSize([0, 3])).toBe(0);
  });
});
