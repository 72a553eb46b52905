import { describe, expect, it } from 'vitest';
import { concat, narrow, padAxis } from '../src/ops/concat.ts';
import { clip } from '../src/ops/elementwise.ts';
import { OpError, Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { numericGrads, randomArray, relError, runWithGrads, shapeSize, useGpu } from './helpers.ts';
import { concatRef, narrowRef, padAxisRef } from '../src/reference/concat.ts';
import { torchRun, type TorchCase } from './torch.ts';

useGpu();

interface ConcatCase {
  shapes: number[][];
  axis: number;
}

// every axis of 4-D activations (inner sizes 1, 5, 35: scalar path; 4*4: vec4 path), 3 inputs,
// a negative axis, batch 1, a 1-element input and 1-D tensors
const cases: ConcatCase[] = [
  { shapes: [[2, 3, 7, 5], [2, 4, 7, 5]], axis: 1 },
  { shapes: [[1, 3, 4, 4], [1, 7, 4, 4], [1, 1, 4, 4]], axis: 1 },
  { shapes: [[2, 3, 4, 4], [1, 3, 4, 4]], axis: 0 },
  { shapes: [[2, 3, 7, 5], [2, 3, 1, 5]], axis: -2 },
  { shapes: [[2, 3, 7, 5], [2, 3, 7, 2]], axis: 3 },
  { shapes: [[1], [6]], axis: 0 },
];

const label = (c: ConcatCase) => `${c.shapes.map((s) => `[${s}]`).join(' + ')} axis ${c.axis}`;
const norm = (axis: number, rank: number) => (axis < 0 ? axis + rank : axis);

describe('concat', () => {
  for (const c of cases) {
    it(`${label(c)}: forward vs reference, backward vs finite differences`, async () => {
      const rng = new Rng(c.shapes.length * 31 + c.axis + 7);
      const xs = c.shapes.map((s) => randomArray(s, rng));
      const axis = norm(c.axis, c.shapes[0].length);
      const outShape = c.shapes[0].map((d, i) => (i === axis ? c.shapes.reduce((a, s) => a + s[axis], 0) : d));
      const dy = randomArray(outShape, rng);
      const { out, grads } = await runWithGrads((ts) => concat(ts, c.axis), xs.map((data, i) => ({ data, shape: c.shapes[i] })), dy);
      expect(relError(out, concatRef(xs, c.shapes, axis))).toBeLessThan(1e-6);
      const numeric = numericGrads((ins) => concatRef(ins, c.shapes, axis), xs, dy);
      grads.forEach((g, i) => expect(relError(g!, numeric[i])).toBeLessThan(1e-4));
    });
  }

  it('a frozen input gets no gradient', async () => {
    const rng = new Rng(3);
    const shapes = [[2, 3], [2, 5]];
    const xs = shapes.map((s) => randomArray(s, rng));
    const dy = randomArray([2, 8], rng);
    const { grads } = await runWithGrads((ts) => concat(ts, 1), [{ data: xs[0], shape: shapes[0], grad: false }, { data: xs[1], shape: shapes[1] }], dy);
    expect(grads[0]).toBeNull();
    expect(relError(grads[1]!, narrowRef(dy, [2, 8], 1, 3, 5))).toBeLessThan(1e-6);
  });

  it('refuses shapes that differ off the axis, naming op and shapes', () => {
    tidy(() => {
      const a = Tensor.zeros([2, 3, 4]);
      const b = Tensor.zeros([2, 4, 4]);
      expect(() => concat([a, b], 2)).toThrow(OpError);
      expect(() => concat([a, b], 2)).toThrow(/concat: shapes must agree except along axis 2: \[2,3,4\], \[2,4,4\]/);
      expect(() => concat([a], 3)).toThrow(/concat: axis 3 out of range for \[2,3,4\]/);
      expect(() => narrow(a, 1, 2, 2)).toThrow(/narrow: rows \[2, 4\) of axis 1 are outside \[2,3,4\]/);
      expect(() => padAxis(a, 0, -1, 0)).toThrow(/padAxis: pads must be non-negative/);
    });
  });
});

describe('narrow and padAxis', () => {
  const shape = [2, 3, 7, 5];
  for (const [axis, start, length] of [[1, 1, 2], [2, 3, 4], [3, 0, 1], [0, 1, 1]]) {
    it(`narrow axis ${axis} [${start}, ${start + length}) of [${shape}]`, async () => {
      const rng = new Rng(axis * 11 + start);
      const x = randomArray(shape, rng);
      const outShape = shape.map((d, i) => (i === axis ? length : d));
      const dy = randomArray(outShape, rng);
      const { out, grads } = await runWithGrads(([t]) => narrow(t, axis, start, length), [{ data: x, shape }], dy);
      expect(relError(out, narrowRef(x, shape, axis, start, length))).toBeLessThan(1e-6);
      const [numeric] = numericGrads(([v]) => narrowRef(v, shape, axis, start, length), [x], dy);
      expect(relError(grads[0]!, numeric)).toBeLessThan(1e-4);
    });
  }
  for (const [axis, before, after, value] of [[2, 1, 2, 0], [3, 0, 1, -5], [1, 2, 0, 0.5]]) {
    it(`padAxis axis ${axis} +${before}/+${after} with ${value}`, async () => {
      const rng = new Rng(axis * 13 + before);
      const x = randomArray(shape, rng);
      const outShape = shape.map((d, i) => (i === axis ? d + before + after : d));
      const dy = randomArray(outShape, rng);
      const { out, grads } = await runWithGrads(([t]) => padAxis(t, axis, before, after, value), [{ data: x, shape }], dy);
      expect(relError(out, padAxisRef(x, shape, axis, before, after, value))).toBeLessThan(1e-6);
      const [numeric] = numericGrads(([v]) => padAxisRef(v, shape, axis, before, after, value), [x], dy);
      expect(relError(grads[0]!, numeric)).toBeLessThan(1e-4);
    });
  }

  it('pads with -Infinity (the explicit pad step of ONNX max pooling)', async () => {
    const out = await tidy(() => padAxis(Tensor.ones([1, 2]), 1, 1, 0, -Infinity).toArray());
    expect(Array.from(out)).toEqual([-Infinity, 1, 1]);
  });
});

describe('concat, narrow, padAxis and clip match PyTorch', () => {
  it('forward and backward', async () => {
    const rng = new Rng(99);
    const a = randomArray([2, 3, 7, 5], rng);
    const b = randomArray([2, 4, 7, 5], rng);
    const x = randomArray([2, 3, 4, 4], rng, -2, 2);
    const catDy = randomArray([2, 7, 7, 5], rng);
    const narrowDy = randomArray([2, 3, 4, 5], rng);
    const padDy = randomArray([2, 3, 4, 7], rng);
    const clipDy = randomArray([2, 3, 4, 4], rng);
    const torchCases: TorchCase[] = [
      { inputs: { a: { shape: [2, 3, 7, 5], data: a, grad: true }, b: { shape: [2, 4, 7, 5], data: b, grad: true } }, expr: 'torch.cat([a, b], 1)', dy: catDy },
      { inputs: { a: { shape: [2, 3, 7, 5], data: a, grad: true } }, expr: 'torch.narrow(a, 2, 2, 4)', dy: narrowDy },
      { inputs: { x: { shape: [2, 3, 4, 4], data: x, grad: true } }, expr: 'F.pad(x, (2, 1), value=0.25)', dy: padDy },
      { inputs: { x: { shape: [2, 3, 4, 4], data: x, grad: true } }, expr: 'torch.clamp(x, -0.5, 1.0)', dy: clipDy },
    ];
    const ref = await torchRun(torchCases);
    const cat = await runWithGrads((ts) => concat(ts, 1), [{ data: a, shape: [2, 3, 7, 5] }, { data: b, shape: [2, 4, 7, 5] }], catDy);
    expect(relError(cat.out, ref[0].out)).toBeLessThan(1e-6);
    expect(relError(cat.grads[0]!, ref[0].grads!.a)).toBeLessThan(1e-6);
    expect(relError(cat.grads[1]!, ref[0].grads!.b)).toBeLessThan(1e-6);
    const nar = await runWithGrads(([t]) => narrow(t, 2, 2, 4), [{ data: a, shape: [2, 3, 7, 5] }], narrowDy);
    expect(relError(nar.out, ref[1].out)).toBeLessThan(1e-6);
    expect(relError(nar.grads[0]!, ref[1].grads!.a)).toBeLessThan(1e-6);
    const pad = await runWithGrads(([t]) => padAxis(t, 3, 2, 1, 0.25), [{ data: x, shape: [2, 3, 4, 4] }], padDy);
    expect(relError(pad.out, ref[2].out)).toBeLessThan(1e-6);
    expect(relError(pad.grads[0]!, ref[2].grads!.x)).toBeLessThan(1e-6);
    const cl = await runWithGrads(([t]) => clip(t, -0.5, 1.0), [{ data: x, shape: [2, 3, 4, 4] }], clipDy);
    expect(relError(cl.out, ref[3].out)).toBeLessThan(1e-6);
    expect(relError(cl.grads[0]!, ref[3].grads!.x)).toBeLessThan(1e-6);
    expect(shapeSize(ref[2].shape)).toBe(2 * 3 * 4 * 7);
  });
});
