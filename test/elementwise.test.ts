import { describe, expect, it } from 'vitest';
import { div, ELEMENTWISE, elementwise, elementwiseSample as sample, hardSigmoid, maximum, minimum, mul, pow, sub, where, type ElementwiseName } from '../src/ops/elementwise.ts';
import { gradcheck, gradcheckSpec } from '../src/ops/gradcheck.ts';
import { ELEMENTWISE_REF, erfRef } from '../src/reference/elementwise.ts';
import { Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { numericGrads, randomArray, relError, runWithGrads, toGpu, useGpu } from './helpers.ts';
import { torchRun } from './torch.ts';

useGpu();

const NAMES = Object.keys(ELEMENTWISE) as ElementwiseName[];
const ALPHA = 0.3;
const BETA = 0.6;
const scalars = (name: ElementwiseName): [number, number] => (name === 'clip' ? [-ALPHA, BETA] : [ALPHA, BETA]);

/** Forward and every input's gradient against the reference and its finite differences. */
async function checkRow(name: ElementwiseName, shapes: number[][], seed: number): Promise<void> {
  // at the row's scalars of `scalars` (the spec's defaults)
  const r = await gradcheck(gradcheckSpec(name.toLowerCase())!, { shapes, seed });
  expect(r.forward.rel, `${name} forward`).toBeLessThan(2e-6);
  for (const g of r.grads) expect(g.rel, `${name} grad ${g.input}`).toBeLessThan(1e-4);
}

describe('elementwise table: same shapes', () => {
  // 1 and 35 are not multiples of 4 (scalar path), 2*3*4*4 is (vec4 path)
  const shapes = [[1], [5, 7], [2, 3, 4, 4]];
  for (const name of NAMES) {
    it(`${name} forward and backward`, async () => {
      for (const shape of shapes) await checkRow(name, ELEMENTWISE[name].inputs.map(() => shape), shape.length * 97 + name.length);
    });
  }
});

describe('elementwise table: numpy broadcasting', () => {
  // both ways, size-1 dims inside, leading dims missing (or only leading 1s), a [1] and a 0-d operand; the first and
  // the last two have an innermost dim of 4s (vec4 walks: operands running along it or repeating)
  const pairs: number[][][] = [
    [[2, 3, 5, 4], [3, 1, 1]],
    [[3, 8], [8]],
    [[2, 1, 6, 4], [2, 5, 1, 4]],
    [[2, 3, 1, 1], [2, 3, 5, 7]],
    [[3, 5, 7], [7]],
    [[4, 1], [1, 6]],
    [[2, 1, 3], [2, 5, 1]],
    [[5, 3], [1]],
    [[], [3, 2]],
    [[7], [1, 7]],
  ];
  const binary = NAMES.filter((n) => ELEMENTWISE[n].inputs.length === 2);
  for (const name of binary) {
    it(`${name} forward and backward`, async () => {
      for (const [i, shapes] of pairs.entries()) await checkRow(name, shapes, 1000 + i * 7 + name.length);
    });
  }

  it('where over a broadcast condition and operands', async () => {
    await checkRow('where', [[2, 1, 4], [3, 1], [2, 3, 4]], 77);
    await checkRow('where', [[5, 6], [6], []], 78);
  });

  it('shapes that do not broadcast are one line naming the op', () => {
    tidy(() => {
      expect(() => mul(Tensor.zeros([2, 3]), Tensor.zeros([4, 3]))).toThrow('mul: shapes [2,3] and [4,3] do not broadcast');
    });
  });
});

describe('elementwise table: number operands', () => {
  it('x * 0.5, 1 - x, 1 / x, x^2 and x^3 of negative x, 2^x need no tensor for the number', async () => {
    const shape = [3, 5];
    const rng = new Rng(5);
    const x = randomArray(shape, rng).map((v) => Math.sign(v) * (0.2 + Math.abs(v)));
    const dy = randomArray(shape, rng);
    const cases: [(t: Tensor) => Tensor, (v: number) => number][] = [
      [(t) => mul(t, 0.5), (v) => v * 0.5],
      [(t) => sub(1, t), (v) => 1 - v],
      [(t) => div(1, t), (v) => 1 / v],
      [(t) => pow(t, 2), (v) => v ** 2],
      [(t) => pow(t, 3), (v) => v ** 3],
      [(t) => pow(t, -1), (v) => v ** -1],
      [(t) => pow(2, t), (v) => 2 ** v],
      [(t) => where(t, 0, t), (v) => (v !== 0 ? 0 : v)],
    ];
    for (const [i, [op, f]] of cases.entries()) {
      const { out, grads } = await runWithGrads(([t]) => op(t), [{ data: x, shape }], dy);
      const ref = x.map(f);
      expect(relError(out, ref), `case ${i}`).toBeLessThan(2e-6);
      const [numeric] = numericGrads(([v]) => v.map(f), [x], dy);
      expect(relError(grads[0]!, numeric), `case ${i} grad`).toBeLessThan(1e-4);
    }
  });

  it('pow follows torch at the edges: 0^0 = 1, 0^2 = 0, (-2)^0.5 = NaN, (-2)^3 = -8', async () => {
    const a = Float32Array.of(0, 0, -2, -2, -1.5);
    const b = Float32Array.of(0, 2, 0.5, 3, 2);
    const out = await tidy(() => pow(Tensor.from(a, [5]), Tensor.from(b, [5])).toArray());
    expect(out[0]).toBe(1);
    expect(out[1]).toBe(0);
    expect(out[2]).toBeNaN();
    expect(relError(out.slice(3), [-8, 2.25])).toBeLessThan(1e-6);
  });

  it('maximum and minimum propagate NaN, as torch (vec4 and scalar walks)', async () => {
    for (const n of [4, 5]) {
      const a = Float32Array.from({ length: n }, (_, i) => (i === 1 ? NaN : i));
      const b = Float32Array.from({ length: n }, (_, i) => (i === 2 ? NaN : 2));
      const [hi, lo] = await tidy(() => Promise.all([maximum(Tensor.from(a, [n]), Tensor.from(b, [n])).toArray(), minimum(Tensor.from(a, [n]), Tensor.from(b, [n])).toArray()]));
      for (const out of [hi, lo]) expect([out[1], out[2]].every(Number.isNaN)).toBe(true);
      expect(hi[0]).toBe(2);
      expect(lo[3]).toBe(2);
    }
  });

  it('numbers alone, or two of them, are refused', () => {
    tidy(() => {
      expect(() => elementwise('clip', [2])).toThrow('clip: needs at least one tensor input');
      expect(() => elementwise('mul', [2, 3])).toThrow('mul: needs at least one tensor input');
      expect(() => where(Tensor.zeros([2]), 1, 2)).toThrow('where: takes at most one number operand, got 2');
    });
  });
});

describe('elementwise table: saturating and special inputs', () => {
  it('sigmoid, tanh, silu, the GELUs stay finite and exact far from 0; erf is within 1.5e-7', async () => {
    const x = Float64Array.of(-100, -50, -20, -9, -4.5, -1e-3, 0, 1e-3, 4.5, 9, 20, 50, 100);
    for (const name of ['sigmoid', 'tanh', 'silu', 'gelu', 'geluTanh', 'erf', 'hardSwish'] as const) {
      const out = await tidy(() => elementwise(name, [toGpu(x, [x.length])]).toArray());
      const ref = x.map((v) => ELEMENTWISE_REF[name]([v], 0, 0));
      for (let i = 0; i < x.length; i++) {
        expect(Math.abs(out[i] - ref[i]), `${name}(${x[i]})`).toBeLessThanOrEqual(2e-7 * Math.max(1, Math.abs(ref[i])));
      }
    }
    // the reference erf against known values (Abramowitz & Stegun, table 7.1)
    expect(Math.abs(erfRef(0.5) - 0.520499877813047)).toBeLessThan(1e-14);
    expect(Math.abs(erfRef(2) - 0.995322265018953)).toBeLessThan(1e-14);
    expect(Math.abs(erfRef(3.5) - 0.999999256901628)).toBeLessThan(1e-14);
  });
});

describe('elementwise table vs PyTorch', () => {
  it('every row, forward and backward, broadcasting the binary ones', async () => {
    const torchExpr: Record<ElementwiseName, string> = {
      relu: 'F.relu(x)', leakyRelu: `F.leaky_relu(x, ${ALPHA})`, scale: `x * ${ALPHA}`, clip: `torch.clamp(x, ${-ALPHA}, ${BETA})`,
      sigmoid: 'torch.sigmoid(x)', tanh: 'torch.tanh(x)', hardSigmoid: `torch.clamp(${ALPHA} * x + ${BETA}, 0, 1)`, hardSwish: 'F.hardswish(x)',
      silu: 'F.silu(x)', gelu: 'F.gelu(x)', geluTanh: "F.gelu(x, approximate='tanh')", erf: 'torch.erf(x)', exp: 'torch.exp(x)',
      log: 'torch.log(x)', sqrt: 'torch.sqrt(x)', neg: '-x', abs: 'torch.abs(x)', reciprocal: 'torch.reciprocal(x)',
      add: 'a + b', sub: 'a - b', mul: 'a * b', div: 'a / b', pow: 'torch.pow(a, b)', maximum: 'torch.maximum(a, b)',
      minimum: 'torch.minimum(a, b)', where: 'torch.where(c != 0, a, b)',
    };
    const shapesOf = (name: ElementwiseName): number[][] =>
      ({ 1: [[3, 5]], 2: [[2, 3, 5], [3, 1]], 3: [[3, 1], [5], [2, 3, 5]] })[ELEMENTWISE[name].inputs.length as 1 | 2 | 3];
    const rng = new Rng(3);
    const data = NAMES.map((name) => {
      const shapes = shapesOf(name);
      return { shapes, inputs: shapes.map((s, k) => sample(name, k, s, rng)), dy: randomArray([2, 3, 5].slice(3 - Math.max(...shapes.map((s) => s.length))), rng) };
    });
    // torch's F.hardsigmoid fixes alpha = 1/6, beta = 1/2: the wrapper's defaults, checked last
    const hard = { x: sample('hardSigmoid', 0, [4, 5], rng), dy: randomArray([4, 5], rng) };
    const ref = await torchRun([
      ...NAMES.map((name, i) => ({
        inputs: Object.fromEntries(ELEMENTWISE[name].inputs.map((v, k) => [v, { shape: data[i].shapes[k], data: data[i].inputs[k], grad: v !== 'c' }])),
        expr: torchExpr[name],
        dy: data[i].dy,
      })),
      { inputs: { x: { shape: [4, 5], data: hard.x, grad: true } }, expr: 'F.hardsigmoid(x)', dy: hard.dy },
    ]);
    for (const [i, name] of NAMES.entries()) {
      const d = data[i];
      const { out, grads } = await runWithGrads(
        (ts) => elementwise(name, ts, ...scalars(name)),
        d.inputs.map((x, k) => ({ data: x, shape: d.shapes[k], grad: ELEMENTWISE[name].inputs[k] !== 'c' })),
        d.dy,
      );
      expect(relError(out, ref[i].out), name).toBeLessThan(2e-6);
      ELEMENTWISE[name].inputs.forEach((v, k) => {
        if (v !== 'c') expect(relError(grads[k]!, ref[i].grads![v]), `${name} grad ${v}`).toBeLessThan(2e-6);
      });
    }
    const { out, grads } = await runWithGrads(([t]) => hardSigmoid(t), [{ data: hard.x, shape: [4, 5] }], hard.dy);
    expect(relError(out, ref[NAMES.length].out)).toBeLessThan(2e-6);
    expect(relError(grads[0]!, ref[NAMES.length].grads!.x)).toBeLessThan(2e-6);
  });
});
