// Matrix multiply and the linear layer, both on one GEMM kernel family (shaders/matmul.wgsl).
//
//   matmul: C = op(A) op(B), op = identity or transpose. Backward: with G = dC,
//     dA = G op(B)^T (stored transposed when transA: dA = op(B) G^T), dB = op(A)^T G (or G^T op(A)).
//   linear: y = x w^T + b (torch.nn.functional.linear). Backward: dx = dy w, dw = dy^T x,
//     db = column sums of dy.
// Every gradient is one more GEMM with other transpose flags, computed only when asked for.
// Read first: the plain float64 loops in src/reference/matmul.ts; the kernels are in shaders/matmul.wgsl.
import { getGpu, type BufferRange, type Gpu } from '../gpu/index.ts';
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

/** WGSL text for an operand: vec4 elements (one load per 4-element line) when its window's lines
 *  are whole aligned vec4s, else scalars. `i` holds the line's four flat indices. */
function operandDefines(name: 'a' | 'b', vec4: boolean): Record<string, string> {
  const up = name.toUpperCase();
  return vec4
    ? { [`${up}_TYPE`]: 'vec4<f32>', [`LOAD_${up}`]: `${name}[i.x / 4u]` }
    : { [`${up}_TYPE`]: 'f32', [`LOAD_${up}`]: `vec4f(${name}[i.x], ${name}[i.y], ${name}[i.z], ${name}[i.w])` };
}

function is2d(t: Tensor): boolean {
  return t.shape.length === 2;
}

// Chunking. A storage binding holds at most limits.maxStorageBufferBindingSize bytes (128 MiB on
// lavapipe), less than e.g. VGG16's 411 MB classifier weight. Such a GEMM runs as chunks along M, N
// and K (chunks along K add into C), each binding only its windows of the tensors: a window of r
// stored rows spans at most r whole rows, so the planner limits, per matrix, the chunk of the
// problem dimension its stored rows run along.

let bindingLimitOverride: number | null = null;

/** Lowers the storage binding limit gemm plans its chunks for (null: the adapter's). For tests. */
export function setGemmBindingLimit(bytes: number | null): void {
  bindingLimitOverride = bytes;
}

function bindingLimit(gpu: Gpu): number {
  return Math.min(gpu.limits.maxStorageBufferBindingSize, bindingLimitOverride ?? Infinity);
}

/** Problem dimensions, as indices into [M, N, K]. */
const DIM_M = 0;
const DIM_N = 1;
const DIM_K = 2;

/** A stored row-major matrix of a GEMM: its rows run along problem dimension `rows`, its columns
 *  along `cols` (null: a vector, one element per row). */
interface Stored {
  name: string;
  t: Tensor;
  rows: number;
  cols: number | null;
}

/** A matrix's window in one chunk: its bound range, the window's element offset in that range and
 *  its row stride; `vec4` when its lines can be loaded as aligned vec4s. */
interface Window {
  range: BufferRange;
  off: number;
  ld: number;
  vec4: boolean;
}

/** Chunk sizes along each problem dimension such that every window fits in `limit` bytes once bound
 *  from an offset aligned down to `align` bytes. */
function chunkSizes(sizes: readonly number[], mats: readonly Stored[], limit: number, align: number, op: string): number[] {
  const chunk = [...sizes];
  const room = limit / 4 - (align / 4 - 1); // elements, after the worst-case slack of aligning down
  for (const m of mats) {
    const rowLen = m.cols === null ? 1 : sizes[m.cols];
    const rows = Math.floor(room / rowLen); // Infinity for an empty row
    if (rows < 1) throw new OpError(op, `one row of ${m.name} (${rowLen * 4} bytes) exceeds the adapter's storage binding limit (${limit} bytes)`);
    // multiples of 4 keep vec4 lines whole in every chunk but the last
    if (rows < sizes[m.rows]) chunk[m.rows] = Math.min(chunk[m.rows], rows >= 4 ? rows - (rows % 4) : rows);
  }
  return chunk;
}

/** First indices of the chunks of a dimension (one chunk when it is empty). */
function chunkStarts(size: number, chunk: number): number[] {
  return size === 0 ? [0] : Array.from({ length: Math.ceil(size / chunk) }, (_, i) => i * chunk);
}

/** The window of `m` over the chunk [start, start + size) of a problem with dimensions `sizes`. */
function bindWindow(m: Stored, start: readonly number[], size: readonly number[], sizes: readonly number[], align: number): Window {
  const ld = m.cols === null ? 1 : sizes[m.cols];
  const cols = m.cols === null ? 1 : size[m.cols];
  const first = start[m.rows] * ld + (m.cols === null ? 0 : start[m.cols]);
  const end = size[m.rows] * cols === 0 ? first : first + (size[m.rows] - 1) * ld + cols;
  const offset = Math.floor((first * 4) / align) * align;
  const buffer = m.t.buffer;
  // an empty window still needs a (never read) binding: 16 bytes hold one vec4
  const bytes = Math.min(Math.max(end * 4 - offset, 16), buffer.size - offset);
  const off = first - offset / 4;
  return { range: { buffer, offset, size: bytes }, off, ld, vec4: ld % 4 === 0 && off % 4 === 0 && cols % 4 === 0 };
}

/** The Params of shaders/matmul.wgsl, in declaration order. */
function gemmParams(p: { M: number; N: number; K: number; hasBias?: boolean; accumulate: boolean; c?: Window; a?: Window; b?: Window; bias?: Window }) {
  const { c, a, b, bias } = p;
  return {
    M: p.M, N: p.N, K: p.K, hasBias: p.hasBias ?? false, accumulate: p.accumulate,
    offC: c?.off ?? 0, offA: a?.off ?? 0, offB: b?.off ?? 0, offBias: bias?.off ?? 0, ldC: c?.ld ?? 0, ldA: a?.ld ?? 0, ldB: b?.ld ?? 0,
  };
}

/**
 * The raw GEMM launcher (not recorded on the tape): C[M,N] = op(A) op(B) (+ bias[N] on every row),
 * a: [M,K] or [K,M] (transA), b: [K,N] or [N,K] (transB). Split into chunks when a matrix exceeds
 * the storage binding limit.
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

  const gpu = getGpu();
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  const sizes = [M, N, K];
  const c: Stored = { name: `out${shapeStr(out.shape)}`, t: out, rows: DIM_M, cols: DIM_N };
  const as: Stored = { name: `a${shapeStr(a.shape)}`, t: a, rows: transA ? DIM_K : DIM_M, cols: transA ? DIM_M : DIM_K };
  const bs: Stored = { name: `b${shapeStr(b.shape)}`, t: b, rows: transB ? DIM_N : DIM_K, cols: transB ? DIM_K : DIM_N };
  // without a bias, binding 4 is never read: a stands in for it
  const biasStored: Stored = bias ? { name: `bias${shapeStr(bias.shape)}`, t: bias, rows: DIM_N, cols: null } : as;
  const chunk = chunkSizes(sizes, [c, as, bs, biasStored], bindingLimit(gpu), align, op);
  for (const m0 of chunkStarts(M, chunk[DIM_M])) {
    for (const n0 of chunkStarts(N, chunk[DIM_N])) {
      for (const k0 of chunkStarts(K, chunk[DIM_K])) {
        const start = [m0, n0, k0];
        const size = start.map((s, d) => Math.min(chunk[d], sizes[d] - s));
        const [wc, wa, wb, wbias] = [c, as, bs, biasStored].map((m) => bindWindow(m, start, size, sizes, align));
        gpu.dispatch({
          kernel: {
            shader: 'matmul',
            entry: 'gemm',
            bindings: ['write', 'read', 'read', 'read'],
            constants: { TRANS_A: Number(transA), TRANS_B: Number(transB), WG_N: wgN, WG_M: wgM, BLOCKS_M: blocksM, BLOCKS_N: blocksN },
            defines: { ...operandDefines('a', wa.vec4), ...operandDefines('b', wb.vec4) },
          },
          buffers: [wc.range, wa.range, wb.range, wbias.range],
          // the bias is added once, by the first chunk along K; later ones add into C
          params: gemmParams({ M: size[DIM_M], N: size[DIM_N], K: size[DIM_K], hasBias: bias !== null && k0 === 0, accumulate: k0 > 0, c: wc, a: wa, b: wb, bias: wbias }),
          workgroups: [Math.ceil(size[DIM_N] / (4 * blocksN * wgN)), Math.ceil(size[DIM_M] / (4 * blocksM * wgM))],
          label: `${op} ${desc()}`,
          work: { flops: 2 * size[DIM_M] * size[DIM_N] * size[DIM_K], bytes: 4 * (size[DIM_M] * size[DIM_K] + size[DIM_K] * size[DIM_N] + size[DIM_M] * size[DIM_N]) },
        });
      }
    }
  }
  return out;
}

const COLUMN_SUM_WG = 64;

/** out[N] = sum over rows of x[M, N]; chunks of rows add into out when x exceeds the binding limit. */
function columnSum(x: Tensor, op: string): Tensor {
  const [M, N] = x.shape;
  const out = Tensor.empty([N]);
  if (N === 0) return out;
  const gpu = getGpu();
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  // problem dimensions [M, N]; out, one row of x long, fits whenever x's rows do
  const xs: Stored = { name: `dy${shapeStr(x.shape)}`, t: x, rows: DIM_M, cols: DIM_N };
  const [rows] = chunkSizes([M, N], [xs], bindingLimit(gpu), align, op);
  for (const m0 of chunkStarts(M, rows)) {
    const size = [Math.min(rows, M - m0), N];
    const w = bindWindow(xs, [m0, 0], size, [M, N], align);
    gpu.dispatch({
      // columnSum reads neither gemm operand, but the shared module needs their types filled in
      kernel: {
        shader: 'matmul',
        entry: 'columnSum',
        bindings: ['write', 'read'],
        constants: { WG_SUM: COLUMN_SUM_WG },
        defines: { ...operandDefines('a', false), ...operandDefines('b', false) },
      },
      buffers: [out.buffer, w.range],
      params: gemmParams({ M: size[0], N, K: 0, accumulate: m0 > 0, a: w }),
      workgroups: [Math.ceil(N / COLUMN_SUM_WG)],
      label: `${op}.columnSum ${shapeStr(x.shape)}`,
    });
  }
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
export function linear(x: Tensor, w: Tensor, b: Tensor | null = null): Tensor {
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
