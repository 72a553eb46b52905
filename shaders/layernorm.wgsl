// Layer normalization over the last dims (torch.nn.functional.layer_norm), as rows of C elements
// (x: [rows, C], weight and bias: [C]), after llm.c's layernorm kernels:
//   mean = sum(x) / C,  var = sum((x - mean)^2) / C (biased),  rstd = 1 / sqrt(var + eps)
//   y = (x - mean) * rstd * w + b                     (w = 1, b = 0 when absent)
// Backward, with xhat = (x - mean) * rstd and g = dy * w:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))   (mean and rstd depend on every x of the row)
//   dw = sum over rows of dy * xhat,   db = sum over rows of dy
// forward and backwardInput work on rows: ROW_THREADS invocations (a power of two) share a row,
// each folding its strided columns, then merging by a shared-memory tree (src/ops/layernorm.ts
// picks few per row on lavapipe, where barriers are dear, many on a GPU). The variance takes a
// second pass over the row (x - mean, squared), stable where E[x^2] - E[x]^2 is not.
// backwardParams is a column reduction: an invocation per column (consecutive columns, so loads
// are contiguous) over one slice of the rows, writing partial sums [slices, C] that the op sums.
// T is vec4<f32> when C is a multiple of 4 (2x faster loads on lavapipe), else f32.

alias T = {{T}};
const W = {{W}}u; // lanes of T

override WG: u32 = 256;          // invocations per workgroup, a power of two
override ROW_THREADS: u32 = 32;  // invocations per row, a power of two <= WG

struct Params {
  rows: u32,
  cols: u32,        // T elements per row: C / W
  span: u32,        // backwardParams: rows per slice
  hasWeight: u32,
  hasBias: u32,
  eps: f32,
  invC: f32,        // 1 / C
}

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> scratch: array<vec2f, WG>;

// Where an invocation works: its row, its lane within the row, and the row's first element.
struct RowSlot {
  row: u32,
  lane: u32,
  base: u32,
  cols: u32,  // columns to visit: 0 for the padding rows past the last (they still join the barriers)
}

fn row_slot(wid: vec3u, nwg: vec3u, lid: u32) -> RowSlot {
  let row = (wid.x + wid.y * nwg.x) * (WG / ROW_THREADS) + lid / ROW_THREADS;
  return RowSlot(row, lid % ROW_THREADS, row * p.cols, select(0u, p.cols, row < p.rows));
}

fn lane_sum(v: T) -> f32 {
  return dot(vec4f(v), vec4f(1.0)) * (f32(W) / 4.0); // a scalar T splats into 4 equal lanes
}

// The sums of v over each row's ROW_THREADS invocations; every one of them gets the result.
fn row_sum(v: vec2f, lid: u32, lane: u32) -> vec2f {
  scratch[lid] = v;
  for (var s = ROW_THREADS / 2u; s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (lane < s) { scratch[lid] += scratch[lid + s]; }
  }
  workgroupBarrier();
  let total = scratch[lid - lane];
  workgroupBarrier(); // before the next row_sum overwrites scratch
  return total;
}

// Bindings: 3 and 4 are x and the weight for every entry; the others differ per entry.
@group(0) @binding(3) var<storage, read> x: array<T>;
@group(0) @binding(4) var<storage, read> weight: array<T>;

fn weight_at(c: u32) -> T {
  if (p.hasWeight == 1u) { return weight[c]; }
  return T(1.0);
}

// ---- forward ----------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read_write> y: array<T>;
@group(0) @binding(2) var<storage, read_write> stats: array<vec2f>; // [rows] (mean, rstd) for the backward
@group(0) @binding(5) var<storage, read> bias: array<T>;

// x: [rows, C] -> y: [rows, C], stats: [rows, 2]
@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = row_slot(wid, nwg, lid);
  var s = 0.0;
  for (var c = r.lane; c < r.cols; c += ROW_THREADS) { s += lane_sum(x[r.base + c]); }
  let mean = row_sum(vec2f(s, 0.0), lid, r.lane).x * p.invC;
  var q = 0.0;
  for (var c = r.lane; c < r.cols; c += ROW_THREADS) {
    let d = x[r.base + c] - mean;
    q += lane_sum(d * d);
  }
  let rstd = inverseSqrt(row_sum(vec2f(q, 0.0), lid, r.lane).x * p.invC + p.eps);
  for (var c = r.lane; c < r.cols; c += ROW_THREADS) {
    var v = (x[r.base + c] - mean) * rstd * weight_at(c);
    if (p.hasBias == 1u) { v += bias[c]; }
    y[r.base + c] = v;
  }
  if (r.cols > 0u && r.lane == 0u) { stats[r.row] = vec2f(mean, rstd); }
}

// ---- backward ---------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read_write> dx: array<T>;
@group(0) @binding(2) var<storage, read> b_stats: array<vec2f>;
@group(0) @binding(5) var<storage, read> b_dy: array<T>;

// dy, x: [rows, C], stats: [rows, 2] -> dx: [rows, C]
@compute @workgroup_size(WG)
fn backwardInput(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = row_slot(wid, nwg, lid);
  var ms = vec2f(0.0, 1.0);
  if (r.cols > 0u) { ms = b_stats[r.row]; }
  // sums of g and g * xhat
  var s = vec2f(0.0);
  for (var c = r.lane; c < r.cols; c += ROW_THREADS) {
    let g = b_dy[r.base + c] * weight_at(c);
    s += vec2f(lane_sum(g), lane_sum(g * (x[r.base + c] - ms.x) * ms.y));
  }
  let m = row_sum(s, lid, r.lane) * p.invC;
  for (var c = r.lane; c < r.cols; c += ROW_THREADS) {
    let g = b_dy[r.base + c] * weight_at(c);
    let xhat = (x[r.base + c] - ms.x) * ms.y;
    dx[r.base + c] = ms.y * (g - m.x - xhat * m.y);
  }
}

@group(0) @binding(1) var<storage, read_write> dweight: array<T>; // [slices, C] partial sums
@group(0) @binding(4) var<storage, read_write> dbias: array<T>;   // [slices, C] partial sums

// dy, x: [rows, C], stats: [rows, 2] -> dweight, dbias: [slices, C]; workgroups (column block, slice)
@compute @workgroup_size(WG)
fn backwardParams(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x * WG + lid;
  if (c >= p.cols) { return; }
  let first = wid.y * p.span;
  let last = min(first + p.span, p.rows);
  var sw = T(0.0);
  var sb = T(0.0);
  for (var row = first; row < last; row++) {
    let ms = b_stats[row];
    let d = b_dy[row * p.cols + c];
    sw += d * (x[row * p.cols + c] - ms.x) * ms.y;
    sb += d;
  }
  if (p.hasWeight == 1u) { dweight[wid.y * p.cols + c] = sw; }
  if (p.hasBias == 1u) { dbias[wid.y * p.cols + c] = sb; }
}
