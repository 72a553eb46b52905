import { describe, expect, it } from 'vitest';
import { getGpu } from '../src/gpu/index.ts';
import { batchNormEvalCoefficients } from '../src/ops/batchnorm.ts';
import { CONV2D_CANDIDATES, conv2d, conv2dFused, conv2dGeometry, im2col, setConv2dBatchFold, setConv2dIm2col, setIm2colVec4s, setConv2dTiling, setConv2dWinograd, setConv2dWinogradCache, type Conv2dOptions, type Im2colMode } from '../src/ops/conv2d.ts';
import { GEMM_CANDIDATES, setGemmSubgroups, setGemmTiling } from '../src/ops/matmul.ts';
import { Conv2d } from '../src/nn/layers.ts';
import { SGD } from '../src/optim/sgd.ts';
import { keep, noGrad, OpError, Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { batchNorm2dRef } from '../src/reference/batchnorm.ts';
import { numericGrads, randomArray, relError, runWithGrads, shapeSize, toGpu, useGpu } from './helpers.ts';
import { conv2dRef, im2colRef, type ConvGeometry } from '../src/reference/conv2d.ts';
import { torchRun, type TorchInput } from './torch.ts';

useGpu();

interface Case {
  name: string;
  x: number[];
  w: number[];
  bias: boolean;
  opts: Conv2dOptions;
}

// Tiles are 2 channels x 8 lanes by 12 pixels and k goes in chunks of 8: the channel, pixel and
// k = C/groups*KH*KW counts below are mostly not multiples of those, and some rows are 4-aligned
// (vec4 weight loads) while others are not.
const cases: Case[] = [
  { name: '1x1', x: [2, 3, 5, 4], w: [4, 3, 1, 1], bias: true, opts: {} },
  { name: '1x1 stride 2, odd input (downsample)', x: [2, 8, 7, 5], w: [6, 8, 1, 1], bias: false, opts: { stride: 2 } },
  { name: '3x3 pad 1, 7x5 spatial', x: [2, 3, 7, 5], w: [5, 3, 3, 3], bias: true, opts: { padding: 1 } },
  { name: '3x3 pad 0, batch 1', x: [1, 7, 6, 5], w: [3, 7, 3, 3], bias: false, opts: {} },
  { name: '3x3 stride 2 pad 1, odd input', x: [1, 7, 9, 7], w: [10, 7, 3, 3], bias: true, opts: { stride: 2, padding: 1 } },
  { name: '7x7 stride 2 pad 3 (stem), 3 channels', x: [1, 3, 15, 13], w: [8, 3, 7, 7], bias: false, opts: { stride: 2, padding: 3 } },
  { name: '3x2 kernel, stride [2,1], padding [1,0]', x: [2, 4, 7, 6], w: [5, 4, 3, 2], bias: true, opts: { stride: [2, 1], padding: [1, 0] } },
  { name: 'dilation 2', x: [1, 3, 9, 8], w: [4, 3, 3, 3], bias: true, opts: { dilation: 2, padding: 2 } },
  { name: 'dilation [2,1] stride 2', x: [1, 4, 11, 9], w: [3, 4, 3, 3], bias: false, opts: { dilation: [2, 1], stride: 2, padding: 1 } },
  { name: '2x2 kernel stride 3 (input pixels no tap reads)', x: [1, 2, 8, 7], w: [3, 2, 2, 2], bias: false, opts: { stride: 3 } },
  { name: 'stride 2 on a 1-row input (a phase with no pixels)', x: [2, 3, 1, 3], w: [4, 3, 1, 2], bias: true, opts: { stride: 2 } },
  { name: 'groups 2', x: [2, 6, 6, 5], w: [4, 3, 3, 3], bias: true, opts: { groups: 2, padding: 1 } },
  { name: 'depthwise (groups = C = 7)', x: [2, 7, 7, 5], w: [7, 1, 3, 3], bias: true, opts: { groups: 7, padding: 1 } },
  { name: 'depthwise x2 channels, stride 2', x: [1, 3, 8, 7], w: [6, 1, 3, 3], bias: false, opts: { groups: 3, stride: 2, padding: 1 } },
  { name: 'spatial 1x1 input, 1x1 kernel', x: [3, 7, 1, 1], w: [5, 7, 1, 1], bias: true, opts: {} },
  { name: 'spatial 1x1 input, 3x3 kernel pad 1', x: [2, 5, 1, 1], w: [3, 5, 3, 3], bias: false, opts: { padding: 1 } },
];

// larger ones: many k chunks, several channel and pixel tiles, vec4 rows (k % 4 == 0, OH*OW % 4 == 0)
const largeCases: Case[] = [
  { name: '16->40 3x3 8x8 (vec4 rows)', x: [2, 16, 8, 8], w: [40, 16, 3, 3], bias: true, opts: { padding: 1 } },
  { name: '37->19 3x3 7x5 (ragged)', x: [1, 37, 7, 5], w: [19, 37, 3, 3], bias: true, opts: { padding: 1 } },
  { name: '64->64 3x3 7x7 (ResNet layer4-like)', x: [2, 64, 7, 7], w: [64, 64, 3, 3], bias: false, opts: { padding: 1 } },
  { name: '12->24 3x3 stride 2 groups 4, 10x9', x: [2, 12, 10, 9], w: [24, 3, 3, 3], bias: true, opts: { stride: 2, padding: 1, groups: 4 } },
];

function refGeometry(opts: Conv2dOptions): ConvGeometry {
  const pair = (v: number | [number, number] | undefined, d: number): [number, number] => (v === undefined ? [d, d] : typeof v === 'number' ? [v, v] : v);
  return { stride: pair(opts.stride, 1), padding: pair(opts.padding, 0), dilation: pair(opts.dilation, 1), groups: opts.groups ?? 1 };
}

function outShape(c: Case): number[] {
  const g = conv2dGeometry(c.x, c.w, null, c.opts);
  return [g.N, g.OC, g.OH, g.OW];
}

/** seeded inputs of a case: x, w, bias (or null) and the output gradient dy */
function inputsOf(c: Case, seed: number) {
  const rng = new Rng(seed);
  return {
    x: randomArray(c.x, rng),
    w: randomArray(c.w, rng),
    b: c.bias ? randomArray([c.w[0]], rng) : null,
    dy: randomArray(outShape(c), rng),
  };
}

/** forward and backward on the GPU: output and the gradients of x, w, bias */
function runGpu(c: Case, inp: ReturnType<typeof inputsOf>, gradW = true) {
  const list = [
    { data: inp.x, shape: c.x },
    { data: inp.w, shape: c.w, grad: gradW },
    ...(inp.b ? [{ data: inp.b, shape: [c.w[0]] }] : []),
  ];
  return runWithGrads((ts) => conv2d(ts[0], ts[1], ts[2] ?? null, c.opts), list, inp.dy);
}

function reference(c: Case) {
  return (xs: Float64Array[]) => conv2dRef(xs[0], c.x, xs[1], c.w, xs[2] ?? null, refGeometry(c.opts)).y;
}

/** Runs `fn` with im2col + GEMM chosen by `mode` (the direct kernels, or the column matrix). */
async function withIm2col<T>(mode: Im2colMode, fn: () => Promise<T>): Promise<T> {
  setConv2dIm2col(mode);
  try {
    return await fn();
  } finally {
    setConv2dIm2col('auto');
  }
}

// both algorithms on every case: the implicit-GEMM kernels ('never') and im2col + the matmul's
// GEMMs ('always', where groups is 1; the CPU's default for those)
const paths: [string, Im2colMode][] = [['direct', 'never'], ['im2col', 'always']];

describe('conv2d forward vs the float64 reference', () => {
  for (const [path, mode] of paths) {
    for (const c of [...cases, ...largeCases]) {
      it(`${path}: ${c.name}`, async () => {
        const inp = inputsOf(c, shapeSize(c.x) + 7);
        const { out } = await withIm2col(mode, () => runGpu(c, inp));
        const ref = conv2dRef(inp.x, c.x, inp.w, c.w, inp.b, refGeometry(c.opts));
        expect(ref.shape).toEqual(outShape(c));
        expect(relError(out, ref.y)).toBeLessThan(1e-4);
      });
    }
  }
});

describe('conv2d backward vs finite differences', () => {
  for (const [path, mode] of paths) {
    for (const c of cases) {
      it(`${path}: ${c.name}`, async () => {
        const inp = inputsOf(c, shapeSize(c.w) + 11);
        const { grads } = await withIm2col(mode, () => runGpu(c, inp));
        const xs = [inp.x, inp.w, ...(inp.b ? [inp.b] : [])];
        const numeric = numericGrads(reference(c), xs, inp.dy);
        expect(relError(grads[0]!, numeric[0]), 'dx').toBeLessThan(1e-4);
        expect(relError(grads[1]!, numeric[1]), 'dw').toBeLessThan(1e-4);
        if (inp.b) expect(relError(grads[2]!, numeric[2]), 'db').toBeLessThan(1e-4);
      });
    }
  }
});

describe('conv2d by im2col + GEMM', () => {
  // the larger cases' gradients against the direct kernels', and every tiling of the GEMMs on a
  // ragged stride-2 case, forward (each tiling is a pipeline per transpose layout, a TM 32 one
  // seconds to compile: the gradients' transposed GEMMs run every tiling in test/matmul.test.ts)
  for (const c of largeCases.filter((l) => !l.opts.groups)) {
    it(`${c.name}: dx and dw as the direct kernels'`, async () => {
      const inp = inputsOf(c, shapeSize(c.x) + 3);
      const direct = await withIm2col('never', () => runGpu(c, inp));
      const got = await withIm2col('always', () => runGpu(c, inp));
      got.grads.forEach((g, i) => expect(relError(g!, direct.grads[i]!), `grad ${i}`).toBeLessThan(1e-5));
    });
  }

  // the column matrix itself, exactly (a gather), with the output poisoned: a lane writes 4*G
  // columns (G = 1: GPUs, 8: CPUs), as vec4s where OH*OW % 4 == 0, short rows packed several to a
  // workgroup, long ones over several
  const colCases: { name: string; x: number[]; k: [number, number]; opts: Conv2dOptions }[] = [
    { name: 'OW 6 (runs cross rows), vec4, rows packed', x: [2, 3, 4, 6], k: [3, 3], opts: { padding: 1 } },
    { name: 'OW 2 (a vec4 spans 2 rows), stride 2', x: [1, 3, 8, 3], k: [3, 3], opts: { stride: 2, padding: 1 } },
    { name: 'OH*OW 21, scalar stores', x: [1, 2, 7, 3], k: [3, 3], opts: { padding: 1 } },
    { name: 'stride [2,1] dilation [2,1] padding [1,0], 3x2 kernel', x: [2, 4, 9, 10], k: [3, 2], opts: { stride: [2, 1], dilation: [2, 1], padding: [1, 0] } },
    { name: '7x7 stride 2 pad 3, 360 columns, vec4', x: [1, 3, 36, 40], k: [7, 7], opts: { stride: 2, padding: 3 } },
    { name: 'dilation 2, 1406 columns, scalar stores', x: [1, 2, 40, 39], k: [3, 3], opts: { padding: 1, dilation: 2 } },
    { name: '2400 columns (2 workgroups a row at G 8), vec4', x: [1, 2, 50, 48], k: [3, 3], opts: { padding: 1 } },
    { name: '2209 columns, scalar stores', x: [1, 1, 47, 47], k: [3, 3], opts: { padding: 1 } },
    { name: '1x1 stride 1 (pointwise: x itself, or x transposed batch inner)', x: [3, 4, 5, 4], k: [1, 1], opts: {} },
    { name: '1x1 stride 2 (downsample), 3 images', x: [3, 5, 7, 5], k: [1, 1], opts: { stride: 2 } },
  ];
  // batch inner: col [K, N, P], the weight gradient's folded layout (the reference's [N, K, P] permuted)
  for (const [vec4s, batchInner] of [[1, false], [8, false], [1, true], [8, true]] as const) {
    for (const c of colCases.filter((k) => !batchInner || k.x[0]! > 1)) {
      it(`im2col, ${vec4s} vec4s a lane${batchInner ? ', batch inner' : ''}: ${c.name}`, async () => {
        const xs = randomArray(c.x, new Rng(shapeSize(c.x)));
        const g = conv2dGeometry(c.x, [5, c.x[1]!, ...c.k], null, c.opts);
        const ref = im2colRef(xs, c.x, g.KH, g.KW, refGeometry(c.opts));
        const [N, K, P] = [g.N, g.C * g.KH * g.KW, g.OH * g.OW];
        const want = batchInner ? ref.map((_, i) => ref[(Math.floor(i / P) % N) * K * P + Math.floor(i / (N * P)) * P + (i % P)]!) : ref;
        setIm2colVec4s(vec4s);
        try {
          const got = await tidy(() => im2col(toGpu(xs, c.x), g, 'test', batchInner).toArray());
          expect(got.length).toBe(want.length);
          expect(got.filter((v, i) => v !== Math.fround(want[i]!)).length, 'elements unlike the reference').toBe(0);
        } finally {
          setIm2colVec4s(null);
        }
      });
    }
  }

  it(`${cases[4].name}: forward at every tiling of its GEMM (GEMM_CANDIDATES)`, async () => {
    const c = cases[4];
    const inp = inputsOf(c, 37);
    const ref = conv2dRef(inp.x, c.x, inp.w, c.w, inp.b, refGeometry(c.opts)).y;
    for (const tiling of GEMM_CANDIDATES) {
      setGemmTiling(tiling);
      try {
        const out = await withIm2col('always', () => tidy(() => noGrad(() => conv2d(toGpu(inp.x, c.x), toGpu(inp.w, c.w), toGpu(inp.b!, [c.w[0]]), c.opts).toArray())));
        expect(relError(out, ref), `forward ${JSON.stringify(tiling)}`).toBeLessThan(1e-4);
      } finally {
        setGemmTiling(null);
      }
    }
  });
});

describe('conv2d by im2col with the batch folded into the GEMM columns', () => {
  // the im2col tests above run folded wherever N > 1 (the default); here the same cases one GEMM
  // per image, the paths compared: outputs (poisoned) and dx, dw; P from 1 to 64 (49, 35, 20, 12:
  // lines of 4 columns cross images), N*P mostly multiples of no tile
  for (const c of [...cases, ...largeCases].filter((k) => k.x[0] > 1 && !k.opts.groups)) {
    it(`${c.name}: folded and per image agree`, async () => {
      const inp = inputsOf(c, shapeSize(c.x) + 5);
      const folded = await withIm2col('always', () => runGpu(c, inp));
      setConv2dBatchFold(false);
      try {
        const single = await withIm2col('always', () => runGpu(c, inp));
        expect(relError(folded.out, single.out), 'y').toBeLessThan(1e-5);
        folded.grads.forEach((g, i) => expect(relError(g!, single.grads[i]!), `grad ${i}`).toBeLessThan(1e-5));
      } finally {
        setConv2dBatchFold(true);
      }
    });
  }
});

describe('conv2d without subgroups (workgroup-memory sharing)', () => {
  for (const c of [cases[4], largeCases[0]]) {
    it(`${c.name}: forward and backward`, async () => {
      const inp = inputsOf(c, 5);
      const expected = await runGpu(c, inp);
      setConv2dTiling({ subgroups: false, SG: 4, TM: 1, TN: 3 });
      try {
        const got = await runGpu(c, inp);
        expect(relError(got.out, expected.out)).toBeLessThan(1e-5);
        got.grads.forEach((g, i) => expect(relError(g!, expected.grads[i]!)).toBeLessThan(1e-5));
      } finally {
        setConv2dTiling(null);
      }
    });
  }
});

describe('conv2dFused (inference epilogue: eval batchnorm, residual, ReLU) vs the float64 reference', () => {
  for (const [c, [path, mode]] of [cases[0], cases[4], cases[5], cases[11], largeCases[1]].flatMap((k) => paths.map((q) => [k, q] as const))) {
    for (const residual of [false, true]) {
      it(`${path}: ${c.name}${residual ? ' + residual' : ''}, relu`, async () => {
        const rng = new Rng(shapeSize(c.w) + 3);
        const inp = inputsOf(c, shapeSize(c.x) + 1);
        const OC = c.w[0];
        const gamma = randomArray([OC], rng);
        const beta = randomArray([OC], rng);
        const mean = randomArray([OC], rng);
        const variance = randomArray([OC], rng, 0.2, 2);
        const res = residual ? randomArray(outShape(c), rng) : null;
        const conv = conv2dRef(inp.x, c.x, inp.w, c.w, inp.b, refGeometry(c.opts)).y;
        const bn = batchNorm2dRef(conv, outShape(c), gamma, beta, Float64Array.from(mean), Float64Array.from(variance), { training: false, momentum: 0.1, eps: 1e-5 });
        const ref = bn.map((v, i) => Math.max(0, v + (res ? res[i] : 0)));
        const got = await withIm2col(mode, () => tidy(() =>
          noGrad(() => {
            const affine = batchNormEvalCoefficients(toGpu(gamma, [OC]), toGpu(beta, [OC]), toGpu(mean, [OC]), toGpu(variance, [OC]), 1e-5);
            const y = conv2dFused(toGpu(inp.x, c.x), toGpu(inp.w, c.w), inp.b ? toGpu(inp.b, [OC]) : null, c.opts, {
              affine, residual: res ? toGpu(res, outShape(c)) : null, relu: true,
            });
            return y.toArray();
          }),
        ));
        expect(ref.some((v) => v === 0) && ref.some((v) => v > 0)).toBe(true); // the ReLU bites
        expect(relError(got, ref)).toBeLessThan(1e-4);
      });
    }
  }

  it('refuses inputs that want a gradient, and a wrong affine or residual shape', () => {
    tidy(() => {
      const x = Tensor.ones([1, 2, 4, 4]);
      const w = Tensor.ones([3, 2, 3, 3]);
      w.requiresGrad = true;
      expect(() => conv2dFused(x, w, null, {}, { relu: true })).toThrow(/inference only/);
      w.requiresGrad = false;
      expect(() => conv2dFused(x, w, null, {}, { affine: Tensor.ones([2, 4]) })).toThrow(/affine must be \[3,4\]/);
      expect(() => conv2dFused(x, w, null, {}, { residual: Tensor.ones([1, 3, 4, 4]) })).toThrow(/residual must be \[1,3,2,2\]/);
    });
  });
});

describe('conv2d by Winograd F(2x2,3x3) and F(4x4,3x3) (3x3 stride 1: forward and both gradients)', () => {
  // every 3x3 stride-1 case, and paddings 0 and 2 (the input gradient's convolution then pads 2 and
  // 0), odd sizes (a last tile half outside), a 1x1 input; forced on: 'auto' leaves small ones
  // direct (and the weight gradient needs OC % 4 == 0)
  const winogradCases: Case[] = [
    ...[...cases, ...largeCases].filter((c) => c.w[2] === 3 && c.w[3] === 3 && !c.opts.stride && !c.opts.dilation && !c.opts.groups),
    { name: '3x3 pad [2,0], 6x7', x: [2, 5, 6, 7], w: [8, 5, 3, 3], bias: true, opts: { padding: [2, 0] } },
  ];
  const withWinograd = async <T>(fn: () => Promise<T>, m: 2 | 4 = 4): Promise<T> => {
    setConv2dWinograd(m);
    try {
      return await fn();
    } finally {
      setConv2dWinograd('auto');
    }
  };
  for (const c of winogradCases) {
    it(`${c.name}: forward vs the float64 reference, dx and dw as the direct kernels', 2x2 and 4x4 tiles`, async () => {
      const inp = inputsOf(c, shapeSize(c.x) + 5);
      setConv2dWinograd('never');
      const direct = await runGpu(c, inp);
      setConv2dWinograd('auto');
      const ref = conv2dRef(inp.x, c.x, inp.w, c.w, inp.b, refGeometry(c.opts));
      for (const m of [2, 4] as const) {
        const got = await withWinograd(() => runGpu(c, inp), m);
        expect(relError(got.out, ref.y), `F${m}`).toBeLessThan(1e-4);
        got.grads.forEach((g, i) => expect(relError(g!, direct.grads[i]!), `F${m} grad ${i}`).toBeLessThan(1e-5));
      }
    });
  }

  it(`${winogradCases.at(-1)!.name}: dx and dw vs finite differences`, async () => {
    const c = winogradCases.at(-1)!;
    const inp = inputsOf(c, 23);
    const { grads } = await withWinograd(() => runGpu(c, inp));
    const numeric = numericGrads(reference(c), [inp.x, inp.w, inp.b!], inp.dy, [0, 1]);
    expect(relError(grads[0]!, numeric[0]), 'dx').toBeLessThan(1e-4);
    expect(relError(grads[1]!, numeric[1]), 'dw').toBeLessThan(1e-4);
  });

  it('without subgroups, and with the inference epilogue (eval batchnorm, residual, ReLU)', async () => {
    const c = largeCases[0];
    const inp = inputsOf(c, 29);
    const OC = c.w[0];
    const rng = new Rng(4);
    const [gamma, beta, mean] = [0, 1, 2].map(() => randomArray([OC], rng));
    const variance = randomArray([OC], rng, 0.2, 2);
    const res = randomArray(outShape(c), rng);
    const conv = conv2dRef(inp.x, c.x, inp.w, c.w, inp.b, refGeometry(c.opts)).y;
    const bn = batchNorm2dRef(conv, outShape(c), gamma, beta, Float64Array.from(mean), Float64Array.from(variance), { training: false, momentum: 0.1, eps: 1e-5 });
    const ref = bn.map((v, i) => Math.max(0, v + res[i]));
    const fused = () =>
      tidy(() =>
        noGrad(() => {
          const affine = batchNormEvalCoefficients(toGpu(gamma, [OC]), toGpu(beta, [OC]), toGpu(mean, [OC]), toGpu(variance, [OC]), 1e-5);
          return conv2dFused(toGpu(inp.x, c.x), toGpu(inp.w, c.w), toGpu(inp.b!, [OC]), c.opts, { affine, residual: toGpu(res, outShape(c)), relu: true }).toArray();
        }),
      );
    expect(relError(await withWinograd(fused), ref)).toBeLessThan(1e-4);
    const expected = await runGpu(c, inp);
    setConv2dTiling({ subgroups: false, SG: 4, TM: 1, TN: 3 });
    setGemmSubgroups(false);
    try {
      const got = await withWinograd(() => runGpu(c, inp));
      expect(relError(got.out, expected.out)).toBeLessThan(1e-5);
      got.grads.forEach((g, i) => expect(relError(g!, expected.grads[i]!)).toBeLessThan(1e-5));
    } finally {
      setConv2dTiling(null);
      setGemmSubgroups(true);
    }
  });

  it(`${largeCases[0].name}: forward, dx and dw at every tiling of its GEMMs (GEMM_CANDIDATES)`, async () => {
    const c = largeCases[0];
    const inp = inputsOf(c, 31);
    const expected = await runGpu(c, inp);
    for (const tiling of GEMM_CANDIDATES) {
      setGemmTiling(tiling);
      try {
        const got = await withWinograd(() => runGpu(c, inp));
        expect(relError(got.out, expected.out), `forward ${JSON.stringify(tiling)}`).toBeLessThan(1e-5);
        got.grads.forEach((g, i) => expect(relError(g!, expected.grads[i]!), `grad ${i} ${JSON.stringify(tiling)}`).toBeLessThan(1e-5));
      } finally {
        setGemmTiling(null);
      }
    }
  });
});

describe('conv2d inference keeps Winograd\'s transformed weights until the weight is written', () => {
  // 16->40 3x3 at 8x8, F(2x2) forced: U = G w G^T is kept with w when w is not being trained
  const c = largeCases[0];
  const inference = (x: Tensor, w: Tensor, b: Tensor) => {
    const before = getGpu().dispatchCount;
    const y = tidy(() => noGrad(() => conv2d(x, w, b, c.opts)));
    return { y, dispatches: getGpu().dispatchCount - before };
  };
  const read = async ({ y }: { y: Tensor }) => {
    const a = await y.toArray();
    y.release();
    return a;
  };
  const reference = async (x: Tensor, w: Tensor, b: Tensor) => conv2dRef(Float64Array.from(await x.toArray()), c.x, Float64Array.from(await w.toArray()), c.w, Float64Array.from(await b.toArray()), refGeometry(c.opts)).y;
  const withWinograd2 = async (fn: () => Promise<void>) => {
    setConv2dWinograd(2);
    try {
      await fn();
    } finally {
      setConv2dWinograd('auto');
      setConv2dWinogradCache(true);
    }
  };

  it('equals the path that transforms every call (bit for bit, and the float64 reference), without the weight transform', () =>
    withWinograd2(async () => {
      const inp = inputsOf(c, 41);
      const [x, w, b] = [toGpu(inp.x, c.x), toGpu(inp.w, c.w), toGpu(inp.b!, [c.w[0]])].map(keep);
      setConv2dWinogradCache(false);
      const plain = [inference(x, w, b), inference(x, w, b)];
      expect(plain[1].dispatches).toBe(plain[0].dispatches);
      const computed = await read(plain[0]);
      await read(plain[1]);
      setConv2dWinogradCache(true);
      const [first, second] = [inference(x, w, b), inference(x, w, b)];
      expect(first.dispatches).toBe(plain[0].dispatches);
      // no weight transform, and no NaN fill of a new U (the tests poison every new tensor)
      expect(second.dispatches).toBe(first.dispatches - 2);
      expect(await read(first)).toEqual(computed);
      expect(await read(second)).toEqual(computed);
      expect(relError(computed, await reference(x, w, b))).toBeLessThan(1e-4);
      // the fused inference path (conv2dFused) reads the same kept U
      const fused = tidy(() => noGrad(() => conv2dFused(x, w, b, c.opts, {})));
      expect(await fused.toArray()).toEqual(computed);
      [x, w, b, fused].forEach((t) => t.release());
    }));

  it('after an optimizer step, a load into the weights or a fill, the next inference uses the new weights (and matches PyTorch)', () =>
    withWinograd2(async () => {
      const inp = inputsOf(c, 43);
      const rng = new Rng(44);
      const layer = new Conv2d(c.x[1], c.w[0], 3, { padding: 1, rng });
      const x = keep(toGpu(inp.x, c.x));
      const { weight: w, bias } = layer;
      const check = async (what: string) => {
        const cached = inference(x, w, bias!);
        setConv2dWinogradCache(false);
        const computed = await read(inference(x, w, bias!));
        setConv2dWinogradCache(true);
        const got = await read(cached);
        expect(got, what).toEqual(computed);
        expect(relError(got, await reference(x, w, bias!)), what).toBeLessThan(1e-4);
        return got;
      };
      await check('initial weights');
      // an SGD step (momentum, weight decay), its gradients given (a training forward would drop
      // the kept U itself: the step alone must make it stale)
      const sgd = new SGD(layer.parameters(), { lr: 0.5, momentum: 0.9, weightDecay: 0.01 });
      for (const p of layer.parameters()) p.grad = keep(toGpu(randomArray(p.shape, rng), p.shape));
      sgd.step();
      layer.zeroGrad();
      await check('after an SGD step');
      // loading weights in place (a checkpoint's state dict: from tensors, copyFrom, and from arrays, set)
      const other = new Conv2d(c.x[1], c.w[0], 3, { padding: 1, rng });
      layer.loadStateDict(other.stateDict());
      await check('after loadStateDict from tensors');
      layer.loadStateDict({ weight: Float32Array.from(randomArray(c.w, rng)), bias: Float32Array.from(randomArray([c.w[0]], rng)) });
      await check('after loadStateDict from arrays');
      w.fill(0.25);
      const last = await check('after fill');
      const ref = await torchRun([{
        inputs: { x: { shape: c.x, data: inp.x }, w: { shape: c.w, data: Float64Array.from(await w.toArray()) }, b: { shape: [c.w[0]], data: Float64Array.from(await bias!.toArray()) } },
        expr: 'F.conv2d(x, w, b, padding=1)',
      }]);
      expect(relError(last, ref[0].out)).toBeLessThan(1e-4);
      [x, other.weight, other.bias!, ...layer.parameters()].forEach((t) => t.release());
    }));

  it('a weight being trained keeps nothing: its training forward transforms it each step and drops what inference kept', () =>
    withWinograd2(async () => {
      const inp = inputsOf(c, 45);
      const [x, w, b] = [toGpu(inp.x, c.x), toGpu(inp.w, c.w, true), toGpu(inp.b!, [c.w[0]])].map(keep);
      w.requiresGrad = true;
      const first = inference(x, w, b); // keeps U
      const live = getGpu().pool.stats().liveBuffers;
      const train = () => {
        const before = getGpu().dispatchCount;
        tidy(() => void conv2d(x, w, b, c.opts));
        return getGpu().dispatchCount - before;
      };
      expect(train()).toBe(first.dispatches);
      expect(getGpu().pool.stats().liveBuffers).toBe(live - 1); // U went back to the pool
      expect(train()).toBe(first.dispatches);
      const again = inference(x, w, b);
      expect(again.dispatches).toBe(first.dispatches); // made again
      expect(await read(again)).toEqual(await read(first));
      [x, w, b].forEach((t) => t.release());
    }));
});

describe('conv2d: every tuning candidate (tile shape) is correct', () => {
  // the tuner may pick any of them for any shape: each must match the float64 reference (one
  // ragged case: channel and pixel tails, stride-2 phases; every candidate is 3 pipelines to compile)
  const c = cases[4];
  it(`${c.name}: forward, dx and dw at all ${CONV2D_CANDIDATES.length} tilings`, async () => {
    const inp = inputsOf(c, 17);
    const ref = conv2dRef(inp.x, c.x, inp.w, c.w, inp.b, refGeometry(c.opts)).y;
    const expected = await runGpu(c, inp); // the default tiling, whose gradients are checked above
    for (const tiles of CONV2D_CANDIDATES) {
      setConv2dTiling(tiles);
      try {
        const got = await runGpu(c, inp);
        expect(relError(got.out, ref), `forward ${JSON.stringify(tiles)}`).toBeLessThan(1e-4);
        got.grads.forEach((g, i) => expect(relError(g!, expected.grads[i]!), `grad ${i} ${JSON.stringify(tiles)}`).toBeLessThan(1e-5));
      } finally {
        setConv2dTiling(null);
      }
    }
  });
});

describe('conv2d matches PyTorch', () => {
  it('forward and backward of every case (one torch call)', async () => {
    const all = [...cases, ...largeCases];
    const inputs = all.map((c, i) => inputsOf(c, 1000 + i));
    const pyPair = (v: number | [number, number] | undefined, d: number) => JSON.stringify(v ?? d).replace('[', '(').replace(']', ')');
    const ref = await torchRun(
      all.map((c, i) => {
        const inp = inputs[i];
        const tin: Record<string, TorchInput> = { x: { shape: c.x, data: inp.x, grad: true }, w: { shape: c.w, data: inp.w, grad: true } };
        if (inp.b) tin.b = { shape: [c.w[0]], data: inp.b, grad: true };
        const o = c.opts;
        return {
          inputs: tin,
          expr: `F.conv2d(x, w, ${inp.b ? 'b' : 'None'}, stride=${pyPair(o.stride, 1)}, padding=${pyPair(o.padding, 0)}, dilation=${pyPair(o.dilation, 1)}, groups=${o.groups ?? 1})`,
          dy: inp.dy,
        };
      }),
    );
    for (const [i, c] of all.entries()) {
      const { out, grads } = await runGpu(c, inputs[i]);
      expect(ref[i].shape, c.name).toEqual(outShape(c));
      expect(relError(out, ref[i].out), `${c.name} y`).toBeLessThan(1e-4);
      expect(relError(grads[0]!, ref[i].grads!.x), `${c.name} dx`).toBeLessThan(1e-4);
      expect(relError(grads[1]!, ref[i].grads!.w), `${c.name} dw`).toBeLessThan(1e-4);
      if (c.bias) expect(relError(grads[2]!, ref[i].grads!.b), `${c.name} db`).toBeLessThan(1e-4);
    }
  });
});

describe('conv2d keeps channels apart', () => {
  it('a NaN weight poisons only its own output channel', async () => {
    // k = 3*3*3 = 27 is not a multiple of the k chunk: the tail of each weight row sits next to
    // the following row, and must not reach the previous channel's sum
    const c = cases[2];
    const inp = inputsOf(c, 17);
    const bad = 2;
    const w = inp.w.slice();
    w.fill(NaN, bad * 27, (bad + 1) * 27);
    const y = await tidy(() => conv2d(toGpu(inp.x, c.x), toGpu(w, c.w), toGpu(inp.b!, [c.w[0]]), c.opts).toArray());
    const ref = conv2dRef(inp.x, c.x, inp.w, c.w, inp.b, refGeometry(c.opts)).y;
    const [N, OC, OH, OW] = outShape(c);
    for (let n = 0; n < N; n++) {
      for (let oc = 0; oc < OC; oc++) {
        const at = (n * OC + oc) * OH * OW;
        const got = y.subarray(at, at + OH * OW);
        if (oc === bad) expect(got.every(Number.isNaN)).toBe(true);
        else expect(relError(got, ref.subarray(at, at + OH * OW))).toBeLessThan(1e-4);
      }
    }
  });
});

describe('conv2d frozen weight', () => {
  it('computes no weight gradient, and the input gradient is still right', async () => {
    const c = cases[4];
    const inp = inputsOf(c, 99);
    const { grads } = await runGpu(c, inp, false);
    expect(grads[1]).toBeNull();
    const numeric = numericGrads(reference(c), [inp.x, inp.w, inp.b!], inp.dy, [0, 2]);
    expect(relError(grads[0]!, numeric[0])).toBeLessThan(1e-4);
    expect(relError(grads[2]!, numeric[1])).toBeLessThan(1e-4);
  });

  it('launches fewer kernels than with a trainable weight', () => {
    const c = cases[2];
    const inp = inputsOf(c, 3);
    const backwardDispatches = (trainW: boolean) =>
      tidy(() => {
        const x = toGpu(inp.x, c.x, true);
        const w = toGpu(inp.w, c.w, trainW);
        const y = conv2d(x, w, null, c.opts);
        const dy = toGpu(inp.dy, y.shape);
        const before = getGpu().dispatchCount;
        y.backward(dy);
        const n = getGpu().dispatchCount - before;
        expect(w.grad === null).toBe(!trainW);
        x.grad?.release();
        w.grad?.release();
        return n;
      });
    expect(backwardDispatches(false)).toBeLessThan(backwardDispatches(true));
  });
});

describe('conv2d bad arguments', () => {
  const expectOpError = (f: () => unknown, ...parts: string[]) => {
    let err: unknown = null;
    try {
      tidy(f);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(OpError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/^conv2d: /);
    for (const part of parts) expect(msg).toContain(part);
  };
  const t = (shape: number[]) => toGpu(new Float64Array(shapeSize(shape)).fill(0.5), shape);

  it('channel mismatch names the shapes', () => {
    expectOpError(() => conv2d(t([1, 3, 5, 5]), t([4, 2, 3, 3]), null), 'x[1,3,5,5]', 'w[4,2,3,3]');
  });
  it('groups not dividing C', () => {
    expectOpError(() => conv2d(t([1, 3, 5, 5]), t([4, 1, 3, 3]), null, { groups: 2 }), 'groups=2', 'x[1,3,5,5]', 'w[4,1,3,3]');
  });
  it('groups not dividing OC', () => {
    expectOpError(() => conv2d(t([1, 4, 5, 5]), t([3, 2, 3, 3]), null, { groups: 2 }), 'groups=2', 'w[3,2,3,3]');
  });
  it('wrong ranks, bias shape, kernel larger than the padded input, bad stride', () => {
    expectOpError(() => conv2d(t([3, 5, 5]), t([4, 3, 3, 3]), null), 'x[3,5,5]');
    expectOpError(() => conv2d(t([1, 3, 5, 5]), t([4, 3, 3, 3]), t([3])), 'bias[3]');
    expectOpError(() => conv2d(t([1, 3, 2, 2]), t([4, 3, 3, 3]), null), 'x[1,3,2,2]');
    expectOpError(() => conv2d(t([1, 3, 5, 5]), t([4, 3, 3, 3]), null, { stride: 0 }), 'stride');
  });
});

describe("conv2d by im2col: the folded forward on the batch-inner column matrix, col2im's lanes of 4 pixels", () => {
  // The folded forward reads col [K, N, P] as one matrix [K, N*P]: where P is not a multiple of 4
  // but N*P is (7x7 = 49 at 4 images), its lines are whole vec4s (the grouped [N, K, P] read them
  // as scalars); K = 147 (the stem's) or others no multiple of 4. Forward against float64, the
  // GEMM's B seen to load as vec4s, and the gradients against finite differences on the stem.
  const foldCases: Case[] = [
    { name: 'stem 7x7 stride 2 pad 3, 3 channels, 7x7 output, 4 images', x: [4, 3, 14, 14], w: [8, 3, 7, 7], bias: false, opts: { stride: 2, padding: 3 } },
    { name: '3x3 stride 2 pad 1, 7x7 output, 4 images', x: [4, 5, 13, 13], w: [12, 5, 3, 3], bias: true, opts: { stride: 2, padding: 1 } },
    { name: '1x1 stride 2 (downsample), 7x7 output, 4 images', x: [4, 6, 13, 13], w: [10, 6, 1, 1], bias: false, opts: { stride: 2 } },
  ];
  for (const c of foldCases) {
    it(`${c.name}: forward vs the float64 reference, B as vec4s`, async () => {
      const inp = inputsOf(c, shapeSize(c.x) + 13);
      const gpu = getGpu();
      const bTypes: string[] = [];
      const dispatch = gpu.dispatch.bind(gpu);
      gpu.dispatch = (args) => {
        const spec = args.kernel as { shader?: string; defines?: Record<string, string> };
        if (spec.shader === 'matmul' && spec.defines) bTypes.push(spec.defines.B_TYPE);
        dispatch(args);
      };
      try {
        const out = await withIm2col('always', () => tidy(() => noGrad(() => conv2d(toGpu(inp.x, c.x), toGpu(inp.w, c.w), inp.b ? toGpu(inp.b, [c.w[0]]) : null, c.opts).toArray())));
        expect(relError(out, conv2dRef(inp.x, c.x, inp.w, c.w, inp.b, refGeometry(c.opts)).y)).toBeLessThan(1e-4);
      } finally {
        gpu.dispatch = dispatch;
      }
      expect(bTypes).toEqual(['vec4<f32>']);
    });
  }

  // col2im: a lane per 4 pixels of a row, planes of up to 32 lanes packed to a workgroup (the cases
  // above), larger ones over several workgroups: 20 rows of 5 runs (W 17: the last run 1 pixel)
  it('col2im over several workgroups a plane (3x3 stride 2 on 20x17): dx vs finite differences', async () => {
    const c: Case = { name: 'col2im', x: [2, 2, 20, 17], w: [3, 2, 3, 3], bias: false, opts: { stride: 2, padding: 1 } };
    const inp = inputsOf(c, 43);
    const { grads } = await withIm2col('always', () => runGpu(c, inp, false));
    const numeric = numericGrads(reference(c), [inp.x, inp.w], inp.dy);
    expect(relError(grads[0]!, numeric[0]), 'dx').toBeLessThan(1e-4);
  });

  // the weight gradient takes the forward's column matrix (folded: [K, N, P]; per image, the stem
  // at 1 image: [N, K, P]) instead of writing it again: one im2col a step; the gradients are the
  // finite-difference checks above and below, which run through it
  for (const c of [foldCases[1], cases[5]]) {
    it(`${c.name}: the forward's column matrix serves the weight gradient (one im2col, forward and backward)`, async () => {
      const gpu = getGpu();
      const labels: string[] = [];
      const dispatch = gpu.dispatch.bind(gpu);
      gpu.dispatch = (args) => {
        labels.push(args.label ?? '');
        dispatch(args);
      };
      try {
        await withIm2col('always', () => runGpu(c, inputsOf(c, 47)));
      } finally {
        gpu.dispatch = dispatch;
      }
      expect(labels.filter((l) => l.startsWith('conv2d.im2col')).length).toBe(1);
      expect(labels.filter((l) => l.startsWith('conv2d.backwardWeight')).length).toBe(1);
    });
  }

  it(`${foldCases[0].name}: dx and dw vs finite differences`, async () => {
    const c = foldCases[0];
    const inp = inputsOf(c, 41);
    const { grads } = await withIm2col('always', () => runGpu(c, inp));
    const numeric = numericGrads(reference(c), [inp.x, inp.w], inp.dy);
    expect(relError(grads[0]!, numeric[0]), 'dx').toBeLessThan(1e-4);
    expect(relError(grads[1]!, numeric[1]), 'dw').toBeLessThan(1e-4);
  });
});
