import { describe, expect, it } from 'vitest';
import { dropout } from '../src/ops/dropout.ts';
import { OpError, Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { dropoutRef, keptRef } from '../src/reference/dropout.ts';
import { numericGrads, randomArray, runWithGrads, toGpu, useGpu } from './helpers.ts';

useGpu();

async function run(x: Float64Array, p: number, training: boolean, seed: number): Promise<Float32Array> {
  return tidy(() => dropout(toGpu(x, [x.length]), p, training, seed).toArray());
}

describe('dropout', () => {
  const x = randomArray([100000], new Rng(1), 0.5, 1.5); // no zeros: a zero output means dropped

  it('is the identity in eval mode and for p = 0', async () => {
    for (const [p, training] of [[0.5, false], [0, true]] as const) {
      expect(await run(x, p, training, 3)).toEqual(Float32Array.from(x));
    }
  });

  // 100000 elements take the vec4 path, 99999 the scalar one
  for (const n of [100000, 99999]) {
    it(`keeps about 1-p of ${n} elements, scaled exactly, where the reference hash says`, async () => {
      const p = 0.3;
      const xs = x.subarray(0, n);
      const y = await run(xs, p, true, 42);
      const scale = Math.fround(1 / (1 - p));
      let kept = 0;
      for (let i = 0; i < n; i++) {
        const keep = keptRef(i, p, 42);
        if (keep) kept++;
        expect(y[i]).toBe(keep ? Math.fround(Math.fround(xs[i]) * scale) : 0);
      }
      expect(Math.abs(kept / n - (1 - p))).toBeLessThan(0.01);
    });
  }

  it('the same seed gives the same mask, another seed another, p = 1 drops everything', async () => {
    const a = await run(x, 0.5, true, 7);
    const b = await run(x, 0.5, true, 7);
    const c = await run(x, 0.5, true, 8);
    expect(b).toEqual(a);
    let agree = 0;
    for (let i = 0; i < a.length; i++) if ((a[i] === 0) === (c[i] === 0)) agree++;
    // independent masks agree on about half the elements at p = 0.5
    expect(Math.abs(agree / a.length - 0.5)).toBeLessThan(0.01);
    expect((await run(x, 1, true, 7)).every((v) => v === 0)).toBe(true);
  });

  it('backward uses the same mask: zero exactly where the output is zero', async () => {
    const n = 4099;
    const xs = x.subarray(0, n);
    const dy = randomArray([n], new Rng(5), 0.5, 1.5);
    const p = 0.4;
    const { out, grads } = await runWithGrads(([t]) => dropout(t, p, true, 11), [{ data: xs, shape: [n] }], dy);
    const scale = Math.fround(1 / (1 - p));
    for (let i = 0; i < n; i++) {
      expect(grads[0]![i] === 0).toBe(out[i] === 0);
      if (out[i] !== 0) expect(grads[0]![i]).toBe(Math.fround(Math.fround(dy[i]) * scale));
    }
  });

  it('backward vs finite differences of the reference', async () => {
    const shape = [7, 5];
    const rng = new Rng(9);
    const xs = randomArray(shape, rng);
    const dy = randomArray(shape, rng);
    const { grads } = await runWithGrads(([t]) => dropout(t, 0.5, true, 123), [{ data: xs, shape }], dy);
    const [numeric] = numericGrads(([v]) => dropoutRef(v, 0.5, true, 123), [xs], dy);
    expect(Array.from(grads[0]!)).toEqual(Array.from(numeric).map((g) => expect.closeTo(g, 5)));
  });

  it('rejects p outside [0, 1] and non-integer seeds', () => {
    tidy(() => {
      const t = Tensor.zeros([2, 3]);
      expect(() => dropout(t, 1.5, true, 0)).toThrow(OpError);
      expect(() => dropout(t, -0.1, true, 0)).toThrow(/dropout: p must be in \[0, 1\], got -0.1 for \[2,3\]/);
      expect(() => dropout(t, 0.5, true, 0.5)).toThrow(/dropout: seed must be an integer/);
    });
  });
});
