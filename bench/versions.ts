// `npm run bench:versions`: the learning path from "correct" to "fast", in llm.c's dev/cuda manner.
// Numbered versions of the matmul and conv2d forward kernels, each validated against the float64
// reference (src/reference/) at an awkward shape, then timed side by side (the fastest of a few
// launches, timestamp queries) at a ResNet18-sized one:
//   matmul 1   shaders/versions/matmul1.wgsl   one invocation per output, a dot product from storage
//   matmul 2   shaders/matmul.wgsl gemm        + 4x4 register blocks (2x2 of them per invocation),
//                                                vec4 loads, blocks transposed in registers
//   matmul 3   shaders/matmul.wgsl gemmShared  + a workgroup is one subgroup sharing a 32-row tile
//                                                of A: each lane loads every 8th line of it and
//                                                reads the others by subgroup shuffles
//   conv2d 1   shaders/versions/conv2d1.wgsl   one invocation per output, the reference's loops
//   conv2d 2   shaders/conv2d.wgsl forward     + implicit GEMM: a TM x TN register tile per lane,
//                                                weight rows as vec4, the gathered input loaded
//                                                once per subgroup and shared by shuffles
//   conv2d 3   the same, tile shape tuned       + per-shape tile shapes (gpunet tune's cache)
//   conv2d 4   shaders/conv2d.wgsl winograd*    + Winograd F(2x2,3x3): 16 products per 2x2 tile and
//                                                channel instead of 36, as 16 batched GEMMs whose
//                                                B lines are contiguous (vec4 loads), between
//                                                input, weight and output transforms
//   conv2d 5   the same, WM = 4                 + F(4x4,3x3): 36 products per 4x4 tile instead of
//                                                144, transforms over 6x6 patches (2.25x the
//                                                activations' size instead of 4x)
// What each gained is printed beside it (speed-up over version 1).
//   npx tsx bench/versions.ts
import { getGpu, tuneCache } from '../src/gpu/index.ts';
import { conv2dForward, conv2dGeometry, setConv2dTiling, setConv2dWinograd } from '../src/ops/conv2d.ts';
import { gemm, type GemmTiling } from '../src/ops/matmul.ts';
import { conv2dRef } from '../src/reference/conv2d.ts';
import { matmulRef } from '../src/reference/matmul.ts';
import { Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { expectClose, openGpu, randomValues, readBack, toTensor } from './harness.ts';

interface Version {
  name: string;
  adds: string;
  run: () => Tensor;
}

/** The fastest of `runs` launches of `run`, ms (after one untimed launch). */
async function fastestMs(run: () => Tensor, runs = 3): Promise<number> {
  const gpu = getGpu();
  tidy(() => void run());
  await gpu.sync();
  gpu.startProfiling();
  for (let r = 0; r < runs; r++) {
    tidy(() => void run());
    gpu.flush();
  }
  const { events } = await gpu.stopProfiling();
  const perRun = new Map<number, number>();
  for (const e of events) perRun.set(e.submit, (perRun.get(e.submit) ?? 0) + (e.endNs - e.beginNs) / 1e6);
  return Math.min(...perRun.values());
}

function matmul1(a: Tensor, b: Tensor, M: number, N: number, K: number): Tensor {
  const c = Tensor.empty([M, N]);
  getGpu().dispatch({
    kernel: { shader: 'versions/matmul1', entry: 'main', bindings: ['write', 'read', 'read'] },
    buffers: [c.buffer, a.buffer, b.buffer],
    params: { M, N, K },
    workgroups: [Math.ceil(N / 8), Math.ceil(M / 8)],
    label: 'matmul1',
  });
  return c;
}

function conv2d1(x: Tensor, w: Tensor, s: number, p: number): Tensor {
  const [N, C, H, W] = x.shape;
  const [OC, , KH, KW] = w.shape;
  const g = conv2dGeometry(x.shape, w.shape, null, { stride: s, padding: p });
  const y = Tensor.empty([N, OC, g.OH, g.OW]);
  const groups = Math.ceil(y.size / 64);
  getGpu().dispatch({
    kernel: { shader: 'versions/conv2d1', entry: 'main', bindings: ['write', 'read', 'read'] },
    buffers: [y.buffer, x.buffer, w.buffer],
    params: { N, C, H, W, OC, OH: g.OH, OW: g.OW, KH, KW, S: s, P: p },
    workgroups: [Math.min(groups, 65535), Math.ceil(groups / 65535)],
    label: 'conv2d1',
  });
  return y;
}

/** `run` with the 3x3 stride-1 convolutions forced through Winograd F(m x m,3x3). */
function winograd<T>(m: 2 | 4, run: () => T): T {
  setConv2dWinograd(m);
  try {
    return run();
  } finally {
    setConv2dWinograd('auto');
  }
}

/** Times each version; `bytes`: what one launch must read and write at the least. */
async function family(title: string, flops: number, bytes: number, versions: Version[]): Promise<void> {
  console.log(`\n${title}`);
  console.log(`${'version'.padEnd(10)}  ${'ms'.padStart(9)}  ${'GFLOP/s'.padStart(8)}  ${'GB/s'.padStart(6)}  ${'speed-up'.padStart(8)}  what it adds`);
  let first = 0;
  for (const v of versions) {
    const ms = await fastestMs(v.run);
    first ||= ms;
    console.log(`${v.name.padEnd(10)}  ${ms.toFixed(3).padStart(9)}  ${(flops / ms / 1e6).toFixed(2).padStart(8)}  ${(bytes / ms / 1e6).toFixed(2).padStart(6)}  ${`${(first / ms).toFixed(1)}x`.padStart(8)}  ${v.adds}`);
  }
}

/** The kernels of matmul versions 2 and 3, whatever the tuner would pick. */
const MATMUL2: GemmTiling = { kernel: 'gemm', wgN: 8, wgM: 8, blocksM: 2, blocksN: 2 };
const MATMUL3: GemmTiling = { kernel: 'gemmShared', TM: 32, NB: 1 };

const gpu = await openGpu();
const rng = new Rng(3);

// validation at awkward shapes: every version against the float64 reference
{
  const [M, N, K] = [37, 41, 29];
  const a = randomValues(M * K, rng);
  const b = randomValues(K * N, rng);
  const ref = matmulRef(a, b, M, N, K);
  const [v1, v2, v3] = await readBack(() => {
    const [ta, tb] = [toTensor(a, [M, K]), toTensor(b, [K, N])];
    return [matmul1(ta, tb, M, N, K), gemm(ta, tb, {}, MATMUL2), gemm(ta, tb, {}, MATMUL3)];
  });
  expectClose('matmul version 1', v1, ref);
  expectClose('matmul version 2', v2, ref);
  expectClose('matmul version 3', v3, ref);
  const xs = [1, 7, 9, 7];
  const ws = [10, 7, 3, 3];
  const x = randomValues(7 * 9 * 7, rng);
  const w = randomValues(10 * 7 * 9, rng);
  const y = conv2dRef(x, xs, w, ws, null, { stride: [2, 2], padding: [1, 1], dilation: [1, 1], groups: 1 }).y;
  const [c1, c2] = await readBack(() => {
    const [tx, tw] = [toTensor(x, xs), toTensor(w, ws)];
    return [conv2d1(tx, tw, 2, 1), conv2dForward(tx, tw, null, conv2dGeometry(xs, ws, null, { stride: 2, padding: 1 }))];
  });
  expectClose('conv2d version 1', c1, y);
  expectClose('conv2d version 2', c2, y);
  // Winograd is for stride 1: its own awkward shape (odd sizes, a last tile half outside)
  const y1 = conv2dRef(x, xs, w, ws, null, { stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1 }).y;
  for (const m of [2, 4] as const) {
    const [c] = await readBack(() => winograd(m, () => [conv2dForward(toTensor(x, xs), toTensor(w, ws), null, conv2dGeometry(xs, ws, null, { padding: 1 }))]));
    expectClose(`conv2d version ${m === 2 ? 4 : 5}`, c, y1);
  }
  console.log('validated every version against the float64 reference');
}

const n = 1024;
const [a, b] = [Tensor.randn([n, n], rng), Tensor.randn([n, n], rng)];
await family(`matmul ${n}^3`, 2 * n ** 3, 3 * 4 * n * n, [
  { name: 'matmul 1', adds: 'one invocation per output, a dot product from storage', run: () => matmul1(a, b, n, n, n) },
  { name: 'matmul 2', adds: '4x4 register blocks, 2x2 per invocation; vec4 loads', run: () => gemm(a, b, {}, MATMUL2) },
  { name: 'matmul 3', adds: 'a subgroup shares a 32-row A tile: 1 A line load per 8 lanes, shuffles for the rest', run: () => gemm(a, b, {}, MATMUL3) },
]);

const x = Tensor.randn([1, 64, 56, 56], rng);
const w = Tensor.randn([64, 64, 3, 3], rng);
const geo = conv2dGeometry(x.shape, w.shape, null, { padding: 1 });
const key = `forward x[1,64,56,56] w[64,64,3,3] s1x1 p1x1 d1x1 g1`;
const tuned = tuneCache(gpu).lookup('conv2d', key);
/** the direct kernel at tile shape TM x TN (forced tiles take the direct path) */
function withTiles(TM: number, TN: number): Tensor {
  setConv2dTiling({ TM, TN });
  try {
    return conv2dForward(x, w, null, geo);
  } finally {
    setConv2dTiling(null);
  }
}
await family('conv2d forward 3x3 64->64 at 56x56, batch 1 (ResNet18 layer1)', 2 * 64 * 56 * 56 * 64 * 9, 4 * (2 * 64 * 56 * 56 + 64 * 64 * 9), [
  { name: 'conv2d 1', adds: "one invocation per output, the reference's loops", run: () => conv2d1(x, w, 1, 1) },
  {
    name: 'conv2d 2',
    adds: 'implicit GEMM: TM x TN register tile per lane, vec4 weight rows, input shared by subgroup shuffles (TM 2, TN 12)',
    run: () => withTiles(2, 12),
  },
  ...(tuned?.TM !== undefined ? [{ name: 'conv2d 3', adds: `the tile shape gpunet tune chose for this shape (TM ${tuned.TM}, TN ${tuned.TN})`, run: () => withTiles(Number(tuned.TM), Number(tuned.TN)) }] : []),
  { name: 'conv2d 4', adds: 'Winograd F(2x2,3x3): 16 batched GEMMs (vec4 lines) between transforms, 4/9 of the products', run: () => winograd(2, () => conv2dForward(x, w, null, geo)) },
  { name: 'conv2d 5', adds: 'Winograd F(4x4,3x3): 36 batched GEMMs over 6x6 patches, 1/4 of the products', run: () => winograd(4, () => conv2dForward(x, w, null, geo)) },
]);
if (tuned?.TM === undefined) console.log('(conv2d 3, the tuned tile shape, runs once `gpunet tune --arch resnet18` has cached a tile shape for this adapter)');
process.exit(0);
