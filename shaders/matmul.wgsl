// Matrix multiply, the kernel family behind matmul and linear (src/ops/matmul.ts).
//
// gemm: C[M,N] = op(A) op(B) (+ bias[N] added to every row), op(X) = X or X^T by the override flags
// TRANS_A / TRANS_B: one piece of code for the four transpose combinations, because a transposed
// operand differs only in which way its contiguous lines run. Backward of C = A B is the same GEMM
// with other flags (dA = dC B^T, dB = A^T dC); for the linear layer y = x w^T + b:
// dx = dy w, dw = dy^T x, db = colsum(dy) (the second kernel here).
//
// Register blocking, no workgroup memory: each invocation accumulates BLOCKS_M x BLOCKS_N blocks of
// 4x4 outputs in mat4x4f registers and, per step of 4 along K, reads 4-element lines of A and B
// (one vec4 load each when the operand's stored rows are whole vec4s: the LOAD_A / LOAD_B
// expressions src/ops/matmul.ts fills in). A 4x4 block read along the "wrong" way is transposed in
// registers, which costs nothing on scalar SIMT lanes. Lines past an edge are clamped into the
// matrix: what they compute lands in outputs that are not stored, or (past K) is dropped.
//
// A dispatch may compute one chunk of a larger GEMM (src/ops/matmul.ts splits operands that exceed
// the storage binding limit): each matrix is then a window of its tensor, at an element offset in
// its bound range with its own row stride, and chunks along K add into C (p.accumulate).
// Batched GEMMs (C[z] = op(A[z]) op(B[z])) take workgroup z as the batch item: matrix z of each
// operand lies z * batchA (batchB, batchC) elements past the first, 0 for a broadcast operand.

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

alias AElem = {{A_TYPE}};  // vec4<f32> when A's rows (length K, or M if transposed) are whole vec4s, else f32
alias BElem = {{B_TYPE}};

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> c: array<f32>;  // c: [M,N]
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
    let n = n0 + 4u * j;
    if (n >= p.N) { break; }
    var add = vec4f(0.0);
    if (p.hasBias != 0u) {
      let bi = p.offBias + min(vec4u(n) + vec4u(0u, 1u, 2u, 3u), vec4u(p.N - 1u));
      add = vec4f(bias[bi.x], bias[bi.y], bias[bi.z], bias[bi.w]);
    }
    for (var i = 0u; i < BLOCKS_M; i++) {
      for (var r = 0u; r < 4u; r++) {
        let m = m0 + 4u * i + r;
        if (m >= p.M) { break; }
        let row = acc[2u * i + j][r] + add;
        let ci = offC + m * p.ldC + n;
        // a loop rather than 4 guarded stores: half the compile time on lavapipe, no slower
        for (var q = 0u; q < min(4u, p.N - n); q++) { c[ci + q] = select(0.0, c[ci + q], p.accumulate != 0u) + row[q]; }
      }
    }
  }
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
