import { describe, expect, it } from 'vitest';
import { mean, reduceSum, sum } from '../src/ops/reduce.ts';
import { Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { numericGrads, randomArray, relError, runWithGrads, toGpu, useGpu } from './helpers.ts';
import { torchRun } from './torch.ts';

useGpu();

// float64 references: the sum of all elements, and the sum over their number
const sumRef = (x: Float64Array): Float64Array => Float64Array.of(x.reduce((a, b) => a + b, 0));
const meanRef = (x: Float64Array): Float64Array => Float64Array.of(sumRef(x)[0] / x.length);

describe('sum and mean', () => {
  // around the workgroup size (256), a non-multiple of 4, and a length with several workgroups
  for (const n of [1, 3, 255, 256, 257, 100003]) {
    it(`forward, length ${n}`, async () => {
      // positive values keep the sum far from zero, so the relative error measures the reduction
      const x = randomArray([n], new Rng(n), 0, 1);
      const [s, m] = await tidy(() => {
        const t = toGpu(x, [n]);
        return Promise.all([sum(t).toArray(), mean(t).toArray()]);
      });
      expect(relError(s, sumRef(x))).toBeLessThan(1e-5);
      expect(relError(m, meanRef(x))).toBeLessThan(1e-5);
    });
  }

  it('forward over signed values and a multi-dimensional shape', async () => {
    const shape = [3, 7, 5];
    const x = randomArray(shape, new Rng(3));
    const s = await tidy(() => sum(toGpu(x, shape)).toArray());
    expect(relError(s, sumRef(x))).toBeLessThan(1e-5);
  });

  it('forward, 9M elements (the number of partial sums is capped)', async () => {
    const n = 9_000_001;
    const rng = new Rng(9);
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = rng.next();
    const s = await tidy(() => sum(Tensor.from(x, [n])).toArray());
    let ref = 0;
    for (let i = 0; i < n; i++) ref += x[i];
    expect(relError(s, [ref])).toBeLessThan(1e-5);
  });

  it('reduceSum scales the result', async () => {
    const x = randomArray([1000], new Rng(5), 0, 1);
    const s = await tidy(() => reduceSum(toGpu(x, [1000]), 0.25, 'test').toArray());
    expect(relError(s, [sumRef(x)[0] * 0.25])).toBeLessThan(1e-5);
  });

  for (const [name, op, ref] of [['sum', sum, sumRef], ['mean', mean, meanRef]] as const) {
    it(`${name} backward vs finite differences`, async () => {
      const shape = [7, 5];
      const rng = new Rng(11);
      const x = randomArray(shape, rng);
      const dy = Float64Array.of(0.7);
      const { out, grads } = await runWithGrads(([t]) => op(t), [{ data: x, shape }], dy);
      expect(relError(out, ref(x))).toBeLessThan(1e-5);
      const [numeric] = numericGrads(([v]) => ref(v), [x], dy);
      expect(relError(grads[0]!, numeric)).toBeLessThan(1e-4);
    });
  }

  it('backward over 100003 elements gives every element dy / n', async () => {
    const n = 100003;
    const x = randomArray([n], new Rng(4));
    const { grads } = await runWithGrads(([t]) => mean(t), [{ data: x, shape: [n] }], Float64Array.of(2));
    expect(relError(grads[0]!, new Float64Array(n).fill(2 / n))).toBeLessThan(1e-6);
  });

  it('matches PyTorch forward and backward', async () => {
    const shape = [2, 3, 5, 7];
    const rng = new Rng(21);
    const x = randomArray(shape, rng);
    const dy = [1.3];
    const ref = torchRun([
      { inputs: { x: { shape, data: x, grad: true } }, expr: 'x.sum().reshape(1)', dy },
      { inputs: { x: { shape, data: x, grad: true } }, expr: 'x.mean().reshape(1)', dy },
    ]);
    for (const [i, op] of [sum, mean].entries()) {
      const { out, grads } = await runWithGrads(([t]) => op(t), [{ data: x, shape }], Float64Array.from(dy));
      expect(relError(out, ref[i].out)).toBeLessThan(1e-5);
      expect(relError(grads[0]!, ref[i].grads!.x)).toBeLessThan(1e-6);
    }
  });
});
