// Matrix multiply and the linear layer, both on one GEMM kernel family (shaders/matmul.wgsl).
//
//   matmul: C = op(A) op(B), op = identity or transpose. Backward: with G = dC,
//     dA = G op(B)^T (stored transposed when transA: dA = op(B) G^T), dB = op(A)^T G (or G^T op(A)).
//   linear: y = x w^T + b (torch.nn.functional.linear). Backward: dx = dy w, dw = dy^T x,
//     db = column sums of dy.
// Every gradient is one more GEMM with other transpose flags, computed only when asked for.
// Read first: the plain float64 loops in src/reference/matmul.ts; the kernels are in shaders/matmul.wgsl.
import { getGpu, tuneCache, type BufferRange, type Gpu, type KernelSpec, type TuneTask } from '../gpu/index.ts';
import { linearRef, matmulNdRef } from '../reference/matmul.ts';
import { OpError, recordOp, type Shape, shapeSize, shapeStr, Tensor } from '../tensor/index.ts';
import { broadcastShapes, broadcastStrides, coalesce } from '../tensor/layout.ts';
import { registerGradcheck } from './gradcheck.ts';

export interface GemmOptions {
  /** A is stored [K, M] */
  transA?: boolean;
  /** B is stored [N, K] */
  transB?: boolean;
  /** [N], added to every row of C: the epilogue `{ along: 'cols', bias }` */
  bias?: Tensor | null;
  /** what the store does to each result (not with `bias`) */
  epilogue?: GemmEpilogue | null;
  /** op name for errors and the dispatch label */
  op?: string;
}

/**
 * What a GEMM's store does to each finished sum s before writing it:
 * C = relu(a * (s + bias - m) + c + residual), with the bias and the table of (_, a, c, m) per row
 * of C (`along: 'rows'`: a convolution's output channels and an eval batchnorm's map,
 * batchNormEvalCoefficients) or per column (`'cols'`: linear's bias), and the residual stored in
 * C's own layout. Every part is optional: a bias alone is the GEMM's bias.
 */
export interface GemmEpilogue {
  along: 'rows' | 'cols';
  /** [M] or [N] */
  bias?: Tensor | null;
  /** [M,4] or [N,4] of (_, a, c, m) */
  affine?: Tensor | null;
  /** at C's offset and strides */
  residual?: Tensor | null;
  relu?: boolean;
}

/**
 * How a GEMM is tiled: one of the two kernels of shaders/matmul.wgsl and its override constants.
 *  - `gemm`: each invocation accumulates blocksM x blocksN 4x4 output blocks (1 or 2 each) and loads
 *    every line of A and B it uses; workgroups of wgN x wgM invocations.
 *  - `gemmShared`: a workgroup is one subgroup of lanes sharing a TM-row tile of A (TM a multiple of
 *    4, up to 32), each lane owning 4 * NB columns (NB 1 or 2); the lanes read the A tile's lines
 *    from each other by subgroup shuffles, or through workgroup memory without the subgroups feature.
 *    `lanes` (a power of two, at most the subgroup: the default) narrows the workgroup to that many
 *    lanes, 4 * NB * lanes columns, for GEMMs with fewer columns than a subgroup's tile.
 */
export type GemmTiling =
  | { kernel: 'gemm'; wgN: number; wgM: number; blocksM: number; blocksN: number }
  | { kernel: 'gemmShared'; TM: number; NB: number; lanes?: number };

/**
 * The tilings the tuner times per shape (src/gpu/tuning.ts, `gpunet tune`), every one a correct
 * kernel (the tests run them all): gemm's 8x8 outputs per invocation in 8x8 and 16x16 workgroups
 * (the usual register-blocked shape for GPUs without workgroup memory), and gemmShared with 8 to 32
 * rows per workgroup and 4 or 8 columns per lane (few rows suit GEMMs with few rows, as the fc
 * layer's batch of 16). TM 32 with NB 1 was the fastest on an Intel Xeon's lavapipe (NB 2 no
 * faster there); TM 32 with NB 2 is the fastest on an AMD EPYC's (bench/NOTES.md section 12).
 * TM 16 with 4 lanes (16 columns a workgroup) is for GEMMs of at most 16 columns, as ResNet18's
 * layer4 Winograd GEMMs at batch 1 (16 tiles; section 16).
 */
export const GEMM_CANDIDATES: readonly GemmTiling[] = [
  { kernel: 'gemm', wgN: 8, wgM: 8, blocksM: 2, blocksN: 2 },
  { kernel: 'gemm', wgN: 16, wgM: 16, blocksM: 2, blocksN: 2 },
  { kernel: 'gemmShared', TM: 8, NB: 2 },
  { kernel: 'gemmShared', TM: 16, NB: 1 },
  { kernel: 'gemmShared', TM: 16, NB: 2 },
  { kernel: 'gemmShared', TM: 32, NB: 1 },
  { kernel: 'gemmShared', TM: 32, NB: 2 },
  { kernel: 'gemmShared', TM: 16, NB: 1, lanes: 4 },
];

/**
 * The tiling without a tuned choice. On lavapipe (the CPU) every storage load is a per-lane scalar
 * loop that costs far more than the multiply-adds it feeds, so gemmShared, which loads an A line
 * once per subgroup instead of once per lane, wins (bench/NOTES.md sections 8 and 12). GEMMs of at
 * least 2^24 multiply-adds (and 32 rows, one tile) take TM 32, NB 1. NB 2 (8 columns per lane)
 * took 1.2-1.8x less lavapipe CPU at 1024^3 on an AMD EPYC and 5-10% less over ResNet18's training
 * convolutions, nothing measurable on its inference, but LLVM takes 30 s of CPU to compile each of
 * its pipelines (TM 32, NB 1: 9 s): as the default it made a first ResNet18 inference on a cold
 * shader cache take 144 s instead of 90, so it is left to the tuner (gpunet tune). Smaller GEMMs
 * take TM 16, NB 1 (4.5 s to compile), where a bigger tile's compile would cost more than it saves
 * the first time it runs. GEMMs of at most 8 rows
 * (a classifier's fc layer at batch 1-8) take TM 8, NB 2, which the tuner chose for all three such
 * shapes of ResNet18 and which took 1.3-1.4x less CPU than TM 16 there (half of whose rows would
 * be past M). GEMMs of at most 16 columns and at least 512 rows take TM 16 with 4 lanes: a
 * subgroup's 8 lanes would leave half of its 32 columns past N (1.2-1.3x less CPU on layer4's
 * Winograd GEMMs at batch 1, [512,16,512] x16); with 128-256 rows it tied or lost by 3-10%
 * (section 16). On GPUs, a 16x16 workgroup of gemm's 8x8 tiles.
 */
function defaultTiling(gpu: Gpu, M: number, N: number, work: number): GemmTiling {
  if (!gpu.isCpu) return GEMM_CANDIDATES[1];
  if (M <= 8) return GEMM_CANDIDATES[2];
  if (N <= 16 && M >= 512) return GEMM_CANDIDATES[7];
  return GEMM_CANDIDATES[M >= 32 && work >= 2 ** 24 ? 5 : 3];
}

/** How gemmShared's lanes share the A tile on this adapter: by shuffles within one subgroup of `SG`
 *  lanes (the adapter's smallest subgroup, so a workgroup never spans two), or through workgroup
 *  memory in workgroups of 8. */
function sharing(gpu: Gpu): { subgroups: boolean; SG: number } {
  const sg = gpu.device.adapterInfo?.subgroupMinSize ?? 0;
  const subgroups = gpu.features.has('subgroups') && sg >= 4 && sg <= 64 && !forcedNoSubgroups;
  return { subgroups, SG: subgroups ? sg : 8 };
}

let forcedNoSubgroups = false;
let testTiling: GemmTiling | null = null;

/** Forces every GEMM to tiling `t` (null: the tuned or default one per shape); for the tests of
 *  ops whose GEMMs run on these kernels (conv2d), which must pass at every candidate. */
export function setGemmTiling(t: GemmTiling | null): void {
  testTiling = t;
}

/** Makes gemmShared share its A tile through workgroup memory even where subgroups exist (tests of that path). */
export function setGemmSubgroups(on: boolean): void {
  forcedNoSubgroups = !on;
}

/** The tuning cache's key of a GEMM shape (P: B's and C's columns in groups of P). */
function tuneKey(M: number, N: number, K: number, batch: number, transA: boolean, transB: boolean, P = 0): string {
  return `${transA ? 'A^T' : 'A'} ${transB ? 'B^T' : 'B'} [${M},${N},${K}]${batch > 1 ? ` x${batch}` : ''}${P ? ` /${P}` : ''}`;
}

/** The tiling for a GEMM of this shape on `gpu`: the tuner's choice when the adapter's cache has one
 *  (gpunet tune), else the default. */
export function gemmTiling(gpu: Gpu, shape: { M: number; N: number; K: number; batch?: number; transA?: boolean; transB?: boolean; P?: number }): GemmTiling {
  const tuned = tuneCache(gpu).lookup('gemm', tuneKey(shape.M, shape.N, shape.K, shape.batch ?? 1, shape.transA ?? false, shape.transB ?? false, shape.P));
  return tuned ? (tuned as GemmTiling) : defaultTiling(gpu, shape.M, shape.N, shape.M * shape.N * shape.K * (shape.batch ?? 1));
}

function checkTiling(t: GemmTiling, op: string): void {
  const ok =
    t.kernel === 'gemm'
      ? [t.blocksM, t.blocksN].every((n) => n === 1 || n === 2) && [t.wgN, t.wgM].every((n) => Number.isInteger(n) && n >= 1)
      : t.kernel === 'gemmShared' && Number.isInteger(t.TM) && t.TM >= 4 && t.TM <= 32 && t.TM % 4 === 0 && (t.NB === 1 || t.NB === 2) &&
        (t.lanes === undefined || [1, 2, 4, 8, 16, 32, 64].includes(t.lanes));
  if (!ok) throw new OpError(op, `tiling ${JSON.stringify(t)}: gemm takes blocksM and blocksN of 1 or 2, gemmShared TM a multiple of 4 up to 32 and NB 1 or 2`);
}

/** WGSL text for an operand: vec4 elements (one load per 4-element line) when its window's lines
 *  are whole aligned vec4s, else scalars. `i` holds the line's four flat indices. */
function operandDefines(name: 'a' | 'b', vec4: boolean): Record<string, string> {
  const up = name.toUpperCase();
  return vec4
    ? { [`${up}_TYPE`]: 'vec4<f32>', [`LOAD_${up}`]: `${name}[i.x / 4u]` }
    : { [`${up}_TYPE`]: 'f32', [`LOAD_${up}`]: `vec4f(${name}[i.x], ${name}[i.y], ${name}[i.z], ${name}[i.w])` };
}

/** WGSL text for the result: one vec4 store per line of 4 when C's (and the residual's) window is
 *  whole aligned vec4s (a line then lies inside N or past it, and inside one column group), else
 *  the columns inside N one by one; the epilogue works on the line as a vec4 either way (see
 *  storeLine in the shader), its parts chosen by Params flags. */
function resultDefines(vec4: boolean): Record<string, string> {
  const load = (arr: string, i: string) => (vec4 ? `${arr}[${i}.x / 4u]` : `vec4f(${arr}[${i}.x], ${arr}[${i}.y], ${arr}[${i}.z], ${arr}[${i}.w])`);
  const store = vec4 ? 'c[i.x / 4u] = r;' : 'for (var q = 0u; q < min(4u, p.N - n); q++) { c[i[q]] = r[q]; }';
  return {
    C_TYPE: vec4 ? 'vec4<f32>' : 'f32',
    STORE_LINE: [
      'let i = row + cols;',
      'var r = v;',
      `if (p.accumulate != 0u) { r += ${load('c', 'i')}; }`,
      'r = (r * re.x + re.y) * ce[0] + ce[1];',
      `if (p.hasResidual != 0u) { let j = i + toR; r += ${load('residual', 'j')}; }`,
      'if (p.relu != 0u) { r = max(r, vec4f(0.0)); }',
      store,
    ].join('\n  '),
  };
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

/** Problem dimensions, as indices into [M, N, K, batch]. */
const DIM_M = 0;
const DIM_N = 1;
const DIM_K = 2;
const DIM_BATCH = 3;

/** A stored row-major matrix of a GEMM: its rows run along problem dimension `rows`, its columns
 *  along `cols` (null: a vector, one element per row). A batched GEMM's matrices lie `stride`
 *  elements apart from `base` on (stride 0: one matrix serves every batch item). With `group`
 *  (B stored [K,N] and C only), its columns come in groups of the launch's P, `group` elements
 *  apart, and its rows are P long: C [N*P columns] stored [N, M, P]. */
interface Stored {
  name: string;
  t: Tensor;
  rows: number;
  cols: number | null;
  base: number;
  stride: number;
  group?: number;
}

/** A matrix's window in one chunk: its bound range, the window's element offset in that range, its
 *  row stride and batch stride; `vec4` when its lines can be loaded as aligned vec4s. */
interface Window {
  range: BufferRange;
  off: number;
  ld: number;
  stride: number;
  vec4: boolean;
}

/** Chunk sizes along each problem dimension such that every window fits in `limit` bytes once bound
 *  from an offset aligned down to `align` bytes: rows of the matrices first, then batch items (as
 *  many as fit when the matrices are whole, else one at a time). */
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
  const whole = [DIM_M, DIM_N, DIM_K].every((d) => chunk[d] === sizes[d]);
  let batch = whole ? Math.min(sizes[DIM_BATCH], MAX_BATCH) : 1;
  for (const m of mats) {
    const span = sizes[m.rows] * (m.cols === null ? 1 : sizes[m.cols]);
    if (m.stride > 0) batch = Math.min(batch, Math.floor((room - span) / m.stride) + 1);
  }
  chunk[DIM_BATCH] = Math.max(1, batch);
  return chunk;
}

/** Batch items per dispatch at most: workgroups along z. */
const MAX_BATCH = 65535;

/** First indices of the chunks of a dimension (one chunk when it is empty). */
function chunkStarts(size: number, chunk: number): number[] {
  return size === 0 ? [0] : Array.from({ length: Math.ceil(size / chunk) }, (_, i) => i * chunk);
}

/** The window of `m` over the chunk [start, start + size) of a problem with dimensions `sizes`
 *  (whole along a grouped matrix's columns), its columns in groups of `P` if it has `group`. */
function bindWindow(m: Stored, start: readonly number[], size: readonly number[], sizes: readonly number[], align: number, P = 0): Window {
  const grouped = m.group !== undefined && m.cols !== null;
  const ld = m.cols === null ? 1 : grouped ? P : sizes[m.cols];
  const cols = m.cols === null ? 1 : size[m.cols];
  // one past the last column's offset within a row
  const span = grouped ? Math.floor((cols - 1) / P) * m.group! + ((cols - 1) % P) + 1 : cols;
  const first = m.base + start[DIM_BATCH] * m.stride + start[m.rows] * ld + (m.cols === null ? 0 : start[m.cols]);
  const end = size[m.rows] * cols === 0 ? first : first + (size[DIM_BATCH] - 1) * m.stride + (size[m.rows] - 1) * ld + span;
  const offset = Math.floor((first * 4) / align) * align;
  const buffer = m.t.buffer;
  // an empty window still needs a (never read) binding: 16 bytes hold one vec4
  const bytes = Math.min(Math.max(end * 4 - offset, 16), buffer.size - offset);
  const off = first - offset / 4;
  const vec4 = ld % 4 === 0 && off % 4 === 0 && cols % 4 === 0 && m.stride % 4 === 0 && (!grouped || (P % 4 === 0 && m.group! % 4 === 0));
  return { range: { buffer, offset, size: bytes }, off, ld, stride: m.stride, vec4 };
}

/** Which parts of the epilogue a dispatch applies (none but on the last pass along K): Params
 *  fields of the same names. */
interface EpilogueFlags {
  alongRows: boolean;
  hasBias: boolean;
  hasAffine: boolean;
  hasResidual: boolean;
  relu: boolean;
}

const NO_EPILOGUE: EpilogueFlags = { alongRows: false, hasBias: false, hasAffine: false, hasResidual: false, relu: false };

/** The Params of shaders/matmul.wgsl, in declaration order. */
function gemmParams(p: {
  M: number; N: number; K: number; accumulate: boolean; epilogue?: EpilogueFlags; offEpi?: number; P?: number;
  c?: Window; a?: Window; b?: Window; residual?: Window; groupB?: number; groupC?: number;
}) {
  const { c, a, b, residual } = p;
  return {
    M: p.M, N: p.N, K: p.K, ...(p.epilogue ?? NO_EPILOGUE), accumulate: p.accumulate,
    offC: c?.off ?? 0, offA: a?.off ?? 0, offB: b?.off ?? 0, offR: residual?.off ?? 0, offEpi: p.offEpi ?? 0,
    ldC: c?.ld ?? 0, ldA: a?.ld ?? 0, ldB: b?.ld ?? 0,
    batchA: a?.stride ?? 0, batchB: b?.stride ?? 0, batchC: c?.stride ?? 0, P: p.P ?? 0, groupB: p.groupB ?? 0, groupC: p.groupC ?? 0,
  };
}

/** One launch of the gemm kernel family: C[z] = epilogue(op(A[z]) op(B[z])) for `batch` items. */
interface GemmLaunch {
  op: string;
  label: string;
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  a: Stored;
  b: Stored;
  c: Stored;
  epilogue: GemmEpilogue | null;
  /** B's and C's columns in groups of P (0: not grouped): see Stored.group */
  P: number;
  batch: number;
  /** C += the product instead of C = it: a later pass of a sum over broadcast batch items */
  accumulate: boolean;
  /** the FLOPs the profiler is told, when the GEMM is part of an op that counts its own (Winograd) */
  flops?: number;
}

/** The kernel spec and workgroup grid of tiling `t` for a chunk of `size` ([M, N, K, batch]). */
function gemmKernel(g: GemmLaunch, t: GemmTiling, gpu: Gpu, vec4: { a: boolean; b: boolean; c: boolean }, size: readonly number[]): { kernel: KernelSpec; workgroups: [number, number, number] } {
  const operands = { ...operandDefines('a', vec4.a), ...operandDefines('b', vec4.b), ...resultDefines(vec4.c) };
  const trans = { TRANS_A: Number(g.transA), TRANS_B: Number(g.transB) };
  const bindings: KernelSpec['bindings'] = ['write', 'read', 'read', 'read', 'read', 'read'];
  if (t.kernel === 'gemm') {
    return {
      kernel: { shader: 'matmul', entry: 'gemm', bindings, constants: { ...trans, WG_N: t.wgN, WG_M: t.wgM, BLOCKS_M: t.blocksM, BLOCKS_N: t.blocksN }, defines: { ...operands, ...sharingDefines(false) } },
      workgroups: [Math.ceil(size[DIM_N] / (4 * t.blocksN * t.wgN)), Math.ceil(size[DIM_M] / (4 * t.blocksM * t.wgM)), size[DIM_BATCH]],
    };
  }
  const shared = sharing(gpu);
  const { subgroups } = shared;
  const SG = Math.min(t.lanes ?? shared.SG, shared.SG);
  return {
    kernel: { shader: 'matmul', entry: 'gemmShared', bindings, constants: { ...trans, SG }, defines: { ...operands, ...sharingDefines(subgroups, { TM: t.TM, NB: t.NB, SG }) } },
    workgroups: [Math.ceil(size[DIM_N] / (4 * t.NB * SG)), Math.ceil(size[DIM_M] / t.TM), size[DIM_BATCH]],
  };
}

/** The WGSL of gemmShared's A-tile sharing (subgroup shuffles, or workgroup memory and barriers)
 *  and of its loops over a TM x 4NB tile, written out (see the shader). Without a tiling: the
 *  placeholders for the module's other entry points. */
function sharingDefines(subgroups: boolean, tile?: { TM: number; NB: number; SG: number }): Record<string, string> {
  const share = subgroups
    ? { ENABLE: 'enable subgroups;', LANE: '@builtin(subgroup_invocation_id) lane: u32', READ_A: 'subgroupShuffle(mine[t / SG], t % SG)', PUBLISH_A: '', DONE_A: '' }
    : { ENABLE: '', LANE: '@builtin(local_invocation_index) lane: u32', READ_A: 'aTile[t]', PUBLISH_A: 'publishA(lane);', DONE_A: 'workgroupBarrier();' };
  if (!tile) return { ...share, TM: '4', NB: '1', LOAD_A_TILE: '', ACCUMULATE: '', STORE_C: '' };
  const { TM, NB, SG } = tile;
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  const lines = range(Math.ceil(TM / SG)).map((q) => `mine[${q}] = tileLine(${q * SG}u + lane, m0, k);`);
  const groups = range(TM / 4).map((g) => {
    const fmas = range(4).flatMap((r) => range(NB).map((j) => `acc[${(4 * g + r) * NB + j}] += bs[${j}] * blk[${r}];`));
    return `{ let blk = rowsOfA(${4 * g}u, tail, live); ${fmas.join(' ')} }`;
  });
  // the store, rolled over the rows: one copy of the epilogue's code instead of TM, from a copy of
  // the accumulators (indexed by the loop, so in memory; acc itself stays in registers)
  const stores = [
    ...range(NB).map((j) => `let ce${j} = colEpilogue(n0 + ${4 * j}u); let cols${j} = columnOffsets(n0 + ${4 * j}u, p.groupC);`),
    'var sums = acc;',
    'for (var i = 0u; i < TM; i++) {',
    '  let re = rowEpilogue(m0 + i);',
    ...range(NB).map((j) => `  storeLine(offC, m0 + i, n0 + ${4 * j}u, cols${j}, sums[i * NB + ${j}u], re, ce${j});`),
    '}',
  ];
  const join = (xs: string[]) => xs.join('\n    ');
  return { ...share, TM: String(TM), NB: String(NB), LOAD_A_TILE: join(lines), ACCUMULATE: join(groups), STORE_C: join(stores) };
}

/** Records the dispatches of `g`, split into chunks when a window exceeds the storage binding
 *  limit, with tiling `forced` or else the one chosen for its shape (noted for the tuner when none
 *  is cached). */
function launchGemm(g: GemmLaunch, forced?: GemmTiling): void {
  if (g.M === 0 || g.N === 0 || g.batch === 0) return;
  const gpu = getGpu();
  const shape = { M: g.M, N: g.N, K: g.K, batch: g.batch, transA: g.transA, transB: g.transB, P: g.P };
  const tiling = forced ?? testTiling ?? gemmTiling(gpu, shape);
  checkTiling(tiling, g.op);
  if (!forced && !testTiling && !tuneCache(gpu).lookup('gemm', tuneKey(g.M, g.N, g.K, g.batch, g.transA, g.transB, g.P))) tuneCache(gpu).notePending(tuneTask(g));
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  const sizes = [g.M, g.N, g.K, g.batch];
  const e = g.epilogue;
  if (e && g.accumulate) throw new OpError(g.op, 'an epilogue applies to a finished product, not to one added into C');
  // the residual is read at C's offsets and strides; without one, a stands in for its binding
  const residual: Stored = e?.residual ? { ...g.c, name: `residual${shapeStr(e.residual.shape)}`, t: e.residual } : g.a;
  const mats = [g.c, g.a, g.b, residual];
  const limit = bindingLimit(gpu);
  // a grouped GEMM is not chunked (its caller keeps its matrices within one binding)
  const chunk = g.P ? [...sizes.slice(0, 3), Math.min(g.batch, MAX_BATCH)] : chunkSizes(sizes, mats, limit, align, g.op);
  // bias and affine are bound whole (vectors of M or N) from the chunk's first row or column on
  const alongRows = e?.along === 'rows';
  const whole = (t: Tensor | null | undefined, stand: BufferRange): BufferRange => (t ? { buffer: t.buffer, offset: 0, size: Math.min(t.buffer.size, Math.max(16, 4 * t.size)) } : stand);
  for (const z0 of chunkStarts(g.batch, chunk[DIM_BATCH])) {
    for (const m0 of chunkStarts(g.M, chunk[DIM_M])) {
      for (const n0 of chunkStarts(g.N, chunk[DIM_N])) {
        for (const k0 of chunkStarts(g.K, chunk[DIM_K])) {
          const start = [m0, n0, k0, z0];
          const size = start.map((s, d) => Math.min(chunk[d], sizes[d] - s));
          const [wc, wa, wb, wr] = mats.map((m) => bindWindow(m, start, size, sizes, align, g.P));
          if (g.P && [wc, wb, wr].some((w) => (w.range.size ?? 0) > limit)) throw new OpError(g.op, `a GEMM with grouped columns must fit one storage binding (${limit} bytes)`);
          const accumulate = g.accumulate || k0 > 0;
          // the epilogue maps the finished sums: the last pass along K applies it
          const last = k0 + size[DIM_K] >= g.K;
          const flags: EpilogueFlags = e && last
            ? { alongRows, hasBias: Boolean(e.bias), hasAffine: Boolean(e.affine), hasResidual: Boolean(e.residual), relu: Boolean(e.relu) }
            : NO_EPILOGUE;
          gpu.dispatch({
            ...gemmKernel(g, tiling, gpu, { a: wa.vec4, b: wb.vec4, c: wc.vec4 && (!e?.residual || wr.vec4) }, size),
            // a's window stands in for the bindings the flags leave unread
            buffers: [wc.range, wa.range, wb.range, whole(e?.bias, wa.range), whole(e?.affine, wa.range), wr.range],
            params: gemmParams({
              M: size[DIM_M], N: size[DIM_N], K: size[DIM_K], accumulate, epilogue: flags, offEpi: alongRows ? m0 : n0,
              // B without a group stride holds its groups of P side by side: each P after the last
              P: g.P, c: wc, a: wa, b: wb, residual: wr, groupB: g.b.group ?? g.P, groupC: g.c.group,
            }),
            label: g.label,
            work: {
              flops: (g.flops ?? 2 * g.M * g.N * g.K * g.batch) * ((size[DIM_M] * size[DIM_N] * size[DIM_K] * size[DIM_BATCH]) / (g.M * g.N * g.K * g.batch)),
              bytes: 4 * size[DIM_BATCH] * (size[DIM_M] * size[DIM_K] + size[DIM_K] * size[DIM_N] + size[DIM_M] * size[DIM_N]),
            },
          });
        }
      }
    }
  }
}

/** The tuner's task for the shape of `g`: zero operands of that shape and layout (a broadcast
 *  operand stays one matrix), one launch per candidate tiling. */
function tuneTask(g: GemmLaunch): TuneTask {
  return {
    family: 'gemm',
    key: tuneKey(g.M, g.N, g.K, g.batch, g.transA, g.transB, g.P),
    candidates: GEMM_CANDIDATES,
    defaultConfig: defaultTiling(getGpu(), g.M, g.N, g.M * g.N * g.K * g.batch),
    setup: () => {
      const sizes = [g.M, g.N, g.K, g.batch];
      const fresh = (m: Stored): Stored => {
        // a grouped matrix's groups of P columns follow each other: [groups, rows, P]
        const group = m.group === undefined || m.cols === null ? undefined : sizes[m.rows] * g.P;
        const matrix = group ? Math.ceil(sizes[m.cols!] / g.P) * group : sizes[m.rows] * (m.cols === null ? 1 : sizes[m.cols]);
        const stride = m.stride === 0 ? 0 : matrix;
        return { ...m, t: Tensor.zeros([Math.max(1, matrix * (stride ? g.batch : 1))]), base: 0, stride, group };
      };
      const [a, b, c] = [fresh(g.a), fresh(g.b), fresh(g.c)];
      // timed without the epilogue, a few operations per stored element
      return {
        launch: (config) => launchGemm({ ...g, a, b, c, epilogue: null }, config as unknown as GemmTiling),
        dispose: () => [a, b, c].forEach((m) => m.t.release()),
      };
    },
  };
}

/** The problem dimensions the stored rows and columns of operand A or B run along. */
function operandDims(operand: 'a' | 'b', trans: boolean): [number, number] {
  if (operand === 'a') return trans ? [DIM_K, DIM_M] : [DIM_M, DIM_K];
  return trans ? [DIM_N, DIM_K] : [DIM_K, DIM_N];
}

/** The one matrix of a 2-D problem, stored from element 0. */
function single(name: string, t: Tensor, [rows, cols]: [number, number | null]): Stored {
  return { name: `${name}${shapeStr(t.shape)}`, t, rows, cols, base: 0, stride: 0 };
}

/** Checks the shapes of an epilogue's tensors against C: [M, N] matrices in a tensor of cSize elements. */
function checkEpilogue(e: GemmEpilogue, M: number, N: number, cSize: number, op: string): void {
  const len = e.along === 'rows' ? M : N;
  const bad = (t: Tensor | null | undefined, shape: number[]) => t && (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]));
  if (bad(e.bias, [len])) throw new OpError(op, `the epilogue's bias must be [${len}] (one per ${e.along === 'rows' ? 'row' : 'column'} of C), got ${shapeStr(e.bias!.shape)}`);
  if (bad(e.affine, [len, 4])) throw new OpError(op, `the epilogue's affine must be [${len},4], got ${shapeStr(e.affine!.shape)}`);
  if (e.residual && e.residual.size !== cSize) throw new OpError(op, `the epilogue's residual ${shapeStr(e.residual.shape)} must have C's layout (${cSize} elements)`);
}

/**
 * The raw GEMM launcher (not recorded on the tape): C[M,N] = epilogue(op(A) op(B)) (a bias[N] on
 * every row, or GemmEpilogue), a: [M,K] or [K,M] (transA), b: [K,N] or [N,K] (transB). Split into
 * chunks when a matrix exceeds the storage binding limit. `tiling` forces one (else the tuned or
 * default choice for the shape).
 */
export function gemm(a: Tensor, b: Tensor, opts: GemmOptions = {}, tiling?: GemmTiling): Tensor {
  const { transA = false, transB = false, bias = null, op = 'gemm' } = opts;
  const desc = () =>
    `a${shapeStr(a.shape)}${transA ? '^T' : ''} b${shapeStr(b.shape)}${transB ? '^T' : ''}${bias ? ` bias${shapeStr(bias.shape)}` : ''}`;
  if (!(a instanceof Tensor) || !(b instanceof Tensor)) throw new OpError(op, 'inputs must be tensors');
  if (!is2d(a) || !is2d(b)) throw new OpError(op, `expected 2-D matrices, got ${desc()}`);
  const [M, Ka] = transA ? [a.shape[1], a.shape[0]] : a.shape;
  const [Kb, N] = transB ? [b.shape[1], b.shape[0]] : b.shape;
  if (Ka !== Kb) throw new OpError(op, `inner dimensions differ (${Ka} vs ${Kb}): ${desc()}`);
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== N)) throw new OpError(op, `bias must be [${N}]: ${desc()}`);
  if (bias && opts.epilogue) throw new OpError(op, 'give the bias in the epilogue, or the bias alone');
  const epilogue = opts.epilogue ?? (bias ? { along: 'cols' as const, bias } : null);
  if (epilogue) checkEpilogue(epilogue, M, N, M * N, op);
  const out = Tensor.empty([M, N]);
  launchGemm(
    {
      op, label: `${op} ${desc()}`, M, N, K: Ka, transA, transB, batch: 1, accumulate: false, epilogue, P: 0,
      c: single('out', out, [DIM_M, DIM_N]),
      a: single('a', a, operandDims('a', transA)),
      b: single('b', b, operandDims('b', transB)),
    },
    tiling,
  );
  return out;
}

/** One operand of `gemmStrided`: row-major matrices (transposed when `trans`) from element `offset`
 *  of `t` on, `stride` elements apart (0: one matrix serves every batch item). With the problem's
 *  `P` (B stored [K,N] and C only): its columns in groups of P, `group` elements apart, rows P long. */
export interface StridedMatrices {
  t: Tensor;
  offset?: number;
  stride: number;
  trans?: boolean;
  group?: number;
}

/**
 * C[z] = epilogue(op(A[z]) op(B[z])) for z < batch on row-major matrices at fixed strides, not
 * recorded on the tape: the GEMMs other ops are made of (conv2d's Winograd products, its im2col
 * convolutions) on these kernels and their tuning. c's stride 0 sums the products into one matrix.
 * `dims.P`: C's columns (and B's, where B has a `group`) come in groups of P (each operand's
 * `group` apart), which folds a batch of images into the columns: [OC, K] x [K, N*P] reading col:
 * [N, K, P] (or, B without a group, col: [K, N, P] as one matrix, whose lines are whole vec4s
 * wherever N*P is a multiple of 4, P or not), storing y: [N, OC, P] (the matrices must then fit
 * one storage binding). `flops` is what the profiler is told (the
 * convolution's, for Winograd); `label` names the dispatches.
 */
export function gemmStrided(
  op: string, label: string, dims: { M: number; N: number; K: number; batch: number; P?: number },
  a: StridedMatrices, b: StridedMatrices, c: StridedMatrices, flops?: number, epilogue: GemmEpilogue | null = null,
): void {
  const { M, N, K, batch, P = 0 } = dims;
  if (P && ((b.trans && b.group !== undefined) || c.group === undefined || a.group !== undefined)) {
    throw new OpError(op, 'grouped columns are C\'s (with a group stride) and B\'s stored [K,N] (with one, or none: B [K, N*P] as one matrix)');
  }
  if (epilogue) {
    if (c.stride === 0 && batch > 1) throw new OpError(op, 'an epilogue applies to a finished product, not to a sum over the batch');
    checkEpilogue(epilogue, M, N, c.t.size, op);
  }
  const stored = (name: string, m: StridedMatrices, [rows, cols]: [number, number], z: number): Stored =>
    ({ name: `${name}${shapeStr(m.t.shape)}`, t: m.t, rows, cols, base: (m.offset ?? 0) + z * m.stride, stride: m.stride, group: P ? m.group : undefined });
  const launch = (z: number, items: number, accumulate: boolean) => launchGemm({
    op, label, M, N, K, transA: a.trans ?? false, transB: b.trans ?? false, batch: items, epilogue, P, accumulate,
    a: stored('a', a, operandDims('a', a.trans ?? false), z),
    b: stored('b', b, operandDims('b', b.trans ?? false), z),
    c: stored('out', c, [DIM_M, DIM_N], z),
    flops: flops === undefined ? undefined : (flops * items) / batch,
  });
  if (c.stride !== 0 || batch === 1) return launch(0, batch, false);
  // a sum over the batch: one launch per item, each adding into C
  for (let z = 0; z < batch; z++) launch(z, 1, z > 0);
}

// ---- batched GEMMs ----------------------------------------------------------------------------

/** Operand of a batched GEMM: a stack of matrices [..., rows, cols] and, per dimension of the
 *  problem's batch shape, its element stride (0 along the dimensions it is broadcast along). */
interface BatchOperand {
  t: Tensor;
  strides: readonly number[];
  trans: boolean;
}

/** The element strides of a stack of matrices `shape` ([..., r, c]) along the dimensions of
 *  `batch` (right-aligned, as broadcasting reads them): 0 where it has size 1 or no dimension. */
function batchStrides(shape: Shape, batch: Shape): number[] {
  const matrix = shapeSize(shape.slice(-2));
  return broadcastStrides(shape.slice(0, -2), batch).map((s) => s * matrix);
}

/**
 * C = op(A) op(B) for every item of `batch` (not recorded on the tape): c: [..., M, N] receives,
 * per batch item, the product of a's and b's matrices at the strides each holds; where c's stride
 * is 0 the products are summed into it (the gradient of a broadcast operand). The batch dimensions
 * merge where every stride continues the next one's; the innermost merged run along which c
 * advances becomes the kernel's z, the rest are dispatches of their own.
 */
function batchedGemm(op: string, label: string, batch: Shape, a: BatchOperand, b: BatchOperand, c: { t: Tensor; strides: readonly number[] }, K: number): void {
  const [M, N] = c.t.shape.slice(-2);
  if (shapeSize(batch) === 0) {
    c.t.fill(0); // a sum over no batch items
    return;
  }
  const merged = coalesce(batch, [a.strides, b.strides, c.strides]);
  const levels = merged.sizes.map((size, i) => ({ size, strides: merged.strides.map((s) => s[i]) }));
  const zAt = levels.findIndex((l) => l.strides[2] !== 0);
  const z = zAt >= 0 ? levels[zAt] : { size: 1, strides: [0, 0, 0] };
  const outer = levels.filter((_, i) => i !== zAt);
  const stored = (operand: 'a' | 'b', o: BatchOperand, base: number, stride: number): Stored => {
    const [rows, cols] = operandDims(operand, o.trans);
    return { name: `${operand}${shapeStr(o.t.shape)}`, t: o.t, rows, cols, base, stride };
  };
  const written = new Set<number>();
  const index = outer.map(() => 0);
  for (;;) {
    const base = [0, 1, 2].map((i) => outer.reduce((sum, l, j) => sum + index[j] * l.strides[i], 0));
    launchGemm(
      {
        op, label, M, N, K, transA: a.trans, transB: b.trans, batch: z.size, epilogue: null, P: 0,
        accumulate: written.has(base[2]),
        a: stored('a', a, base[0], z.strides[0]),
        b: stored('b', b, base[1], z.strides[1]),
        c: { name: `out${shapeStr(c.t.shape)}`, t: c.t, rows: DIM_M, cols: DIM_N, base: base[2], stride: z.strides[2] },
    });
    written.add(base[2]);
    // the next index of the outer levels (an odometer), or done
    let j = 0;
    while (j < outer.length && ++index[j] === outer[j].size) index[j++] = 0;
    if (j === outer.length) break;
  }
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
  const xs = single('dy', x, [DIM_M, DIM_N]);
  const [rows] = chunkSizes([M, N, 0, 1], [xs], bindingLimit(gpu), align, op);
  for (const m0 of chunkStarts(M, rows)) {
    const size = [Math.min(rows, M - m0), N, 0, 1];
    const w = bindWindow(xs, [m0, 0, 0, 0], size, [M, N, 0, 1], align);
    gpu.dispatch({
      // columnSum reads neither gemm operand, but the shared module needs their types filled in
      kernel: {
        shader: 'matmul',
        entry: 'columnSum',
        bindings: ['write', 'read'],
        constants: { WG_SUM: COLUMN_SUM_WG },
        defines: { ...operandDefines('a', false), ...operandDefines('b', false), ...resultDefines(false), ...sharingDefines(false) },
      },
      buffers: [out.buffer, w.range],
      params: gemmParams({ M: size[0], N, K: 0, accumulate: m0 > 0, a: w }),
      workgroups: [Math.ceil(N / COLUMN_SUM_WG)],
      label: `${op}.columnSum ${shapeStr(x.shape)}`,
    });
  }
  return out;
}

/**
 * torch.matmul(op(a), op(b)) (ONNX MatMul), op = identity or the transpose of the last two
 * dimensions: matrices a: [M, K] (or [K, M] when transA), b: [K, N] (or [N, K] when transB) -> [M, N];
 * a 1-D a is a row vector and a 1-D b a column vector, their dimension dropped from the result;
 * operands of rank >= 3 are stacks of matrices whose batch dimensions broadcast
 * ([B,H,T,D] x [B,H,D,T] -> [B,H,T,T], [B,T,D] x [D,E] -> [B,T,E]). Recorded on the tape.
 */
export function matmul(a: Tensor, b: Tensor, opts: { transA?: boolean; transB?: boolean } = {}): Tensor {
  const op = 'matmul';
  const { transA = false, transB = false } = opts;
  if (!(a instanceof Tensor) || !(b instanceof Tensor)) throw new OpError(op, 'inputs must be tensors');
  const desc = `a${shapeStr(a.shape)}${transA ? '^T' : ''} b${shapeStr(b.shape)}${transB ? '^T' : ''}`;
  if (a.ndim === 0 || b.ndim === 0) throw new OpError(op, `expected operands of rank 1 or more, got ${desc}`);
  if (a.ndim === 1 || b.ndim === 1) {
    // a row vector [1, K] and a column vector [K, 1], whose dimension the result then drops
    const y = matmul(a.ndim === 1 ? a.reshape(transA ? [a.size, 1] : [1, a.size]) : a, b.ndim === 1 ? b.reshape(transB ? [1, b.size] : [b.size, 1]) : b, opts);
    return y.reshape(y.shape.filter((_, i) => !(a.ndim === 1 && i === y.ndim - 2) && !(b.ndim === 1 && i === y.ndim - 1)));
  }
  const last2 = (t: Tensor, trans: boolean) => (trans ? [t.shape[t.ndim - 1], t.shape[t.ndim - 2]] : [t.shape[t.ndim - 2], t.shape[t.ndim - 1]]);
  const [M, K] = last2(a, transA);
  const [Kb, N] = last2(b, transB);
  if (K !== Kb) throw new OpError(op, `inner dimensions differ (${K} vs ${Kb}): ${desc}`);
  const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
  if (!batch) throw new OpError(op, `batch dimensions ${shapeStr(a.shape.slice(0, -2))} and ${shapeStr(b.shape.slice(0, -2))} do not broadcast: ${desc}`);
  if (batch.length > 0 && shapeSize(b.shape.slice(0, -2)) === 1 && !transA) {
    // a stack times one matrix: the stack's rows form one tall matrix, a single GEMM (backward too)
    return matmul(a.reshape([a.size / K, K]), b.reshape(b.shape.slice(-2)), opts).reshape([...batch, M, N]);
  }
  const out = Tensor.empty([...batch, M, N]);
  const operand = (t: Tensor, trans: boolean): BatchOperand => ({ t, strides: batchStrides(t.shape, batch), trans });
  const product = (name: string, p: BatchOperand, q: BatchOperand, into: Tensor, inner: number): Tensor => {
    batchedGemm(name, `${name} ${desc}`, batch, p, q, { t: into, strides: batchStrides(into.shape, batch) }, inner);
    return into;
  };
  product(op, operand(a, transA), operand(b, transB), out, K);
  return recordOp(op, [a, b], out, (dy, needs) => [
    // d op(A) = G op(B)^T; stored transposed, dA = (G op(B)^T)^T = op(B) G^T (summed where a broadcasts)
    needs[0]
      ? product(`${op}.backwardA`, transA ? operand(b, transB) : operand(dy, false), transA ? operand(dy, true) : operand(b, !transB), Tensor.empty(a.shape), N)
      : null,
    // d op(B) = op(A)^T G; stored transposed, dB = G^T op(A)
    needs[1]
      ? product(`${op}.backwardB`, transB ? operand(dy, true) : operand(a, !transA), transB ? operand(a, transA) : operand(dy, false), Tensor.empty(b.shape), M)
      : null,
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

// ---- gradcheck ------------------------------------------------------------------------------

registerGradcheck({
  name: 'linear',
  inputs: ['x', 'weight', 'bias'],
  shapes: ([x = [3, 5], w = [4, x[1]], b = [w[0]]]) => [x, w, b],
  options: {},
  run: ([x, w, b]) => linear(x, w, b),
  reference: ([x, w, b], [[n, inF], [outF]]) => linearRef(x, w, b, n, inF, outF),
});

registerGradcheck({
  name: 'matmul',
  inputs: ['a', 'b'],
  // op(a) [..., M, K] times op(b) [..., K, N] (transposed when transA / transB); batch dims broadcast
  shapes: ([a = [3, 5], b], o) => {
    const K = a.length === 1 ? a[0] : o.transA ? a[a.length - 2] : a[a.length - 1];
    return [a, b ?? (o.transB ? [4, K] : [K, 4])];
  },
  options: { transA: false, transB: false },
  run: ([a, b], o) => matmul(a, b, o),
  reference: ([a, b], [as, bs], o) => matmulNdRef(a, as, b, bs, o).y,
});
