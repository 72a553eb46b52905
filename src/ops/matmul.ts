// Matrix multiply and the linear layer, both on one GEMM kernel family (shaders/matmul.wgsl).
//
//   matmul: C = op(A) op(B), op = identity or transpose. Backward: with G = dC,
//     dA = G op(B)^T (stored transposed when transA: dA = op(B) G^T), dB = op(A)^T G (or G^T op(A)).
//   linear: y = x w^T + b (torch.nn.functional.linear). Backward: dx = dy w, dw = dy^T x,
//     db = column sums of dy.
// Every gradient is one more GEMM with other transpose flags, computed only when asked for.
import { getGpu, type Gpu } from '../gpu/index.ts';
import { OpError, recordOp, shapeStr, Tensor } from '../tensor/index.ts';

export interface GemmOptions {
  /** A is stored [K, M] */
  transA?: boolean;
  /** B is stored [N, K] */
  transB?: boolean;
  /** [N], added to every row of C */
  bias?: Tensor | null;
  /** op name for errors and the dispatch label */
  op?: string;
}

/** Register tiling of the gemm kernel (its override constants). */
export interface GemmTiling {
  /** invocations per workgroup along N and M */
  wgN: number;
  wgM: number;
  /** 4x4 output blocks per invocation along M and N (1 or 2) */
  blocksM: number;
  blocksN: number;
}

/**
 * Tiling for the adapter. On lavapipe (the CPU) an invocation is one SIMD lane, and its loads are
 * per-lane scalar loads that dominate: the 8x8 output tile per lane amortises them best (1024^3 in
 * worker CPU time: 4x4 tiles 6.1, 8x4 7.3, 8x8 7.8 GFLOP per core-second; bench/matmul.ts takes
 * GPUNET_GEMM_TILING to compare). On GPUs, a 16x16 workgroup of 8x8 tiles is the usual
 * register-blocked shape without shared memory (256 invocations is WebGPU's guaranteed minimum).
 */
export function gemmTiling(gpu: Gpu = getGpu()): GemmTiling {
  return gpu.isCpu ? { wgN: 8, wgM: 8, blocksM: 2, blocksN: 2 } : { wgN: 16, wgM: 16, blocksM: 2, blocksN: 2 };
}

/** WGSL text for an operand: vec4 elements (one load per 4-element line) when its stored rows are
 *  whole vec4s, else scalars. `i` holds the line's four flat indices. */
function operandDefines(name: 'a' | 'b', vec4: boolean): Record<string, string> {
  const up = name.toUpperCase();
  return vec4
    ? { [`${up}_TYPE`]: 'vec4<f32>', [`LOAD_${up}`]: `${name}[i.x / 4u]` }
    : { [`${up}_TYPE`]: 'f32', [`LOAD_${up}`]: `vec4f(${name}[i.x], ${name}[i.y], ${name}[i.z], ${name}[i.w])` };
}

function is2d(t: Tensor): boolean {
  return t.shape.length === 2;
}

/**
 * The raw GEMM launcher (not recorded on the tape): C[M,N] = op(A) op(B) (+ bias[N] on every row),
 * a: [M,K] or [K,M] (transA), b: [K,N] or [N,K] (transB).
 */
export function gemm(a: Tensor, b: Tensor, opts: GemmOptions = {}, tiling: GemmTiling = gemmTiling()): Tensor {
  const { transA = false, transB = false, bias = null, op = 'gemm' } = opts;
  const desc = () =>
    `a${shapeStr(a.shape)}${transA ? '^T' : ''} b${shapeStr(b.shape)}${transB ? '^T' : ''}${bias ? ` bias${shapeStr(bias.shape)}` : ''}`;
  if (!(a instanceof Tensor) || !(b instanceof Tensor)) throw new OpError(op, 'inputs must be tensors');
  if (!is2d(a) || !is2d(b)) throw new OpError(op, `expected 2-D matrices, got ${desc()}`);
  const [M, Ka] = transA ? [a.shape[1], a.shape[0]] : a.shape;
  const [Kb, N] = transB ? [b.shape[1], b.shape[0]] : b.shape;
  if (Ka !== Kb) throw new OpError(op, `inner dimensions differ (${Ka} vs ${Kb}): ${desc()}`);
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== N)) throw new OpError(op, `bias must be [${N}]: ${desc()}`);
  const K = Ka;
  const { wgN, wgM, blocksM, blocksN } = tiling;
  if (![blocksM, blocksN].every((n) => n === 1 || n === 2)) throw new OpError(op, `tiling blocks must be 1 or 2, got ${blocksM}x${blocksN}`);
  const out = Tensor.empty([M, N]);
  if (M === 0 || N === 0) return out;
  getGpu().dispatch({
    kernel: {
      shader: 'matmul',
      entry: 'gemm',
      bindings: ['write', 'read', 'read', 'read'],
      constants: { TRANS_A: Number(transA), TRANS_B: Number(transB), WG_N: wgN, WG_M: wgM, BLOCKS_M: blocksM, BLOCKS_N: blocksN },
      // a stored row is K long (M when transposed), b's N (K when transposed)
      defines: { ...operandDefines('a', (transA ? M : K) % 4 === 0), ...operandDefines('b', (transB ? K : N) % 4 === 0) },
    },
    // without a bias, binding 4 is never read: a stands in for it
    buffers: [out.buffer, a.buffer, b.buffer, (bias ?? a).buffer],
    u32: [M, N, K, Number(bias !== null)],
    workgroups: [Math.ceil(N / (4 * blocksN * wgN)), Math.ceil(M / (4 * blocksM * wgM))],
    label: `${op} ${desc()}`,
  });
  return out;
}

const COLUMN_SUM_WG = 64;

/** out[N] = sum over rows of x[M, N] */
function columnSum(x: Tensor, op: string): Tensor {
  const [M, N] = x.shape;
  const out = Tensor.empty([N]);
  if (N === 0) return out;
  getGpu().dispatch({
    // columnSum reads neither gemm operand, but the shared module needs their types filled in
    kernel: {
      shader: 'matmul',
      entry: 'columnSum',
      bindings: ['write', 'read'],
      constants: { WG_SUM: COLUMN_SUM_WG },
      defines: { ...operandDefines('a', false), ...operandDefines('b', false) },
    },
    buffers: [out.buffer, x.buffer],
    u32: [M, N, 0, 0],
    workgroups: [Math.ceil(N / COLUMN_SUM_WG)],
    label: `${op}.columnSum ${shapeStr(x.shape)}`,
  });
  return out;
}

/** a: [M, K] (or [K, M] when transA), b: [K, N] (or [N, K] when transB) -> [M, N]; recorded on the tape. */
export function matmul(a: Tensor, b: Tensor, opts: { transA?: boolean; transB?: boolean } = {}): Tensor {
  const { transA = false, transB = false } = opts;
  const out = gemm(a, b, { transA, transB, op: 'matmul' });
  return recordOp('matmul', [a, b], out, (dy, needs) => [
    // d op(A) = G op(B)^T; stored transposed, dA = (G op(B)^T)^T = op(B) G^T
    needs[0] ? (transA ? gemm(b, dy, { transA: transB, transB: true, op: 'matmul.backwardA' }) : gemm(dy, b, { transB: !transB, op: 'matmul.backwardA' })) : null,
    // d op(B) = op(A)^T G; stored transposed, dB = G^T op(A)
    needs[1] ? (transB ? gemm(dy, a, { transA: true, transB: transA, op: 'matmul.backwardB' }) : gemm(a, dy, { transA: !transA, op: 'matmul.backwardB' })) : null,
  ]);
}

/** x: [N, in], w: [out, in], b: [out] | null -> y = x w^T + b: [N, out] (torch.nn.functional.linear) */
export function linear(x: Tensor, w: Tensor, b: Tensor | null): Tensor {
  if (!(x instanceof Tensor) || !(w instanceof Tensor)) throw new OpError('linear', 'inputs must be tensors');
  if (!is2d(x) || !is2d(w) || x.shape[1] !== w.shape[1] || (b && (b.shape.length !== 1 || b.shape[0] !== w.shape[0]))) {
    throw new OpError('linear', `expected x [N,in], w [out,in], b [out]: got x${shapeStr(x.shape)} w${shapeStr(w.shape)}${b ? ` b${shapeStr(b.shape)}` : ''}`);
  }
  const out = gemm(x, w, { transB: true, bias: b, op: 'linear' });
  return recordOp('linear', [x, w, b], out, (dy, needs) => [
    needs[0] ? gemm(dy, w, { op: 'linear.backwardX' }) : null,
    needs[1] ? gemm(dy, x, { transA: true, op: 'linear.backwardW' }) : null,
    needs[2] ? columnSum(dy, 'linear.backwardB') : null,
  ]);
}
