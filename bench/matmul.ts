// GEMM throughput: the 1024^3 matmul in its four transpose layouts, and the GEMMs of ResNet18's fc
// layer (batch 16, 512 -> 1000) forward and backward. Every case is validated first against float64
// dot products at sampled outputs, then timed. The floor this project holds the kernel to: the
// plain 1024^3 matmul at >= 6 GFLOP/s on lavapipe.
//   npx tsx bench/matmul.ts [filter]
//   GPUNET_GEMM_TILING='{"wgN":8,"wgM":8,"blocksM":2,"blocksN":1}' npx tsx bench/matmul.ts   (another tiling)
import { initGpu } from '../src/gpu/index.ts';
import { gemm, gemmTiling, type GemmTiling } from '../src/ops/matmul.ts';
import { Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { runBench, type BenchCase } from './harness.ts';

const FLOOR_GFLOPS = 6;

let tiling: GemmTiling;

interface GemmShape {
  name: string;
  M: number;
  N: number;
  K: number;
  transA?: boolean;
  transB?: boolean;
  bias?: boolean;
}

const SHAPES: GemmShape[] = [
  { name: 'matmul 1024^3 A B', M: 1024, N: 1024, K: 1024 },
  { name: 'matmul 1024^3 A^T B', M: 1024, N: 1024, K: 1024, transA: true },
  { name: 'matmul 1024^3 A B^T', M: 1024, N: 1024, K: 1024, transB: true },
  { name: 'matmul 1024^3 A^T B^T', M: 1024, N: 1024, K: 1024, transA: true, transB: true },
  // y = x w^T + b: x [16,512], w [1000,512]
  { name: 'fc forward y = x w^T + b [16,512]->[16,1000]', M: 16, N: 1000, K: 512, transB: true, bias: true },
  // dx = dy w: dy [16,1000], w [1000,512]
  { name: 'fc backward dx = dy w', M: 16, N: 512, K: 1000 },
  // dw = dy^T x: dy [16,1000], x [16,512]
  { name: 'fc backward dw = dy^T x', M: 1000, N: 512, K: 16, transA: true },
];

function randomMatrix(shape: number[], rng: Rng): { t: Tensor; data: Float32Array } {
  const data = new Float32Array(shape[0] * shape[1]);
  for (let i = 0; i < data.length; i++) data[i] = rng.uniform(-1, 1);
  return { t: Tensor.from(data, shape), data };
}

/** max relative error of C at `samples` random outputs against float64 dot products */
async function validate(s: GemmShape, rng: Rng, samples = 512): Promise<number> {
  return tidy(async () => {
    const { M, N, K, transA = false, transB = false } = s;
    const a = randomMatrix(transA ? [K, M] : [M, K], rng);
    const b = randomMatrix(transB ? [N, K] : [K, N], rng);
    const bias = s.bias ? randomMatrix([1, N], rng) : null;
    const c = await gemm(a.t, b.t, { transA, transB, bias: bias?.t.view([N]) }, tiling).toArray();
    let err = 0;
    let scale = 0;
    for (let i = 0; i < samples; i++) {
      const m = rng.int(M);
      const n = rng.int(N);
      let ref = bias ? bias.data[n] : 0;
      for (let k = 0; k < K; k++) ref += (transA ? a.data[k * M + m] : a.data[m * K + k]) * (transB ? b.data[n * K + k] : b.data[k * N + n]);
      err = Math.max(err, Math.abs(c[m * N + n] - ref));
      scale = Math.max(scale, Math.abs(ref));
    }
    return err / scale;
  });
}

function benchCase(s: GemmShape, rng: Rng): BenchCase {
  const { M, N, K, transA = false, transB = false } = s;
  return {
    name: s.name,
    flops: 2 * M * N * K,
    bytes: 4 * (M * K + K * N + M * N),
    setup() {
      const a = randomMatrix(transA ? [K, M] : [M, K], rng).t;
      const b = randomMatrix(transB ? [N, K] : [K, N], rng).t;
      const bias = s.bias ? randomMatrix([1, N], rng).t.view([N]) : null;
      return {
        run: () => gemm(a, b, { transA, transB, bias }, tiling),
        dispose: () => [a, b, bias].forEach((t) => t?.release()),
      };
    },
  };
}

async function main(): Promise<void> {
  const filter = process.argv[2];
  const gpu = await initGpu(process.env.GPUNET_DEVICE);
  tiling = process.env.GPUNET_GEMM_TILING ? (JSON.parse(process.env.GPUNET_GEMM_TILING) as GemmTiling) : gemmTiling(gpu);
  const shapes = SHAPES.filter((s) => !filter || s.name.includes(filter));
  const rng = new Rng(1);
  for (const s of shapes) {
    const err = await validate(s, rng);
    if (!(err < 1e-4)) throw new Error(`${s.name}: relative error ${err} against float64 at sampled outputs`);
  }
  await gpu.sync();
  console.log(`validated ${shapes.length} shapes (rel. error < 1e-4); tiling ${JSON.stringify(tiling)}`);
  const rows = await runBench('gemm (shaders/matmul.wgsl)', shapes.map((s) => benchCase(s, rng)));
  const floor = rows.find((r) => r.name === SHAPES[0].name);
  if (floor?.gflops !== undefined) {
    const ok = floor.gflops >= FLOOR_GFLOPS;
    console.log(`floor: ${floor.name} at ${floor.gflops.toFixed(2)} GFLOP/s ${ok ? '>=' : '<'} ${FLOOR_GFLOPS} -> ${ok ? 'PASS' : 'FAIL'}`);
    if (!ok) process.exitCode = 1;
  }
}

await main();
