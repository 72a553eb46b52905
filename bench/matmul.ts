// GEMM throughput: the 1024^3 matmul in its four transpose layouts, the GEMMs of ResNet18's fc
// layer (batch 16, 512 -> 1000) forward and backward, and ViT-B/16's batched attention products
// (batch 16, 12 heads, 197 tokens of 64). validate() checks every layout against the float64
// reference (the 1024^3 ones at 256^3, the attention ones at 2 x 3 heads: the same kernel variants). The floor this project
// holds the kernel to: the plain 1024^3 matmul at >= 6 GFLOP/s on lavapipe.
//   npx tsx bench/matmul.ts [filter] [--quick]
//   GPUNET_GEMM_TILING='{"kernel":"gemm","wgN":8,"wgM":8,"blocksM":2,"blocksN":1}' npx tsx bench/matmul.ts
//   GPUNET_GEMM_TILING='{"kernel":"gemmShared","TM":16,"NB":2}' npx tsx bench/matmul.ts   (one tiling
//   for every shape, instead of each shape's tuned or default one)
import { gemm, matmul, type GemmTiling } from '../src/ops/matmul.ts';
import { Rng, Tensor } from '../src/tensor/index.ts';
import { matmulNdRef, matmulRef } from '../src/reference/matmul.ts';
import { expectClose, isMain, randomValues, readBack, runFamilies, toTensor, type BenchCase, type Floor } from './harness.ts';

const TILING_ENV = process.env.GPUNET_GEMM_TILING;

export const title = `gemm (matmul and the fc layer)${TILING_ENV ? `, tiling ${TILING_ENV}` : ''}`;

/** the tiling GPUNET_GEMM_TILING names, else undefined: each shape's tuned or default one */
function tiling(): GemmTiling | undefined {
  return TILING_ENV ? (JSON.parse(TILING_ENV) as GemmTiling) : undefined;
}

interface GemmShape {
  name: string;
  M: number;
  N: number;
  K: number;
  transA?: boolean;
  transB?: boolean;
  bias?: boolean;
  quick?: boolean;
}

const SHAPES: GemmShape[] = [
  { name: 'matmul 1024^3 A B', M: 1024, N: 1024, K: 1024, quick: true },
  { name: 'matmul 1024^3 A^T B', M: 1024, N: 1024, K: 1024, transA: true },
  { name: 'matmul 1024^3 A B^T', M: 1024, N: 1024, K: 1024, transB: true },
  { name: 'matmul 1024^3 A^T B^T', M: 1024, N: 1024, K: 1024, transA: true, transB: true },
  // y = x w^T + b: x [16,512], w [1000,512]
  { name: 'fc forward y = x w^T + b [16,512]->[16,1000]', M: 16, N: 1000, K: 512, transB: true, bias: true, quick: true },
  // dx = dy w: dy [16,1000], w [1000,512]
  { name: 'fc backward dx = dy w', M: 16, N: 512, K: 1000, quick: true },
  // dw = dy^T x: dy [16,1000], x [16,512]
  { name: 'fc backward dw = dy^T x', M: 1000, N: 512, K: 16, transA: true, quick: true },
];

/** Batched products: stacks a x b (transB: b's last two dims transposed). */
interface BatchedShape {
  name: string;
  a: number[];
  b: number[];
  transB?: boolean;
  quick?: boolean;
}

const ATTENTION: BatchedShape[] = [
  // scores = q k^T: q, k [16,12,197,64]
  { name: 'attention scores q k^T [16,12,197,64]', a: [16, 12, 197, 64], b: [16, 12, 197, 64], transB: true, quick: true },
  // out = softmax(scores) v: [16,12,197,197] x [16,12,197,64]
  { name: 'attention output p v [16,12,197,197] x [16,12,197,64]', a: [16, 12, 197, 197], b: [16, 12, 197, 64] },
];

const batchedFlops = (s: BatchedShape) => {
  const [M, K] = s.a.slice(-2);
  const N = s.transB ? s.b[s.b.length - 2] : s.b[s.b.length - 1];
  return 2 * (s.a.slice(0, -2).reduce((p, d) => p * d, 1)) * M * N * K;
};

/** Random operands of shape s as float64 (what the reference reads) and their GPU tensors. */
function operands(s: GemmShape, rng: Rng) {
  const { M, N, K, transA = false, transB = false } = s;
  const a = randomValues(M * K, rng);
  const b = randomValues(K * N, rng);
  const bias = s.bias ? randomValues(N, rng) : null;
  return {
    a, b, bias,
    tensors: () => ({ a: toTensor(a, transA ? [K, M] : [M, K]), b: toTensor(b, transB ? [N, K] : [K, N]), bias: bias ? toTensor(bias, [N]) : null }),
  };
}

/** Every shape against matmulRef; shapes over 2^25 multiply-adds with each size / 4 (multiples of 4 stay so). */
export async function validate(): Promise<void> {
  for (const full of SHAPES) {
    const d = full.M * full.N * full.K > 2 ** 25 ? 4 : 1;
    const s = { ...full, M: full.M / d, N: full.N / d, K: full.K / d };
    const { a, b, bias, tensors } = operands(s, new Rng(s.M + s.N + s.K));
    const [got] = await readBack(() => {
      const t = tensors();
      return [gemm(t.a, t.b, { transA: s.transA, transB: s.transB, bias: t.bias }, tiling())];
    });
    expectClose(`${full.name} at [${s.M},${s.N},${s.K}]`, got, matmulRef(a, b, s.M, s.N, s.K, { transA: s.transA, transB: s.transB, bias }));
  }
  for (const full of ATTENTION) {
    const small = (shape: number[]) => [2, 3, ...shape.slice(2)];
    const [aShape, bShape] = [small(full.a), small(full.b)];
    const rng = new Rng(aShape[2]);
    const [a, b] = [aShape, bShape].map((s) => randomValues(s.reduce((p, d) => p * d, 1), rng));
    const [got] = await readBack(() => [matmul(toTensor(a, aShape), toTensor(b, bShape), { transB: full.transB })]);
    expectClose(`${full.name} at [${aShape}]`, got, matmulNdRef(a, aShape, b, bShape, { transB: full.transB }).y);
  }
}

const gemmCases: BenchCase[] = SHAPES.map((s) => ({
  name: s.name,
  flops: 2 * s.M * s.N * s.K,
  bytes: 4 * (s.M * s.K + s.K * s.N + s.M * s.N),
  quick: s.quick,
  setup() {
    const { a, b, bias } = operands(s, new Rng(1)).tensors();
    const t = tiling();
    return {
      run: () => void gemm(a, b, { transA: s.transA, transB: s.transB, bias }, t),
      dispose: () => [a, b, bias].forEach((x) => x?.release()),
    };
  },
}));

const attentionCases: BenchCase[] = ATTENTION.map((s) => ({
  name: s.name,
  flops: batchedFlops(s),
  bytes: 4 * (s.a.reduce((p, d) => p * d, 1) + s.b.reduce((p, d) => p * d, 1) + batchedFlops(s) / (2 * s.a[s.a.length - 1])),
  quick: s.quick,
  setup() {
    const rng = new Rng(1);
    const [a, b] = [Tensor.randn(s.a, rng), Tensor.randn(s.b, rng)];
    return { run: () => void matmul(a, b, { transB: s.transB }), dispose: () => [a, b].forEach((x) => x.release()) };
  },
}));

export const cases: BenchCase[] = [...gemmCases, ...attentionCases];

export const floors: Floor[] = [{ what: 'matmul 1024^3', cases: cases.slice(0, 1), gflops: 6 }];

if (isMain(import.meta.url)) process.exit((await runFamilies([{ title, cases, validate, floors }])) ? 0 : 1);
