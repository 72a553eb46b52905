// Softmax and log-softmax along one axis, and the fused softmax-cross-entropy loss.
//   softmax:     y[c] = exp(x[c] - m) / s,  m = max_c x[c],  s = sum_c exp(x[c] - m)
//                backward: dx = y * (dy - sum_c dy*y)
//   log-softmax: y[c] = x[c] - m - log s;   backward: dx = dy - exp(y) * sum_c dy
//   cross-entropy against a target distribution q per row (built in place, never stored):
//     class index y, label smoothing eps, class weights w: q[c] = w[c] * ((1-eps)*[c == y] + eps/C)
//     (all 0 when y is the ignored index); probabilities t: q[c] = w[c] * ((1-eps)*t[c] + eps/C).
//     loss_r = -sum_c q[c] * log softmax(x)[c] = Q * (m + log s) - sum_c q[c] * x[c],  Q = sum_c q[c]
//     backward: dx[c] = (Q * softmax(x)[c] - q[c]) * g_r, g_r = dLoss (of the row, for 'none'),
//     divided by the mean's divisor (the summed w[y] of the rows not ignored, or the row count).
//     The forward's per-element sums need only w[c] (times the probability), a class index's
//     (1-eps)*w[y] is added once per row: a plain loss costs little more than the softmax.
//
// Rows: the tensor is viewed as [outer, C, inner] around the axis, and row r = (o, i) is the C
// elements x[o, :, i], `inner` apart (1 for the last axis, the usual case: contiguous rows).
// ROW_THREADS invocations (a power of two) share one row, so short rows (C = 10) do not idle a
// whole workgroup and long ones (C = 1000) are spread over many lanes. Each invocation folds its
// strided columns into (max, sum of exp(x - max), two sums) in two passes over its own elements
// (one exp per element), then the row's invocations merge these in a shared-memory tree
// (online-softmax merging, one tree instead of a max tree and a sum tree).

override WG: u32 = 256;          // invocations per workgroup, a power of two
override ROW_THREADS: u32 = 32;  // invocations per row, a power of two <= WG
// Pipeline constants, as they change the per-element loops (a branch there costs on lavapipe):
override STRIDED: bool = false;  // rows are strided (inner > 1); contiguous rows load faster
override LOG: bool = false;      // softmax kernels: log-softmax instead of softmax
override SOFT: bool = false;     // cross-entropy: the target is probabilities [rows of C], not class indices [rows]
override WEIGHTED: bool = false; // cross-entropy: class weights are given

const LOWEST = -0x1.fffffep+127f; // the max of no elements: exp(LOWEST - m) is 0, unlike -inf - -inf

struct Params {
  rows: u32,        // outer * inner
  cols: u32,        // C, the axis
  inner: u32,       // distance between a row's elements
  smoothing: f32,   // cross-entropy: label smoothing eps
  ignoring: u32,    // rows labelled ignoreIndex are left out
  ignoreIndex: i32,
  perRow: u32,      // backward: dLoss holds one gradient per row (reduction 'none')
  mean: u32,        // backward: divide by the mean's divisor (the summed weights of the labels)
  scale: f32,       // backward: multiplies dLoss (1/rows for a mean over rows)
  nan: f32,         // NaN, which no WGSL constant may be: the loss of a row whose label is no class
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;                  // softmaxBackward
@group(0) @binding(3) var<storage, read> dy: array<f32>;                 // softmaxBackward
@group(0) @binding(3) var<storage, read> targets: array<f32>;            // cross-entropy: labels or probabilities
@group(0) @binding(4) var<storage, read> weight: array<f32>;             // cross-entropy: [C]
@group(0) @binding(5) var<storage, read_write> statsOut: array<f32>;     // crossEntropyForward
@group(0) @binding(5) var<storage, read> stats: array<f32>;              // crossEntropyBackward
@group(0) @binding(6) var<storage, read_write> divisorOut: array<f32>;   // crossEntropyForward
@group(0) @binding(6) var<storage, read> dLoss: array<f32>;              // crossEntropyBackward
@group(0) @binding(7) var<storage, read> divisor: array<f32>;            // crossEntropyBackward
@group(0) @binding(2) var<storage, read> lossSum: array<f32>;            // crossEntropyMean
@group(0) @binding(3) var<storage, read> divisorSum: array<f32>;         // crossEntropyMean

var<workgroup> scratch: array<vec4f, WG>;

/** Where an invocation works: its row, its lane within the row, and the row's first element. */
struct RowSlot {
  row: u32,
  lane: u32,
  base: u32,
  cols: u32,  // columns to visit: 0 for the padding rows past the last (they still join the barriers)
}

fn rowSlot(wid: vec3u, nwg: vec3u, lid: u32) -> RowSlot {
  let row = (wid.x + wid.y * nwg.x) * (WG / ROW_THREADS) + lid / ROW_THREADS;
  let o = row / p.inner;
  let base = o * p.cols * p.inner + (row - o * p.inner);
  return RowSlot(row, lid % ROW_THREADS, base, select(0u, p.cols, row < p.rows));
}

/** The index of column c of the row. */
fn at(r: RowSlot, c: u32) -> u32 {
  if (STRIDED) { return r.base + c * p.inner; }
  return r.base + c;
}

/** Combines (max, sum of exp(x - max), a, b) of two disjoint parts of a row. */
fn merge(u: vec4f, v: vec4f) -> vec4f {
  let m = max(u.x, v.x);
  return vec4f(m, u.y * exp(u.x - m) + v.y * exp(v.x - m), u.z + v.z, u.w + v.w);
}

/** Merges the partials of each row's ROW_THREADS invocations; every one of them gets the result. */
fn rowMerge(v: vec4f, lid: u32, lane: u32) -> vec4f {
  scratch[lid] = v;
  workgroupBarrier();
  for (var s = ROW_THREADS / 2u; s > 0u; s >>= 1u) {
    if (lane < s) { scratch[lid] = merge(scratch[lid], scratch[lid + s]); }
    workgroupBarrier();
  }
  return scratch[lid - lane];
}

/** The max of the invocation's columns. */
fn laneMax(r: RowSlot) -> f32 {
  var m = LOWEST;
  for (var c = r.lane; c < r.cols; c += ROW_THREADS) { m = max(m, x[at(r, c)]); }
  return m;
}

// x: [outer, C, inner] -> out: the same, softmax (or log-softmax) along C
@compute @workgroup_size(WG)
fn softmaxForward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = rowSlot(wid, nwg, lid);
  let m = laneMax(r);
  var s = 0.0;
  for (var c = r.lane; c < r.cols; c += ROW_THREADS) { s += exp(x[at(r, c)] - m); }
  let st = rowMerge(vec4f(m, s, 0.0, 0.0), lid, r.lane);
  let logS = log(st.y);
  for (var c = r.lane; c < r.cols; c += ROW_THREADS) {
    let i = at(r, c);
    let shifted = x[i] - st.x;
    if (LOG) { out[i] = shifted - logS; } else { out[i] = exp(shifted) / st.y; }
  }
}

// y: the forward's output, dy: its gradient, [outer, C, inner] -> out: dx
@compute @workgroup_size(WG)
fn softmaxBackward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = rowSlot(wid, nwg, lid);
  var dot = 0.0; // softmax: sum dy*y; log-softmax: sum dy
  for (var c = r.lane; c < r.cols; c += ROW_THREADS) {
    let i = at(r, c);
    if (LOG) { dot += dy[i]; } else { dot += dy[i] * y[i]; }
  }
  // the sum rides on the same tree: with both maxima 0, merge adds the second terms exactly
  let total = rowMerge(vec4f(0.0, dot, 0.0, 0.0), lid, r.lane).y;
  for (var c = r.lane; c < r.cols; c += ROW_THREADS) {
    let i = at(r, c);
    if (LOG) { out[i] = dy[i] - exp(y[i]) * total; } else { out[i] = y[i] * (dy[i] - total); }
  }
}

// ---- cross-entropy --------------------------------------------------------------------------

/** A row's class label, as the target kernels need it. */
struct Label {
  index: u32,     // the class (for a probability target: unused)
  scale: f32,     // 0 for an ignored row, NaN for a label that is no class index, else 1
}

fn rowLabel(r: RowSlot) -> Label {
  if (SOFT || r.cols == 0u) { return Label(0u, 1.0); }
  let v = targets[r.row];
  let y = i32(v);
  if (p.ignoring != 0u && y == p.ignoreIndex && f32(y) == v) { return Label(0u, 0.0); }
  // labels from the host are checked there; a label tensor's bad values make the row's loss NaN
  let valid = f32(y) == v && y >= 0 && y < i32(p.cols);
  return Label(select(0u, u32(y), valid), select(p.nan, 1.0, valid));
}

fn classWeight(c: u32) -> f32 {
  if (WEIGHTED) { return weight[c]; }
  return 1.0;
}

/** q[c], the row's target weight of class c (see the header). Branches, not select(), so that a
 *  kernel reads only the buffers its target needs. */
fn targetAt(r: RowSlot, l: Label, c: u32) -> f32 {
  var t = select(0.0, 1.0, c == l.index);
  if (SOFT) { t = targets[at(r, c)]; }
  let eps = p.smoothing;
  return l.scale * classWeight(c) * ((1.0 - eps) * t + eps / f32(p.cols));
}

/** q[c] without a class index's share: w[c] * ((1-eps)*t[c] + eps/C) for probabilities, w[c] for
 *  a class index (whose q[c] is then eps/C times it, plus (1-eps)*w[y] at y, added once per row). */
fn spreadAt(r: RowSlot, c: u32) -> f32 {
  var u = classWeight(c);
  if (SOFT) { u *= (1.0 - p.smoothing) * targets[at(r, c)] + p.smoothing / f32(p.cols); }
  return u;
}

// x: logits [outer, C, inner], target: labels [rows] or probabilities like x, weight: [C]
//   -> out: [rows] per-row loss, statsOut: [rows, 3] (max, log sum exp(x - max), Q),
//      divisorOut: [rows] each row's share of the mean's divisor
@compute @workgroup_size(WG)
fn crossEntropyForward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = rowSlot(wid, nwg, lid);
  let l = rowLabel(r);
  let m = laneMax(r);
  var s = 0.0;
  var u = 0.0;   // sum of spreadAt
  var ux = 0.0;  // sum of spreadAt * (x[c] - x0)
  var x0 = 0.0;  // the row's first logit: large logits (1000 + x) then cancel exactly in the loss
  if (r.cols > 0u) {
    x0 = x[at(r, 0u)];
    for (var c = r.lane; c < r.cols; c += ROW_THREADS) {
      let v = x[at(r, c)];
      let w = spreadAt(r, c);
      s += exp(v - m);
      u += w;
      ux += w * (v - x0);
    }
  }
  let st = rowMerge(vec4f(m, s, u, ux), lid, r.lane);
  if (r.lane == 0u && r.cols > 0u) {
    let logS = log(st.y);
    // Q = sum q[c] and sum q[c] * (x[c] - x0)
    var q = st.z;
    var qx = st.w;
    if (!SOFT) {
      let spread = p.smoothing / f32(p.cols);
      let wy = (1.0 - p.smoothing) * classWeight(l.index);
      q = l.scale * (wy + spread * q);
      qx = l.scale * (wy * (x[at(r, l.index)] - x0) + spread * qx);
    }
    out[r.row] = q * (st.x - x0 + logS) - qx;
    statsOut[3u * r.row] = st.x;
    statsOut[3u * r.row + 1u] = logS;
    statsOut[3u * r.row + 2u] = q;
    divisorOut[r.row] = select(l.scale * classWeight(l.index), 1.0, SOFT);
  }
}

// x, target, weight as the forward; stats: [rows, 3] from it; dLoss: [1] or [rows] (perRow);
// divisor: [1], the mean's divisor -> out: dx like x
@compute @workgroup_size(WG)
fn crossEntropyBackward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = rowSlot(wid, nwg, lid);
  if (r.cols == 0u) { return; }
  let l = rowLabel(r);
  let m = stats[3u * r.row];
  let logS = stats[3u * r.row + 1u];
  let q = stats[3u * r.row + 2u];
  let g = dLoss[select(0u, r.row, p.perRow != 0u)] * p.scale / select(1.0, divisor[0], p.mean != 0u);
  for (var c = r.lane; c < r.cols; c += ROW_THREADS) {
    let i = at(r, c);
    out[i] = (q * exp(x[i] - m - logS) - targetAt(r, l, c)) * g;
  }
}

// lossSum, divisorSum: [1] (the sums of the forward's per-row losses and divisors) -> out: [1], the mean
@compute @workgroup_size(1)
fn crossEntropyMean() {
  out[0] = lossSum[0] / divisorSum[0];
}
