// conv2d kernels on the convolutions of ResNet18 at 224 px: the 3x3 stride-1 convs of each stage
// (batch 1 and 4), the stride-2 3x3 and 1x1 downsample convs that open stages 2-4, and the 7x7
// stem; forward, backward to the input and backward to the weight. GFLOP/s count the
// convolution's multiply-adds, 2*N*OC*OH*OW*C/groups*KH*KW, for all three. validate() checks each
// geometry at batch 1 with channels / 8 (the same kernels and tails) against the float64 reference.
// The floor: every 3x3 convolution forward at >= 4 GFLOP/s on lavapipe.
//   npx tsx bench/conv2d.ts [filter] [--quick]
//   TILES=2x12,4x8 npx tsx bench/conv2d.ts       compare tilings (rows per lane x columns)
import {
  conv2dBackwardInput, conv2dBackwardWeight, conv2dForward, conv2dGeometry, setConv2dTiling,
  type Conv2dGeometry, type Conv2dOptions,
} from '../src/ops/conv2d.ts';
import { Rng } from '../src/tensor/index.ts';
import { conv2dBackwardRef, conv2dRef } from '../src/reference/conv2d.ts';
import { expectClose, isMain, parseCli, randomValues, readBack, runFamilies, toTensor, type BenchCase, type BenchRow, type Floor } from './harness.ts';

export const title = 'conv2d (ResNet18 convolutions, 224 px)';

interface Shape {
  name: string;
  /** batch, channels in and out, input size, kernel size */
  n: number; c: number; oc: number; hw: number; k: number;
  opts: Conv2dOptions;
  /** also time the backward kernels */
  backward: boolean;
}

const s1 = { padding: 1 };
const s2 = { stride: 2, padding: 1 };
const SHAPES: Shape[] = [
  ...[1, 4].flatMap((n) => [
    { name: `3x3 64->64 56x56 N${n}`, n, c: 64, oc: 64, hw: 56, k: 3, opts: s1, backward: true },
    { name: `3x3 128->128 28x28 N${n}`, n, c: 128, oc: 128, hw: 28, k: 3, opts: s1, backward: true },
    { name: `3x3 256->256 14x14 N${n}`, n, c: 256, oc: 256, hw: 14, k: 3, opts: s1, backward: true },
    { name: `3x3 512->512 7x7 N${n}`, n, c: 512, oc: 512, hw: 7, k: 3, opts: s1, backward: true },
  ]),
  { name: '3x3 s2 64->128 56x56 N1', n: 1, c: 64, oc: 128, hw: 56, k: 3, opts: s2, backward: true },
  { name: '3x3 s2 128->256 28x28 N1', n: 1, c: 128, oc: 256, hw: 28, k: 3, opts: s2, backward: true },
  { name: '3x3 s2 256->512 14x14 N1', n: 1, c: 256, oc: 512, hw: 14, k: 3, opts: s2, backward: true },
  { name: '1x1 s2 64->128 56x56 N1', n: 1, c: 64, oc: 128, hw: 56, k: 1, opts: { stride: 2 }, backward: true },
  { name: '1x1 s2 128->256 28x28 N1', n: 1, c: 128, oc: 256, hw: 28, k: 1, opts: { stride: 2 }, backward: true },
  { name: '1x1 s2 256->512 14x14 N1', n: 1, c: 256, oc: 512, hw: 14, k: 1, opts: { stride: 2 }, backward: true },
  { name: '7x7 s2 stem 3->64 224x224 N1', n: 1, c: 3, oc: 64, hw: 224, k: 7, opts: { stride: 2, padding: 3 }, backward: true },
  { name: '7x7 s2 stem 3->64 224x224 N4', n: 4, c: 3, oc: 64, hw: 224, k: 7, opts: { stride: 2, padding: 3 }, backward: false },
];

/** the shapes whose backward kernels the quick run times (the largest and smallest images) */
const QUICK_BACKWARD = new Set(['3x3 64->64 56x56 N1', '3x3 512->512 7x7 N1']);

function geometryOf(s: Shape, channelScale = 1): Conv2dGeometry {
  const c = Math.max(1, Math.round(s.c * channelScale));
  const oc = Math.max(1, Math.round(s.oc * channelScale));
  return conv2dGeometry([s.n, c, s.hw, s.hw], [oc, c, s.k, s.k], null, s.opts);
}

function flops(g: Conv2dGeometry): number {
  return 2 * g.N * g.OC * g.OH * g.OW * g.Cg * g.KH * g.KW;
}

/** Random x, w and dy for geometry g, as float64 (what the reference reads) and on the GPU. */
function operands(g: Conv2dGeometry, rng: Rng) {
  const xShape = [g.N, g.C, g.H, g.W];
  const wShape = [g.OC, g.Cg, g.KH, g.KW];
  const yShape = [g.N, g.OC, g.OH, g.OW];
  const x = randomValues(g.N * g.C * g.H * g.W, rng);
  const w = randomValues(g.OC * g.Cg * g.KH * g.KW, rng);
  const dy = randomValues(g.N * g.OC * g.OH * g.OW, rng);
  return { x, w, dy, xShape, wShape, tensors: () => ({ x: toTensor(x, xShape), w: toTensor(w, wShape), dy: toTensor(dy, yShape) }) };
}

/** Each geometry at batch 1 with channels / 8 against the reference: forward, dx and dw. */
export async function validate(): Promise<void> {
  for (const s of SHAPES.filter((x) => x.n === 1)) {
    const g = geometryOf(s, s.c > 8 ? 1 / 8 : 1);
    const { x, w, dy, xShape, wShape, tensors } = operands(g, new Rng(g.C * 31 + g.H));
    const ref = { stride: g.stride, padding: g.padding, dilation: g.dilation, groups: g.groups };
    const y = conv2dRef(x, xShape, w, wShape, null, ref).y;
    const grads = conv2dBackwardRef(x, xShape, w, wShape, dy, ref);
    const [gy, gdx, gdw] = await readBack(() => {
      const t = tensors();
      return [conv2dForward(t.x, t.w, null, g), conv2dBackwardInput(t.dy, t.w, g), conv2dBackwardWeight(t.dy, t.x, g)];
    });
    const what = `conv2d ${s.name} with channels / 8`;
    expectClose(`${what} forward`, gy, y);
    expectClose(`${what} dx`, gdx, grads.dx);
    expectClose(`${what} dw`, gdw, grads.dw);
  }
}

type Pass = 'fwd' | 'dx' | 'dw';

function benchCase(s: Shape, pass: Pass): BenchCase {
  const g = geometryOf(s);
  return {
    name: `${pass} ${s.name}`,
    flops: flops(g),
    quick: s.n === 1 && (pass === 'fwd' || QUICK_BACKWARD.has(s.name)),
    setup() {
      const { x, w, dy } = operands(g, new Rng(1)).tensors();
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

export const floors: Floor[] = [{ what: 'ResNet18 3x3 convolutions, forward', cases: cases.filter((c) => c.name.startsWith('fwd 3x3')), gflops: 4 }];

/** totals per pass and batch size ('fwd 3x3 64->64 56x56 N1' -> 'fwd N1') */
export function summary(r: BenchRow): string {
  const words = r.name.split(' ');
  return `${words[0]} ${words[words.length - 1]}`;
}

if (isMain(import.meta.url)) {
  const tilings = (process.env.TILES ?? '').split(',').filter(Boolean);
  let ok = true;
  for (const tiling of tilings.length ? tilings : ['']) {
    if (tiling) {
      const [TM, TN] = tiling.split('x').map(Number);
      setConv2dTiling({ TM, TN });
    }
    ok = (await runFamilies([{ title: `${title}${tiling ? `, tiles ${tiling}` : ''}`, cases, validate, floors, summary }], parseCli())) && ok;
  }
  process.exit(ok ? 0 : 1);
}
