import { describe, expect, it } from 'vitest';
import { layerNorm } from '../src/ops/layernorm.ts';
import { layerNormRef } from '../src/reference/layernorm.ts';
import { Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { numericGrads, randomArray, relError, runWithGrads, useGpu, withGpuLayouts } from './helpers.ts';
import { torchRun } from './torch.ts';

useGpu();

const EPS = 1e-5;

interface Case {
  shape: number[];
  norm: number[];
  weight: boolean;
  bias: boolean;
}

// batch 1, odd and vec4-friendly C, a 2-D normalized shape, many rows (several slices of the
// parameter sums), a long row (several invocations per row), no weight or no bias
const CASES: Case[] = [
  { shape: [1, 7], norm: [7], weight: true, bias: true },
  { shape: [3, 5, 7], norm: [7], weight: true, bias: true },
  { shape: [2, 3, 4, 5], norm: [4, 5], weight: true, bias: true },
  { shape: [6, 16], norm: [16], weight: true, bias: false },
  { shape: [301, 12], norm: [12], weight: true, bias: true },
  { shape: [3, 1001], norm: [1001], weight: false, bias: true },
  { shape: [2, 2048], norm: [2048], weight: false, bias: false },
];

function inputs(c: Case, rng: Rng) {
  // an offset and spread per row, so that the mean and variance matter
  const x = randomArray(c.shape, rng).map((v, i) => 2 * v + 0.5 + (i % 3));
  return { x, w: c.weight ? randomArray(c.norm, rng, 0.5, 1.5) : null, b: c.bias ? randomArray(c.norm, rng) : null };
}

const C = (c: Case) => c.norm.reduce((a, d) => a * d, 1);
const desc = (c: Case) => `x${JSON.stringify(c.shape)} over ${JSON.stringify(c.norm)}${c.weight ? '' : ' no weight'}${c.bias ? '' : ' no bias'}`;

describe('layerNorm', () => {
  for (const c of CASES) {
    it(`${desc(c)}: forward and backward vs the reference and finite differences`, async () => {
      const rng = new Rng(C(c) + c.shape[0]);
      const { x, w, b } = inputs(c, rng);
      const dy = randomArray(c.shape, rng);
      const given = [{ data: x, shape: c.shape }, ...(w ? [{ data: w, shape: c.norm }] : []), ...(b ? [{ data: b, shape: c.norm }] : [])];
      const { out, grads } = await runWithGrads(
        (ts) => layerNorm(ts[0], c.norm, w ? ts[1] : null, b ? ts[w ? 2 : 1] : null, EPS),
        given,
        dy,
      );
      const ref = (vs: Float64Array[]) => layerNormRef(vs[0], C(c), w ? vs[1] : null, b ? vs[w ? 2 : 1] : null, EPS);
      expect(relError(out, ref(given.map((g) => g.data)))).toBeLessThan(1e-5);
      // finite differences cost a whole reference per element: the large cases are checked by PyTorch
      if (x.length > 500) return;
      const numeric = numericGrads(ref, given.map((g) => Float64Array.from(g.data)), dy);
      grads.forEach((g, i) => expect(relError(g!, numeric[i]), `grad ${i}`).toBeLessThan(1e-4));
    });
  }

  it('matches PyTorch F.layer_norm forward and backward', async () => {
    const rng = new Rng(17);
    const data = CASES.map((c) => ({ ...inputs(c, rng), dy: randomArray(c.shape, rng) }));
    const ref = await torchRun(CASES.map((c, i) => ({
      inputs: {
        x: { shape: c.shape, data: data[i].x, grad: true },
        ...(data[i].w ? { w: { shape: c.norm, data: data[i].w!, grad: true } } : {}),
        ...(data[i].b ? { b: { shape: c.norm, data: data[i].b!, grad: true } } : {}),
      },
      expr: `F.layer_norm(x, ${JSON.stringify(c.norm)}, ${c.weight ? 'w' : 'None'}, ${c.bias ? 'b' : 'None'}, ${EPS})`,
      dy: data[i].dy,
    })));
    for (const [i, c] of CASES.entries()) {
      const d = data[i];
      const given = [{ data: d.x, shape: c.shape }, ...(d.w ? [{ data: d.w, shape: c.norm }] : []), ...(d.b ? [{ data: d.b, shape: c.norm }] : [])];
      const { out, grads } = await runWithGrads((ts) => layerNorm(ts[0], c.norm, d.w ? ts[1] : null, d.b ? ts[d.w ? 2 : 1] : null, EPS), given, d.dy);
      expect(relError(out, ref[i].out), desc(c)).toBeLessThan(1e-5);
      expect(relError(grads[0]!, ref[i].grads!.x), `${desc(c)} dx`).toBeLessThan(1e-4);
      if (d.w) expect(relError(grads[1]!, ref[i].grads!.w), `${desc(c)} dweight`).toBeLessThan(1e-5);
      if (d.b) expect(relError(grads[d.w ? 2 : 1]!, ref[i].grads!.b), `${desc(c)} dbias`).toBeLessThan(1e-5);
    }
  });

  it('the layouts a GPU gets (256-wide workgroups, many invocations per row) give the same results', async () => {
    const rng = new Rng(8);
    for (const c of [CASES[2], CASES[4], CASES[5], CASES[6]]) {
      const { x, w, b } = inputs(c, rng);
      const dy = randomArray(c.shape, rng);
      const given = [{ data: x, shape: c.shape }, ...(w ? [{ data: w, shape: c.norm }] : []), ...(b ? [{ data: b, shape: c.norm }] : [])];
      const run = () => runWithGrads((ts) => layerNorm(ts[0], c.norm, w ? ts[1] : null, b ? ts[w ? 2 : 1] : null, EPS), given, dy);
      const [gpuShaped, here] = [await withGpuLayouts(run), await run()];
      expect(relError(gpuShaped.out, layerNormRef(x, C(c), w, b, EPS)), desc(c)).toBeLessThan(1e-5);
      gpuShaped.grads.forEach((g, i) => expect(relError(g!, here.grads[i]!), `${desc(c)} grad ${i}`).toBeLessThan(1e-5));
    }
  });

  it('computes only the gradients asked for (frozen weight, frozen input)', async () => {
    const rng = new Rng(4);
    const shape = [5, 8];
    const x = randomArray(shape, rng);
    const w = randomArray([8], rng);
    const bias = randomArray([8], rng);
    const dy = randomArray(shape, rng);
    const { grads } = await runWithGrads(([t, wt, bt]) => layerNorm(t, [8], wt, bt), [{ data: x, shape, grad: false }, { data: w, shape: [8], grad: false }, { data: bias, shape: [8] }], dy);
    expect(grads[0]).toBeNull();
    expect(grads[1]).toBeNull();
    const dbias = new Float64Array(8);
    dy.forEach((v, i) => (dbias[i % 8] += v));
    expect(relError(grads[2]!, dbias)).toBeLessThan(1e-6);
  });

  it('bad shapes are one line naming the op and the shapes', () => {
    tidy(() => {
      const x = Tensor.zeros([2, 3, 4]);
      expect(() => layerNorm(x, [3])).toThrow('layerNorm: normalizedShape [3] must be the last, non-empty dims of x [2,3,4]');
      expect(() => layerNorm(x, [2, 3, 4, 5])).toThrow(/must be the last, non-empty dims/);
      expect(() => layerNorm(x, 4, Tensor.zeros([3]))).toThrow('layerNorm: weight must be [4] for normalizedShape [4], got [3]');
      expect(() => layerNorm(x, [3, 4], null, Tensor.zeros([12]))).toThrow('layerNorm: bias must be [3,4] for normalizedShape [3,4], got [12]');
    });
  });
});
