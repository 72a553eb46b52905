import { describe, expect, it } from 'vitest';
import { conv1d, type Conv1dOptions } from '../src/ops/conv2d.ts';
import { OpError, Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { numericGrads, randomArray, relError, runWithGrads, useGpu } from './helpers.ts';
import { conv1dRef } from '../src/reference/conv2d.ts';
import { torchRun, type TorchInput } from './torch.ts';

useGpu();

interface Case {
  x: number[];
  w: number[];
  bias: boolean;
  opts: Conv1dOptions;
}

// batch 1 with an odd length; stride 2, dilation 2, groups 2 with padding; depthwise; a length-1
// signal under a 1-tap kernel
const cases: Case[] = [
  { x: [1, 3, 7], w: [4, 3, 3], bias: true, opts: { padding: 1 } },
  { x: [2, 4, 11], w: [6, 2, 3], bias: false, opts: { stride: 2, padding: 2, dilation: 2, groups: 2 } },
  { x: [2, 5, 9], w: [5, 1, 5], bias: true, opts: { padding: 2, groups: 5 } },
  { x: [3, 2, 1], w: [5, 2, 1], bias: true, opts: {} },
];

const geometry = (o: Conv1dOptions) => ({ stride: o.stride ?? 1, padding: o.padding ?? 0, dilation: o.dilation ?? 1, groups: o.groups ?? 1 });

function inputsOf(c: Case, seed: number) {
  const rng = new Rng(seed);
  const x = randomArray(c.x, rng);
  const w = randomArray(c.w, rng);
  const b = c.bias ? randomArray([c.w[0]], rng) : null;
  const shape = conv1dRef(x, c.x, w, c.w, b, geometry(c.opts)).shape;
  return { x, w, b, shape, dy: randomArray(shape, rng) };
}

function runGpu(c: Case, inp: ReturnType<typeof inputsOf>) {
  const list = [{ data: inp.x, shape: c.x }, { data: inp.w, shape: c.w }, ...(inp.b ? [{ data: inp.b, shape: [c.w[0]] }] : [])];
  return runWithGrads((ts) => conv1d(ts[0], ts[1], ts[2] ?? null, c.opts), list, inp.dy);
}

describe('conv1d (conv2d of [N,C,1,L])', () => {
  cases.forEach((c, i) => {
    it(`x[${c.x}] w[${c.w}] ${JSON.stringify(c.opts)}: forward vs reference, backward vs finite differences`, async () => {
      const inp = inputsOf(c, 10 + i);
      const { out, grads } = await runGpu(c, inp);
      const ref = (xs: Float64Array[]) => conv1dRef(xs[0], c.x, xs[1], c.w, xs[2] ?? null, geometry(c.opts)).y;
      const inputs = [inp.x, inp.w, ...(inp.b ? [inp.b] : [])];
      expect(relError(out, ref(inputs))).toBeLessThan(1e-5);
      const numeric = numericGrads(ref, inputs, inp.dy);
      grads.forEach((g, k) => expect(relError(g!, numeric[k]), `gradient ${k}`).toBeLessThan(1e-4));
    });
  });

  it('matches F.conv1d forward and backward', async () => {
    const runs = cases.map((c, i) => ({ c, inp: inputsOf(c, 50 + i) }));
    const ref = await torchRun(
      runs.map(({ c, inp }) => {
        const o = geometry(c.opts);
        const inputs: Record<string, TorchInput> = { x: { shape: c.x, data: inp.x, grad: true }, w: { shape: c.w, data: inp.w, grad: true } };
        if (inp.b) inputs.b = { shape: [c.w[0]], data: inp.b, grad: true };
        return { inputs, expr: `F.conv1d(x, w, ${inp.b ? 'b' : 'None'}, stride=${o.stride}, padding=${o.padding}, dilation=${o.dilation}, groups=${o.groups})`, dy: inp.dy };
      }),
    );
    for (const [i, { c, inp }] of runs.entries()) {
      const { out, grads } = await runGpu(c, inp);
      expect(ref[i].shape).toEqual(inp.shape);
      expect(relError(out, ref[i].out)).toBeLessThan(1e-5);
      ['x', 'w', 'b'].slice(0, grads.length).forEach((name, k) => expect(relError(grads[k]!, ref[i].grads![name]), `d${name}`).toBeLessThan(1e-5));
    }
  });

  it('refuses inputs that are not [N,C,L] and [OC,C/groups,K]', () => {
    tidy(() => {
      expect(() => conv1d(Tensor.zeros([1, 3, 1, 7]), Tensor.zeros([4, 3, 3]), null)).toThrow(OpError);
      expect(() => conv1d(Tensor.zeros([1, 3, 1, 7]), Tensor.zeros([4, 3, 3]), null)).toThrow(/conv1d: expected x \[N,C,L\] and w \[OC,C\/groups,K\], got x\[1,3,1,7\] w\[4,3,3\]/);
      expect(() => conv1d(Tensor.zeros([1, 3, 7]), Tensor.zeros([4, 2, 3]), null)).toThrow(/conv2d: input has 3 channels but the weight expects 2/);
    });
  });
});
