// Matrix multiply, the kernel family behind matmul and linear (src/ops/matmul.ts).
//
// C[M,N] = op(A) op(B) (+ bias[N] added to every row), op(X) = X or X^T by the override flags
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
{{ENABLE}}

struct Params {
  M: u32,
  N: u32,
  K: u32,
  hasBias: u32,     // add bias[N] to every row of C (a flag, not an override: it costs one branch per
                    // invocation, and matmul and linear then share their pipelines)
  accumulate: u32,  // C += result (a later chunk along K) instead of C = result
  offC: u32,        // element offsets of each window in its bound range
  offA: u32,
  offB: u32,
  offBias: u32,
  ldC: u32,         // row strides (elements) of the stored matrices
  ldA: u32,
  ldB: u32,
  batchA: u32,      // element strides between the batch items' matrices
  batchB: u32,
  batchC: u32,
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
@group(0) @binding(4) var<storage, read> bias: array<f32>;     // bias: [N] (read only if p.hasBias)

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

fn lineB(s: u32, f: u32) -> vec4f {
  let i = select(lineIndices(s, f, p.K, p.N, offB, p.ldB), lineIndices(s, f, p.N, p.K, offB, p.ldB), TRANS_B);
  return {{LOAD_B}};
}

// op(A)[m..m+3, k..k+3], transposed: column r holds op(A)[m+r, k..k+3].
fn blockAT(m: u32, k: u32) -> mat4x4f {
  if (TRANS_A) {  // stored lines run along m
    return transpose(mat4x4f(lineA(k, m), lineA(k + 1u, m), lineA(k + 2u, m), lineA(k + 3u, m)));
  }
  return mat4x4f(lineA(m, k), lineA(m + 1u, k), lineA(m + 2u, k), lineA(m + 3u, k));
}

// op(B)[k..k+3, n..n+3]: column j holds op(B)[k+j, n..n+3].
fn blockB(k: u32, n: u32) -> mat4x4f {
  if (TRANS_B) {  // stored lines run along k
    return transpose(mat4x4f(lineB(n, k), lineB(n + 1u, k), lineB(n + 2u, k), lineB(n + 3u, k)));
  }
  return mat4x4f(lineB(k, n), lineB(k + 1u, n), lineB(k + 2u, n), lineB(k + 3u, n));
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
  for (var k = 0u; k < p.K; k += 4u) {
    var bs: array<mat4x4f, 2>;
    for (var j = 0u; j < BLOCKS_N; j++) {
      bs[j] = blockB(k, n0 + 4u * j);
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
  for (var j = 0u; j < BLOCKS_N; j++) {
    let bl = biasLine(n0 + 4u * j);
    for (var i = 0u; i < BLOCKS_M; i++) {
      for (var r = 0u; r < 4u; r++) { storeLine(offC, m0 + 4u * i + r, n0 + 4u * j, acc[2u * i + j][r] + bl); }
    }
  }
}

// bias[n..n+3] (clamped into N), or zeros without a bias.
fn biasLine(n: u32) -> vec4f {
  if (p.hasBias == 0u) { return vec4f(0.0); }
  let bi = p.offBias + min(vec4u(n) + vec4u(0u, 1u, 2u, 3u), vec4u(p.N - 1u));
  return vec4f(bias[bi.x], bias[bi.y], bias[bi.z], bias[bi.w]);
}

// C[m, n..n+3] (the columns inside N; nothing when m is past M) = v, or C += v when p.accumulate.
fn storeLine(offC: u32, m: u32, n: u32, v: vec4f) {
  if (m >= p.M || n >= p.N) { return; }
  let ci = offC + m * p.ldC + n;
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
  // no early return for lanes past N: every lane must take part in the shuffles (their B lines
  // are clamped, their outputs not stored)
  for (var k = 0u; k < p.K; k += 4u) {
    let live = vec4u(k) + vec4u(0u, 1u, 2u, 3u) < vec4u(p.K);  // the last step may reach past K
    let tail = k + 4u > p.K;
    var bs: array<mat4x4f, 2>;
    for (var j = 0u; j < NB; j++) {
      bs[j] = blockB(k, n0 + 4u * j);
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
//   STORE_C      bias_j = biasLine(n0 + 4j), then storeLine(offC, m0 + i, n0 + 4j, acc[i * NB + j] + bias_j)
//                for i < TM, j < NB

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
