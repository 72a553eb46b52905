// Matrix multiply, the kernel family behind matmul and linear (src/ops/matmul.ts).
//
// C[M,N] = epilogue(op(A) op(B)), op(X) = X or X^T by the override flags
// TRANS_A / TRANS_B: one piece of code for the four transpose combinations, because a transposed
// operand differs only in which way its contiguous lines run. Backward of C = A B is the same GEMM
// with other flags (dA = dC B^T, dB = A^T dC); for the linear layer y = x w^T + b:
// dx = dy w, dw = dy^T x, db = colsum(dy) (columnSum, below).
//
// Two schemes, both register-blocked: per step of 4 along K they read 4-element lines of A and B
// (one vec4 load each when the operand's stored rows are whole vec4s: the LOAD_A / LOAD_B
// expressions src/ops/matmul.ts fills in) and multiply 4x4 blocks in registers. A block read along
// the "wrong" way is transposed in registers, which costs nothing on scalar SIMT lanes. Lines past
// an edge are clamped into the matrix: what they compute lands in outputs that are not stored, or
// (past K) is zeroed.
//  - gemm: no workgroup memory; each invocation accumulates BLOCKS_M x BLOCKS_N blocks of 4x4
//    outputs and loads every line it uses itself (neighbouring lanes read the same A lines; a GPU's
//    caches serve the repeats).
//  - gemmShared: a workgroup is SG lanes that share one TM-row tile of A. Each lane owns 4 * NB
//    columns of those rows, loads its own B lines, but only every SG-th line of the A tile: the
//    others reach it by subgroup shuffles (or through workgroup memory without the subgroups
//    feature). On lavapipe, where every storage load is a per-lane scalar loop (~70 cycles for a
//    vec4) and a shuffle by a constant lane is a register move, this is what pays: loads per
//    multiply-add fall from 1/16 (gemm's 8x8 tile) to (NB + TM / SG / 4) / (TM * NB * 4) per lane.
//
// A dispatch may compute one chunk of a larger GEMM (src/ops/matmul.ts splits operands that exceed
// the storage binding limit): each matrix is then a window of its tensor, at an element offset in
// its bound range with its own row stride, and chunks along K add into C (p.accumulate).
// Batched GEMMs (C[z] = op(A[z]) op(B[z])) take workgroup z as the batch item: matrix z of each
// operand lies z * batchA (batchB, batchC) elements past the first, 0 for a broadcast operand.
//
// The store applies the epilogue to each finished sum s: C = relu(a * (s + bias - m) + c + R), the
// bias and the (_, a, c, m) table per row of C (p.alongRows: a convolution's output channels, an eval
// batchnorm's map) or per column (linear's bias), R a residual of C's layout; each part optional.
// C's and B's columns may come in groups of P (p.P > 0): column j lies at (j / P) * group + j % P,
// group = p.groupB or p.groupC, so one GEMM [OC, K] x [K, N*P] reads im2col's [N, K, P] and stores
// a convolution's y: [N, OC, P] with the batch folded into its columns.
{{ENABLE}}

struct Params {
  M: u32,
  N: u32,
  K: u32,
  // the epilogue's parts, flags rather than override constants so that GEMMs with and without
  // them share their pipelines (each pipeline costs seconds of LLVM on a cold shader cache); they
  // are read only in the store, once per stored line
  alongRows: u32,   // the bias and table run along C's rows (a convolution's channels), else its columns
  hasBias: u32,     // bias: [M] or [N]
  hasAffine: u32,   // affine: [M] or [N] of (_, a, c, m)
  hasResidual: u32, // the residual, in C's layout
  relu: u32,        // and a ReLU last
  accumulate: u32,  // C += result (a later chunk along K) instead of C = result
  offC: u32,        // element offsets of each window in its bound range
  offA: u32,
  offB: u32,
  offR: u32,        // the residual's window offset (its strides are C's)
  offEpi: u32,      // the chunk's first row (alongRows) or column in bias and affine, bound whole
  ldC: u32,         // row strides (elements) of the stored matrices
  ldA: u32,
  ldB: u32,
  batchA: u32,      // element strides between the batch items' matrices
  batchB: u32,
  batchC: u32,
  P: u32,           // columns per group of B and C (0: not grouped)
  groupB: u32,      // element strides between the column groups of B and C
  groupC: u32,
}

override TRANS_A: bool = false;   // A is stored [K,M] instead of [M,K]
override TRANS_B: bool = false;   // B is stored [N,K] instead of [K,N]
override WG_N: u32 = 8;           // invocations per workgroup along N (adjacent lanes share A lines)
override WG_M: u32 = 8;           // invocations per workgroup along M
override BLOCKS_M: u32 = 2;       // 4x4 blocks per invocation along M: 1 or 2 (acc holds 2x2)
override BLOCKS_N: u32 = 2;       // 4x4 blocks per invocation along N: 1 or 2
override SG: u32 = 8;             // gemmShared: lanes per workgroup (the subgroup size with subgroups)
const TM = {{TM}}u;               // gemmShared: rows per workgroup, a multiple of 4 up to 32
const NB = {{NB}}u;               // gemmShared: 4-column blocks per lane, 1 or 2

alias AElem = {{A_TYPE}};  // vec4<f32> when A's rows (length K, or M if transposed) are whole vec4s, else f32
alias BElem = {{B_TYPE}};
// C's stored rows as whole vec4s (C_TYPE vec4<f32>, one store per line) or scalars (STORE_LINE
// stores the columns inside N one by one: a loop, which compiles in half the time of 4 guarded
// stores on lavapipe)

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> c: array<{{C_TYPE}}>;  // c: [M,N]
@group(0) @binding(2) var<storage, read> a: array<AElem>;      // a: [M,K] or [K,M] (TRANS_A)
@group(0) @binding(3) var<storage, read> b: array<BElem>;      // b: [K,N] or [N,K] (TRANS_B)
@group(0) @binding(4) var<storage, read> bias: array<f32>;     // bias: [M] or [N] (read only if p.hasBias)
@group(0) @binding(5) var<storage, read> affine: array<vec4f>; // affine: [M] or [N] of (_, a, c, m)
@group(0) @binding(6) var<storage, read> residual: array<{{C_TYPE}}>;  // residual: C's layout

var<private> offA: u32;  // where this invocation's matrices of A and B start: batch item gid.z's
var<private> offB: u32;

// Flat indices of elements f..f+3 of row s of a row-major [rows, cols] window (at offset `off`, rows
// `ld` apart), clamped into it.
fn lineIndices(s: u32, f: u32, rows: u32, cols: u32, off: u32, ld: u32) -> vec4u {
  return off + min(s, rows - 1u) * ld + min(vec4u(f) + vec4u(0u, 1u, 2u, 3u), vec4u(cols - 1u));
}

// Elements f..f+3 of row s of A as stored.
fn lineA(s: u32, f: u32) -> vec4f {
  let i = select(lineIndices(s, f, p.M, p.K, offA, p.ldA), lineIndices(s, f, p.K, p.M, offA, p.ldA), TRANS_A);
  return {{LOAD_A}};
}

// Elements f..f+3 of row s of B stored [N,K] (TRANS_B), or, stored [K,N], of row s at the column
// offsets `cols` (columnOffsets: a lane's columns are fixed, so it finds their offsets once).
fn lineB(s: u32, f: u32, cols: vec4u) -> vec4f {
  let i = select(offB + min(s, p.K - 1u) * p.ldB + cols, lineIndices(s, f, p.N, p.K, offB, p.ldB), TRANS_B);
  return {{LOAD_B}};
}

// Where columns n..n+3 (clamped into N) lie within a row: at j, or in groups of P columns `group`
// elements apart.
fn columnOffsets(n: u32, group: u32) -> vec4u {
  let j = min(vec4u(n) + vec4u(0u, 1u, 2u, 3u), vec4u(p.N - 1u));
  if (p.P == 0u) { return j; }
  return (j / p.P) * group + j % p.P;
}

// op(A)[m..m+3, k..k+3], transposed: column r holds op(A)[m+r, k..k+3].
fn blockAT(m: u32, k: u32) -> mat4x4f {
  if (TRANS_A) {  // stored lines run along m
    return transpose(mat4x4f(lineA(k, m), lineA(k + 1u, m), lineA(k + 2u, m), lineA(k + 3u, m)));
  }
  return mat4x4f(lineA(m, k), lineA(m + 1u, k), lineA(m + 2u, k), lineA(m + 3u, k));
}

// op(B)[k..k+3, n..n+3]: column j holds op(B)[k+j, n..n+3]; `cols` = columnOffsets(n, p.groupB).
fn blockB(k: u32, n: u32, cols: vec4u) -> mat4x4f {
  if (TRANS_B) {  // stored lines run along k
    return transpose(mat4x4f(lineB(n, k, cols), lineB(n + 1u, k, cols), lineB(n + 2u, k, cols), lineB(n + 3u, k, cols)));
  }
  return mat4x4f(lineB(k, n, cols), lineB(k + 1u, n, cols), lineB(k + 2u, n, cols), lineB(k + 3u, n, cols));
}

// c: [batch,M,N], a: [batch,M,K] / [batch,K,M], b: [batch,K,N] / [batch,N,K], bias: [N]
@compute @workgroup_size(WG_N, WG_M)
fn gemm(@builtin(global_invocation_id) gid: vec3u) {
  let m0 = gid.y * 4u * BLOCKS_M;
  let n0 = gid.x * 4u * BLOCKS_N;
  if (m0 >= p.M || n0 >= p.N) { return; }
  offA = p.offA + gid.z * p.batchA;
  offB = p.offB + gid.z * p.batchB;
  let offC = p.offC + gid.z * p.batchC;
  // block (i, j) at 2i + j; its column r is C[m0 + 4i + r, n0 + 4j .. n0 + 4j + 3] (a row of C)
  var acc: array<mat4x4f, 4>;
  var bCols: array<vec4u, 2>;
  for (var j = 0u; j < BLOCKS_N; j++) { bCols[j] = columnOffsets(n0 + 4u * j, p.groupB); }
  for (var k = 0u; k < p.K; k += 4u) {
    var bs: array<mat4x4f, 2>;
    for (var j = 0u; j < BLOCKS_N; j++) {
      bs[j] = blockB(k, n0 + 4u * j, bCols[j]);
      if (k + 4u > p.K) {  // the last step reaches past K: its clamped lines must not count
        let live = vec4u(k) + vec4u(0u, 1u, 2u, 3u) < vec4u(p.K);
        let zero = vec4f(0.0);
        bs[j] = mat4x4f(select(zero, bs[j][0], live.x), select(zero, bs[j][1], live.y), select(zero, bs[j][2], live.z), select(zero, bs[j][3], live.w));
      }
    }
    for (var i = 0u; i < BLOCKS_M; i++) {
      let at = blockAT(m0 + 4u * i, k);
      for (var j = 0u; j < BLOCKS_N; j++) {
        acc[2u * i + j] += bs[j] * at;
      }
    }
  }
  // one loop over the stored lines, of more iterations than the compiler unrolls: one copy of the
  // store's and the epilogue's code (see gemmShared's STORE_C), reading a copy of acc
  var sums = acc;
  for (var q = 0u; q < 4u * BLOCKS_M * BLOCKS_N; q++) {
    let j = q % BLOCKS_N;
    let i = q / BLOCKS_N / 4u;
    let m = m0 + 4u * i + (q / BLOCKS_N) % 4u;
    let n = n0 + 4u * j;
    storeLine(offC, m, n, columnOffsets(n, p.groupC), sums[2u * i + j][(q / BLOCKS_N) % 4u], rowEpilogue(m), colEpilogue(n));
  }
}

// The epilogue's map of one bias and table entry as v * scale + shift: (1, 0) without them.
fn epilogueAt(i: u32) -> vec2f {
  var bi = 0.0;
  if (p.hasBias != 0u) { bi = bias[i]; }
  var t = vec4f(0.0, 1.0, 0.0, 0.0);  // (_, a, c, m): the identity
  if (p.hasAffine != 0u) { t = affine[i]; }
  return vec2f(t.y, t.y * (bi - t.w) + t.z);
}

// (scale, shift) of row m (clamped into M), the identity unless the epilogue runs along rows.
fn rowEpilogue(m: u32) -> vec2f {
  if (p.alongRows == 0u) { return vec2f(1.0, 0.0); }
  return epilogueAt(p.offEpi + min(m, p.M - 1u));
}

// (scale, shift) of columns n..n+3 (clamped into N) as the columns of a 4x2 matrix, the identity
// unless the epilogue runs along columns.
fn colEpilogue(n: u32) -> mat2x4f {
  if (p.alongRows != 0u) { return mat2x4f(vec4f(1.0), vec4f(0.0)); }
  let i = p.offEpi + min(vec4u(n) + vec4u(0u, 1u, 2u, 3u), vec4u(p.N - 1u));
  let e = mat4x2f(epilogueAt(i.x), epilogueAt(i.y), epilogueAt(i.z), epilogueAt(i.w));
  return transpose(e);
}

// C[m, n..n+3] (the columns inside N, at row offsets `cols`; nothing when m is past M) = the
// epilogue of v, or of C + v when p.accumulate: relu((s * re.x + re.y) * ce[0] + ce[1] + R).
fn storeLine(offC: u32, m: u32, n: u32, cols: vec4u, v: vec4f, re: vec2f, ce: mat2x4f) {
  if (m >= p.M || n >= p.N) { return; }
  let row = offC + m * p.ldC;
  let toR = p.offR - p.offC;  // the residual's index is C's moved to its own window (u32 wraps)
  {{STORE_LINE}}
}

// Line t of the workgroup's A tile at step k: op(A)[m0 + t, k..k+3] as stored, or, transposed,
// stored row k + t % 4 from column m0 + t - t % 4 (4 such lines make a 4x4 block).
fn tileLine(t: u32, m0: u32, k: u32) -> vec4f {
  if (TRANS_A) { return lineA(k + t % 4u, m0 + t - t % 4u); }
  return lineA(m0 + t, k);
}

var<private> mine: array<vec4f, TM>;           // gemmShared: lines lane, lane + SG, ... of the A tile
var<workgroup> aTile: array<vec4f, TM>;    // gemmShared: the A tile, without subgroups

// Line t of the A tile (t % SG is a constant once the loops unroll), from the lane that loaded it.
fn tileA(t: u32) -> vec4f {
  return {{READ_A}};
}

// Without subgroups: the lanes' A lines go through workgroup memory.
fn publishA(lane: u32) {
  for (var q = 0u; q * SG < TM; q++) {
    if (q * SG + lane < TM) { aTile[q * SG + lane] = mine[q]; }
  }
  workgroupBarrier();
}

// c: [batch,M,N], a: [batch,M,K] / [batch,K,M], b: [batch,K,N] / [batch,N,K], bias: [N]
@compute @workgroup_size(SG)
fn gemmShared(@builtin(workgroup_id) wid: vec3u, {{LANE}}) {
  let m0 = wid.y * TM;
  let n0 = (wid.x * SG + lane) * 4u * NB;
  offA = p.offA + wid.z * p.batchA;
  offB = p.offB + wid.z * p.batchB;
  let offC = p.offC + wid.z * p.batchC;
  // row i, block j at i * NB + j: C[m0 + i, n0 + 4j .. n0 + 4j + 3]
  var acc: array<vec4f, TM * NB>;
  var bCols: array<vec4u, 2>;
  for (var j = 0u; j < NB; j++) { bCols[j] = columnOffsets(n0 + 4u * j, p.groupB); }
  // no early return for lanes past N: every lane must take part in the shuffles (their B lines
  // are clamped, their outputs not stored)
  for (var k = 0u; k < p.K; k += 4u) {
    let live = vec4u(k) + vec4u(0u, 1u, 2u, 3u) < vec4u(p.K);  // the last step may reach past K
    let tail = k + 4u > p.K;
    var bs: array<mat4x4f, 2>;
    for (var j = 0u; j < NB; j++) {
      bs[j] = blockB(k, n0 + 4u * j, bCols[j]);
      if (tail) {
        let zero = vec4f(0.0);
        bs[j] = mat4x4f(select(zero, bs[j][0], live.x), select(zero, bs[j][1], live.y), select(zero, bs[j][2], live.z), select(zero, bs[j][3], live.w));
      }
    }
    {{LOAD_A_TILE}}
    {{PUBLISH_A}}
    {{ACCUMULATE}}
    {{DONE_A}}
  }
  {{STORE_C}}
}

// The code src/ops/matmul.ts writes out for gemmShared's loops over the tile, once per tiling (so
// that every index into acc is a constant and the tile stays in registers: a loop the compiler
// leaves rolled would put acc in memory):
//   LOAD_A_TILE  mine[q] = tileLine(q * SG + lane, m0, k) for q < TM / SG
//   ACCUMULATE   for each group g of 4 rows: blk = rowsOfA(4g, tail, live), then for r < 4, j < NB:
//                acc[(4g + r) * NB + j] += bs[j] * blk[r]
//   STORE_C      ce_j = colEpilogue(n0 + 4j), cols_j = columnOffsets(n0 + 4j, p.groupC) for j < NB,
//                then, a loop over the rows i < TM (left rolled: one copy of the store's and the
//                epilogue's code, not TM; it reads a copy of acc, which may live in memory):
//                storeLine(offC, m0 + i, n0 + 4j, cols_j, acc[i * NB + j], rowEpilogue(m0 + i), ce_j)
// (Unrolled, the TM stores were most of a pipeline's LLVM time on lavapipe: TM 32 NB 1 with vec4
// operands 5.7 s without an epilogue and 21.6 s with every part, 1.4 s rolled with every part;
// bench/NOTES.md section 20.)

// op(A)[m0 + t .. m0 + t + 3, k..k+3] from the A tile's lines t..t+3 (t % 4 == 0): column r holds
// row m0 + t + r; elements past K are zeroed on the last step (a clamped inf must not make 0 * inf).
fn rowsOfA(t: u32, tail: bool, live: vec4<bool>) -> mat4x4f {
  var blk = mat4x4f(tileA(t), tileA(t + 1u), tileA(t + 2u), tileA(t + 3u));
  if (TRANS_A) { blk = transpose(blk); }
  if (tail) {
    let zero = vec4f(0.0);
    blk = mat4x4f(select(zero, blk[0], live), select(zero, blk[1], live), select(zero, blk[2], live), select(zero, blk[3], live));
  }
  return blk;
}

// colsum: [N] = sum over the M rows of rows: [M,N] (the bias gradient of linear). One invocation per
// column: adjacent lanes read adjacent columns of the same row. A chunk of rows (at p.offA in the
// bound range) adds into colsum when p.accumulate is set.
// These share gemm's bindings 1 and 2 (no entry point uses both sets), but are always scalar.
@group(0) @binding(1) var<storage, read_write> colsum: array<f32>;
@group(0) @binding(2) var<storage, read> rows: array<f32>;

override WG_SUM: u32 = 64;  // invocations per workgroup of columnSum

@compute @workgroup_size(WG_SUM)
fn columnSum(@builtin(global_invocation_id) gid: vec3u) {
  let n = gid.x;
  if (n >= p.N) { return; }
  var s = select(0.0, colsum[n], p.accumulate != 0u);
  for (var m = 0u; m < p.M; m++) {
    s += rows[p.offA + m * p.N + n];
  }
  colsum[n] = s;
}
