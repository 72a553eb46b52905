import { describe, expect, it } from 'vitest';
import { elementwise } from '../src/ops/index.ts';
import { Rng } from '../src/tensor/index.ts';
import { randomArray, relError, runWithGrads, useGpu } from './helpers.ts';
import { type TorchInput, torchRun } from './torch.ts';

useGpu();

describe('elementwise ops match PyTorch', () => {
  it('relu, leaky relu, add, mul forward and backward', async () => {
    const rng = new Rng(7);
    const shape = [2, 3, 5, 7];
    const a = randomArray(shape, rng);
    const b = randomArray(shape, rng);
    const dy = randomArray(shape, rng);
    const rows = [
      { name: 'relu', n: 1, expr: 'F.relu(a)' },
      { name: 'leakyRelu', n: 1, expr: 'F.leaky_relu(a, 0.1)' },
      { name: 'add', n: 2, expr: 'a + b' },
      { name: 'mul', n: 2, expr: 'a * b' },
    ] as const;
    const ref = await torchRun(
      rows.map((r) => {
        const inputs: Record<string, TorchInput> = { a: { shape, data: a, grad: true } };
        if (r.n === 2) inputs.b = { shape, data: b, grad: true };
        return { inputs, expr: r.expr, dy };
      }),
    );
    for (const [i, r] of rows.entries()) {
      const inputs = r.n === 1 ? [{ data: a, shape }] : [{ data: a, shape }, { data: b, shape }];
      const { out, grads } = await runWithGrads((ts) => elementwise(r.name, ts, 0.1), inputs, dy);
      expect(relError(out, ref[i].out), r.name).toBeLessThan(1e-6);
      expect(relError(grads[0]!, ref[i].grads!.a), r.name).toBeLessThan(1e-6);
      if (r.n === 2) expect(relError(grads[1]!, ref[i].grads!.b), r.name).toBeLessThan(1e-6);
    }
  });
});
