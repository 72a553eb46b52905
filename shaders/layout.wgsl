// Data movement (src/ops/layout.ts): each kernel copies elements to other positions, one
// invocation per element written, so no two invocations write one element and none needs atomics.
//   strided:        out[i] = x[offset + sum_d pos_d(i) * stride_d], pos(i) the position of i over
//                   the output's dims merged where the walk allows (src/tensor/layout.ts, coalesce),
//                   at most 6, innermost first: transpose (x's strides permuted), slice (offset at the
//                   starts, strides times the steps: negative ones walk backward), expand (stride 0
//                   along the repeated dims).
//   scatter:        out[offset + sum_d pos_d(i) * stride_d] = x[i]: a slice's backward, dy written
//                   into a zero-filled dx (a slice's positions are distinct).
//   gather_rows:    x: [outer, rows, inner] -> out: [outer, picks, inner], out[o, j, i] = x[o, index[j], i]
//   gather_rows_backward: dx[o, k, i] = sum of dy[o, j, i] over the j with index[j] = k; the j of each
//                   k are listed (CSR) in list[first[k] .. first[k+1]], so repeated indices sum.
//   pad_rows:       x: [outer, rows, inner] -> out: [outer, before + rows + after, inner], out row j
//                   reading x row src(j) = j - before, outside [0, rows) mirrored about the edge rows
//                   (reflect: -1 -> 1, rows -> rows - 2) or clamped to them (edge).
//   pad_rows_backward: dx row k = the sum of the dy rows j with src(j) = k: row k + before, and the
//                   padding rows that read k (reflect: the mirror images of k; edge: the padding beyond
//                   an edge row).

struct Params {
  n: u32,        // elements written
  offset: i32,   // strided, scatter: the element of x (out) at position 0
  d0: u32,       // strided, scatter: sizes of merged dims 0..4, innermost first (dim 5 is the rest)
  d1: u32,
  d2: u32,
  d3: u32,
  d4: u32,
  s0: i32,       // strided, scatter: the element stride along merged dim 0..5
  s1: i32,
  s2: i32,
  s3: i32,
  s4: i32,
  s5: i32,
  rows: u32,     // gather, pad: x's rows along the axis
  picks: u32,    // gather: indices; pad: rows of the output (before + rows + after)
  inner: u32,    // gather, pad: elements per row
  before: u32,   // pad: rows added before
  reflect: u32,  // pad: mirror (else repeat the edge rows)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> index: array<u32>;   // gather_rows; gather_rows_backward: first
@group(0) @binding(4) var<storage, read> list: array<u32>;    // gather_rows_backward

fn flat(wid: vec3u, nwg: vec3u, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * 256u + lid;
}

// offset + sum_d pos_d(i) * s_d over the merged dims
fn strided_index(i: u32) -> u32 {
  let q0 = i / p.d0;
  let q1 = q0 / p.d1;
  let q2 = q1 / p.d2;
  let q3 = q2 / p.d3;
  let q4 = q3 / p.d4;
  let at = p.offset + i32(i - q0 * p.d0) * p.s0 + i32(q0 - q1 * p.d1) * p.s1 + i32(q1 - q2 * p.d2) * p.s2
    + i32(q2 - q3 * p.d3) * p.s3 + i32(q3 - q4 * p.d4) * p.s4 + i32(q4) * p.s5;
  return u32(at);
}

// out: [n] (the output, flattened); x: read through the strides
@compute @workgroup_size(256)
fn strided(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flat(wid, nwg, lid);
  if (i < p.n) { out[i] = x[strided_index(i)]; }
}

// out: written through the strides (zero-filled before); x: [n]
@compute @workgroup_size(256)
fn scatter(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flat(wid, nwg, lid);
  if (i < p.n) { out[strided_index(i)] = x[i]; }
}

// out: [outer, picks, inner]; x: [outer, rows, inner]; index: [picks]
@compute @workgroup_size(256)
fn gather_rows(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let e = flat(wid, nwg, lid);
  if (e >= p.n) { return; }
  let i = e % p.inner;
  let row = e / p.inner;  // o * picks + j
  let o = row / p.picks;
  out[e] = x[(o * p.rows + index[row - o * p.picks]) * p.inner + i];
}

// out: dx [outer, rows, inner]; x: dy [outer, picks, inner]; index: first [rows + 1]; list: [picks]
@compute @workgroup_size(256)
fn gather_rows_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let e = flat(wid, nwg, lid);
  if (e >= p.n) { return; }
  let i = e % p.inner;
  let row = e / p.inner;  // o * rows + k
  let o = row / p.rows;
  let k = row - o * p.rows;
  var sum = 0.0;
  for (var t = index[k]; t < index[k + 1u]; t++) { sum += x[(o * p.picks + list[t]) * p.inner + i]; }
  out[e] = sum;
}

// out: [outer, picks, inner] (picks = before + rows + after); x: [outer, rows, inner]
@compute @workgroup_size(256)
fn pad_rows(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let e = flat(wid, nwg, lid);
  if (e >= p.n) { return; }
  let i = e % p.inner;
  let row = e / p.inner;
  let o = row / p.picks;
  let last = i32(p.rows) - 1;
  var src = i32(row - o * p.picks) - i32(p.before);
  if (p.reflect != 0u) {
    src = select(src, -src, src < 0);
    src = select(src, 2 * last - src, src > last);
  } else {
    src = clamp(src, 0, last);
  }
  out[e] = x[(o * p.rows + u32(src)) * p.inner + i];
}

// out: dx [outer, rows, inner]; x: dy [outer, picks, inner]
@compute @workgroup_size(256)
fn pad_rows_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let e = flat(wid, nwg, lid);
  if (e >= p.n) { return; }
  let i = e % p.inner;
  let row = e / p.inner;
  let o = row / p.rows;
  let k = row - o * p.rows;
  let after = p.picks - p.before - p.rows;
  let base = o * p.picks;
  var sum = x[(base + k + p.before) * p.inner + i];
  if (p.reflect != 0u) {
    // left mirror: padding row before - k reads k (1 <= k <= before); right: row before + 2(rows-1) - k
    if (k >= 1u && k <= p.before) { sum += x[(base + p.before - k) * p.inner + i]; }
    if (k + 2u <= p.rows && k + 1u + after >= p.rows) { sum += x[(base + p.before + 2u * (p.rows - 1u) - k) * p.inner + i]; }
  } else {
    if (k == 0u) { for (var j = 0u; j < p.before; j++) { sum += x[(base + j) * p.inner + i]; } }
    if (k + 1u == p.rows) { for (var j = p.before + p.rows; j < p.picks; j++) { sum += x[(base + j) * p.inner + i]; } }
  }
  out[e] = sum;
}
