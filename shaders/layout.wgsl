// Data movement (src/ops/layout.ts): each kernel copies elements to other positions, every element
// written by one invocation, so none needs atomics. An invocation writes RUN consecutive elements:
// it finds the first one's position by division and steps to the next ones as an odometer does,
// as integer division is dear on lavapipe (a loop of scalar divides per lane).
// An element is a vec4 (ELEM) when the walk's innermost run is contiguous on both sides and every
// size and stride along it is a multiple of 4 (src/ops/layout.ts divides them by 4): a quarter of
// the loads, stores and odometer steps, each of which is a per-lane loop on lavapipe.
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
alias Elem = {{ELEM}};  // f32 or vec4<f32>: every count, offset and stride is in these units

@group(0) @binding(1) var<storage, read_write> out: array<Elem>;
@group(0) @binding(2) var<storage, read> x: array<Elem>;
@group(0) @binding(3) var<storage, read> index: array<u32>;   // gather_rows; gather_rows_backward: first
@group(0) @binding(4) var<storage, read> list: array<u32>;    // gather_rows_backward

const RUN = 8u; // elements per invocation

// The first of the invocation's run of elements.
fn run_start(wid: vec3u, nwg: vec3u, lid: u32) -> u32 {
  return ((wid.x + wid.y * nwg.x) * 256u + lid) * RUN;
}

// ---- strided ----------------------------------------------------------------------------------

// A position over the merged dims (innermost first) and the element it reads or writes.
struct Walk {
  pos: array<u32, 6>,
  at: i32,
}

fn walk_at(i: u32) -> Walk {
  let q0 = i / p.d0;
  let q1 = q0 / p.d1;
  let q2 = q1 / p.d2;
  let q3 = q2 / p.d3;
  let q4 = q3 / p.d4;
  let pos = array<u32, 6>(i - q0 * p.d0, q0 - q1 * p.d1, q1 - q2 * p.d2, q2 - q3 * p.d3, q3 - q4 * p.d4, q4);
  let at = p.offset + i32(pos[0]) * p.s0 + i32(pos[1]) * p.s1 + i32(pos[2]) * p.s2 + i32(pos[3]) * p.s3 + i32(pos[4]) * p.s4 + i32(pos[5]) * p.s5;
  return Walk(pos, at);
}

// The next position: dim 0 advances, and carries into the dims above it when it wraps.
fn walk_next(w: ptr<function, Walk>) {
  (*w).pos[0] += 1u;
  (*w).at += p.s0;
  if ((*w).pos[0] < p.d0) { return; }
  (*w).pos[0] = 0u;
  (*w).pos[1] += 1u;
  (*w).at += p.s1 - i32(p.d0) * p.s0;
  if ((*w).pos[1] < p.d1) { return; }
  (*w).pos[1] = 0u;
  (*w).pos[2] += 1u;
  (*w).at += p.s2 - i32(p.d1) * p.s1;
  if ((*w).pos[2] < p.d2) { return; }
  (*w).pos[2] = 0u;
  (*w).pos[3] += 1u;
  (*w).at += p.s3 - i32(p.d2) * p.s2;
  if ((*w).pos[3] < p.d3) { return; }
  (*w).pos[3] = 0u;
  (*w).pos[4] += 1u;
  (*w).at += p.s4 - i32(p.d3) * p.s3;
  if ((*w).pos[4] < p.d4) { return; }
  (*w).pos[4] = 0u;
  (*w).pos[5] += 1u;
  (*w).at += p.s5 - i32(p.d4) * p.s4;
}

// out: [n] (the output, flattened); x: read through the strides
@compute @workgroup_size(256)
fn strided(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let first = run_start(wid, nwg, lid);
  if (first >= p.n) { return; }
  var w = walk_at(first);
  for (var i = first; i < min(first + RUN, p.n); i++) {
    out[i] = x[u32(w.at)];
    walk_next(&w);
  }
}

// out: written through the strides (zero-filled before); x: [n]
@compute @workgroup_size(256)
fn scatter(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let first = run_start(wid, nwg, lid);
  if (first >= p.n) { return; }
  var w = walk_at(first);
  for (var i = first; i < min(first + RUN, p.n); i++) {
    out[u32(w.at)] = x[i];
    walk_next(&w);
  }
}

// ---- rows along one axis ----------------------------------------------------------------------

// A position (o, j, i) in a tensor viewed as [outer, mid, inner].
struct Row {
  o: u32,
  j: u32,
  i: u32,
}

fn row_at(e: u32, mid: u32) -> Row {
  let r = e / p.inner;
  let o = r / mid;
  return Row(o, r - o * mid, e - r * p.inner);
}

fn row_next(r: ptr<function, Row>, mid: u32) {
  (*r).i += 1u;
  if ((*r).i < p.inner) { return; }
  (*r).i = 0u;
  (*r).j += 1u;
  if ((*r).j < mid) { return; }
  (*r).j = 0u;
  (*r).o += 1u;
}

// out: [outer, picks, inner]; x: [outer, rows, inner]; index: [picks]
@compute @workgroup_size(256)
fn gather_rows(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let first = run_start(wid, nwg, lid);
  if (first >= p.n) { return; }
  var r = row_at(first, p.picks);
  for (var e = first; e < min(first + RUN, p.n); e++) {
    out[e] = x[(r.o * p.rows + index[r.j]) * p.inner + r.i];
    row_next(&r, p.picks);
  }
}

// out: dx [outer, rows, inner]; x: dy [outer, picks, inner]; index: first [rows + 1]; list: [picks]
@compute @workgroup_size(256)
fn gather_rows_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let first = run_start(wid, nwg, lid);
  if (first >= p.n) { return; }
  var r = row_at(first, p.rows);
  for (var e = first; e < min(first + RUN, p.n); e++) {
    var sum = Elem(0.0);
    for (var t = index[r.j]; t < index[r.j + 1u]; t++) { sum += x[(r.o * p.picks + list[t]) * p.inner + r.i]; }
    out[e] = sum;
    row_next(&r, p.rows);
  }
}

// The row of x that output row j of a padded axis reads.
fn pad_source(j: u32) -> u32 {
  let last = i32(p.rows) - 1;
  var src = i32(j) - i32(p.before);
  if (p.reflect != 0u) {
    src = select(src, -src, src < 0);
    src = select(src, 2 * last - src, src > last);
  } else {
    src = clamp(src, 0, last);
  }
  return u32(src);
}

// out: [outer, picks, inner] (picks = before + rows + after); x: [outer, rows, inner]
@compute @workgroup_size(256)
fn pad_rows(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let first = run_start(wid, nwg, lid);
  if (first >= p.n) { return; }
  var r = row_at(first, p.picks);
  for (var e = first; e < min(first + RUN, p.n); e++) {
    out[e] = x[(r.o * p.rows + pad_source(r.j)) * p.inner + r.i];
    row_next(&r, p.picks);
  }
}

// out: dx [outer, rows, inner]; x: dy [outer, picks, inner]
@compute @workgroup_size(256)
fn pad_rows_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let first = run_start(wid, nwg, lid);
  if (first >= p.n) { return; }
  let after = p.picks - p.before - p.rows;
  var r = row_at(first, p.rows);
  for (var e = first; e < min(first + RUN, p.n); e++) {
    let k = r.j;
    let base = r.o * p.picks;
    var sum = x[(base + k + p.before) * p.inner + r.i];
    if (p.reflect != 0u) {
      // left mirror: padding row before - k reads k (1 <= k <= before); right: row before + 2(rows-1) - k
      if (k >= 1u && k <= p.before) { sum += x[(base + p.before - k) * p.inner + r.i]; }
      if (k + 2u <= p.rows && k + 1u + after >= p.rows) { sum += x[(base + p.before + 2u * (p.rows - 1u) - k) * p.inner + r.i]; }
    } else {
      if (k == 0u) { for (var j = 0u; j < p.before; j++) { sum += x[(base + j) * p.inner + r.i]; } }
      if (k + 1u == p.rows) { for (var j = p.before + p.rows; j < p.picks; j++) { sum += x[(base + j) * p.inner + r.i]; } }
    }
    out[e] = sum;
    row_next(&r, p.rows);
  }
}
