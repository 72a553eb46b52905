// conv2d kernels on the convolutions of ResNet18 at 224 px: the 3x3 stride-1 convs of each stage
// (batch 1 and 4), the stride-2 3x3 and 1x1 downsample convs that open stages 2-4, and the 7x7
// stem. Each geometry is first checked against the float64 reference (with fewer channels, same
// kernels), then timed: forward, backward to the input and backward to the weight. GFLOP/s count
// the convolution's multiply-adds, 2*N*OC*OH*OW*C/groups*KH*KW, for all three.
//   npx tsx bench/conv2d.ts                     all cases
//   FILTER=fwd npx tsx bench/conv2d.ts           cases whose name contains 'fwd'
//   TILES=2x12,4x8 npx tsx bench/conv2d.ts       compare tilings (rows per lane x columns)
import { pathToFileURL } from 'node:url';
import { initGpu } from '../src/gpu/index.ts';
import {
  conv2dBackwardInput, conv2dBackwardWeight, conv2dForward, conv2dGeometry, setConv2dTiling,
  type Conv2dGeometry, type Conv2dOptions,
} from '../src/ops/conv2d.ts';
import { Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { conv2dBackwardRef, conv2dRef } from '../test/reference/conv2d.ts';
import { runBench, type BenchCase } from './harness.ts';

interface Shape {
  name: string;
  /** batch, channels in and out, input size, kernel size */
  n: number; c: number; oc: number; hw: number; k: number;
  opts: Conv2dOptions;
  /** also time the backward kernels */
  backward: boolean;
}

const s1 = { padding: 1 };
const SHAPES: Shape[] = [
  ...[1, 4].flatMap((n) => [
    { name: `3x3 64->64 56x56 N${n}`, n, c: 64, oc: 64, hw: 56, k: 3, opts: s1, backward: true },
    { name: `3x3 128->128 28x28 N${n}`, n, c: 128, oc: 128, hw: 28, k: 3, opts: s1, backward: true },
    { name: `3x3 256->256 14x14 N${n}`, n, c: 256, oc: 256, hw: 14, k: 3, opts: s1, backward: true },
    { name: `3x3 512->512 7x7 N${n}`, n, c: 512, oc: 512, hw: 7, k: 3, opts: s1, backward: true },
  ]),
  { name: '3x3 s2 64->128 56x56 N1', n: 1, c: 64, oc: 128, hw: 56, k: 3, opts: { stride: 2, padding: 1 }, backward: true },
  { name: '3x3 s2 256->512 14x14 N1', n: 1, c: 256, oc: 512, hw: 14, k: 3, opts: { stride: 2, padding: 1 }, backward: true },
  { name: '1x1 s2 64->128 56x56 N1', n: 1, c: 64, oc: 128, hw: 56, k: 1, opts: { stride: 2 }, backward: true },
  { name: '1x1 s2 128->256 28x28 N1', n: 1, c: 128, oc: 256, hw: 28, k: 1, opts: { stride: 2 }, backward: true },
  { name: '1x1 s2 256->512 14x14 N1', n: 1, c: 256, oc: 512, hw: 14, k: 1, opts: { stride: 2 }, backward: true },
  { name: '7x7 s2 stem 3->64 224x224 N1', n: 1, c: 3, oc: 64, hw: 224, k: 7, opts: { stride: 2, padding: 3 }, backward: true },
  { name: '7x7 s2 stem 3->64 224x224 N4', n: 4, c: 3, oc: 64, hw: 224, k: 7, opts: { stride: 2, padding: 3 }, backward: false },
];

function geometryOf(s: Shape, channelScale = 1): Conv2dGeometry {
  const c = Math.max(1, Math.round(s.c * channelScale));
  const oc = Math.max(1, Math.round(s.oc * channelScale));
  return conv2dGeometry([s.n, c, s.hw, s.hw], [oc, c, s.k, s.k], null, s.opts);
}

function flops(g: Conv2dGeometry): number {
  return 2 * g.N * g.OC * g.OH * g.OW * g.Cg * g.KH * g.KW;
}

function random(n: number, rng: Rng): Float64Array {
  return Float64Array.from({ length: n }, () => rng.uniform(-1, 1));
}

function maxRelError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return Number.isFinite(num) && a.length === b.length ? num / den : Infinity;
}

/** Each geometry at batch 1 with channels / 8 (the same kernels and tails) against the reference. */
async function validate(): Promise<void> {
  for (const s of SHAPES.filter((x) => x.n === 1)) {
    const g = geometryOf({ ...s }, s.c > 8 ? 1 / 8 : 1);
    const rng = new Rng(g.C * 31 + g.H);
    const x = random(g.N * g.C * g.H * g.W, rng);
    const w = random(g.OC * g.Cg * g.KH * g.KW, rng);
    const dy = random(g.N * g.OC * g.OH * g.OW, rng);
    const ref = { stride: g.stride, padding: g.padding, dilation: g.dilation, groups: g.groups };
    const y = conv2dRef(x, [g.N, g.C, g.H, g.W], w, [g.OC, g.Cg, g.KH, g.KW], null, ref).y;
    const grads = conv2dBackwardRef(x, [g.N, g.C, g.H, g.W], w, [g.OC, g.Cg, g.KH, g.KW], dy, ref);
    const [gy, gdx, gdw] = await tidy(() => {
      const xt = Tensor.from(Float32Array.from(x), [g.N, g.C, g.H, g.W]);
      const wt = Tensor.from(Float32Array.from(w), [g.OC, g.Cg, g.KH, g.KW]);
      const dyt = Tensor.from(Float32Array.from(dy), [g.N, g.OC, g.OH, g.OW]);
      return Promise.all([conv2dForward(xt, wt, null, g).toArray(), conv2dBackwardInput(dyt, wt, g).toArray(), conv2dBackwardWeight(dyt, xt, g).toArray()]);
    });
    const errs = [maxRelError(gy, y), maxRelError(gdx, grads.dx), maxRelError(gdw, grads.dw)];
    if (errs.some((e) => !(e < 1e-4))) throw new Error(`${s.name} (channels / 8): relative errors fwd, dx, dw ${errs.join(', ')}`);
  }
  console.log('all kernels match the reference');
}

type Pass = 'fwd' | 'dx' | 'dw';

function benchCase(s: Shape, pass: Pass): BenchCase {
  const g = geometryOf(s);
  return {
    name: `${pass} ${s.name}`,
    flops: flops(g),
    setup() {
      const rng = new Rng(1);
      const x = Tensor.from(Float32Array.from(random(g.N * g.C * g.H * g.W, rng)), [g.N, g.C, g.H, g.W]);
      const w = Tensor.from(Float32Array.from(random(g.OC * g.Cg * g.KH * g.KW, rng)), [g.OC, g.Cg, g.KH, g.KW]);
      const dy = Tensor.from(Float32Array.from(random(g.N * g.OC * g.OH * g.OW, rng)), [g.N, g.OC, g.OH, g.OW]);
      const run = {
        fwd: () => void conv2dForward(x, w, null, g),
        dx: () => void conv2dBackwardInput(dy, w, g),
        dw: () => void conv2dBackwardWeight(dy, x, g),
      }[pass];
      return { run, dispose: () => [x, w, dy].forEach((t) => t.release()) };
    },
  };
}

export const cases: BenchCase[] = SHAPES.flatMap((s) => (s.backward ? (['fwd', 'dx', 'dw'] as const) : (['fwd'] as const)).map((p) => benchCase(s, p)));

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  await initGpu(process.env.GPUNET_DEVICE);
  const tilings = (process.env.TILES ?? '').split(',').filter(Boolean);
  for (const tiling of tilings.length ? tilings : ['']) {
    if (tiling) {
      const [TM, TN] = tiling.split('x').map(Number);
      setConv2dTiling({ TM, TN });
    }
    await validate();
    await runBench(`conv2d${tiling ? ` tiles ${tiling}` : ''}`, cases, { repeat: 2, maxTime: 1, filter: process.env.FILTER });
  }
  process.exit(0);
}
