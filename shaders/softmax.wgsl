// Softmax over the last dimension, and the fused softmax-cross-entropy loss.
//   softmax:  y[n,c] = exp(x[n,c] - m_n) / s_n,  m_n = max_c x[n,c],  s_n = sum_c exp(x[n,c] - m_n)
//             backward: dx = y * (dy - sum_c dy*y)
//   cross-entropy with label smoothing eps, target t[n,c] = (1-eps)*[c == label_n] + eps/C:
//             loss_n = -sum_c t[n,c] * log y[n,c] = lse_n - (1-eps)*x[n,label_n] - eps/C * sum_c x[n,c]
//             with lse_n = m_n + log s_n; backward: dx = (y - t) * dLoss * scale (scale = 1/N for mean),
//             t computed in place from the label, never stored as a one-hot.
//
// Row kernels: ROW_THREADS invocations (a power of two) share one row, so short rows (C = 10) do not
// idle a whole workgroup and long ones (C = 1000) are spread over many lanes. Each invocation
// folds its strided columns into (max, sum of exp(x - max), sum of (x - x0)) in two passes over
// its own elements (one exp per element), then the row's invocations merge these triples in a
// shared-memory tree (online-softmax merging, one tree instead of a max tree and a sum tree).

override WG: u32 = 256;          // invocations per workgroup, a power of two
override ROW_THREADS: u32 = 32;  // invocations per row, a power of two <= WG

const LOWEST = -0x1.fffffep+127f; // the max of no elements: exp(LOWEST - m) is 0, unlike -inf - -inf

struct Params {
  rows: u32,       // N
  cols: u32,       // C
  smoothing: f32,  // label smoothing eps
  scale: f32,      // 1/N for the mean reduction, 1 for the sum
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;                   // softmaxBackward
@group(0) @binding(3) var<storage, read> dy: array<f32>;                  // softmaxBackward
@group(0) @binding(3) var<storage, read> labels: array<u32>;              // cross-entropy
@group(0) @binding(4) var<storage, read_write> statsOut: array<vec2f>;    // crossEntropyForward
@group(0) @binding(4) var<storage, read> stats: array<vec2f>;             // crossEntropyBackward
@group(0) @binding(5) var<storage, read> dLoss: array<f32>;               // crossEntropyBackward

var<workgroup> scratch: array<vec3f, WG>;

/** Where an invocation works: its row, its lane within the row, and the row's first element. */
struct RowSlot {
  row: u32,
  lane: u32,
  base: u32,
  cols: u32,  // columns to visit: 0 for the padding rows past N (they still join the barriers)
}

fn rowSlot(wid: vec3u, nwg: vec3u, lid: u32) -> RowSlot {
  let row = (wid.x + wid.y * nwg.x) * (WG / ROW_THREADS) + lid / ROW_THREADS;
  return RowSlot(row, lid % ROW_THREADS, row * p.cols, select(0u, p.cols, row < p.rows));
}

/** Combines the triples of two disjoint parts of a row. */
fn merge(a: vec3f, b: vec3f) -> vec3f {
  let m = max(a.x, b.x);
  return vec3f(m, a.y * exp(a.x - m) + b.y * exp(b.x - m), a.z + b.z);
}

/** Merges the triples of each row's ROW_THREADS invocations; every one of them gets the result. */
fn rowMerge(v: vec3f, lid: u32, lane: u32) -> vec3f {
  scratch[lid] = v;
  workgroupBarrier();
  for (var s = ROW_THREADS / 2u; s > 0u; s >>= 1u) {
    if (lane < s) { scratch[lid] = merge(scratch[lid], scratch[lid + s]); }
    workgroupBarrier();
  }
  return scratch[lid - lane];
}

/** (max, sum of exp(x - max), sum of (x - x0)) of the row; x0 = the row's first logit, so that
 *  large logits (1000 + x) cancel exactly in the loss instead of after rounding. */
fn rowStats(r: RowSlot, lid: u32) -> vec3f {
  var m = LOWEST;
  for (var c = r.lane; c < r.cols; c += ROW_THREADS) { m = max(m, x[r.base + c]); }
  var s = 0.0;
  var t = 0.0;
  if (r.cols > 0u) {
    let x0 = x[r.base];
    for (var c = r.lane; c < r.cols; c += ROW_THREADS) {
      let v = x[r.base + c];
      s += exp(v - m);
      t += v - x0;
    }
  }
  return rowMerge(vec3f(m, s, t), lid, r.lane);
}

// x: [N,C] -> out: [N,C] = softmax(x) over C
@compute @workgroup_size(WG)
fn softmaxForward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = rowSlot(wid, nwg, lid);
  let st = rowStats(r, lid);
  for (var c = r.lane; c < r.cols; c += ROW_THREADS) { out[r.base + c] = exp(x[r.base + c] - st.x) / st.y; }
}

// y: [N,C] (the forward's output), dy: [N,C] -> out: [N,C] = y * (dy - sum_c dy*y)
@compute @workgroup_size(WG)
fn softmaxBackward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = rowSlot(wid, nwg, lid);
  var dot = 0.0;
  for (var c = r.lane; c < r.cols; c += ROW_THREADS) { dot += dy[r.base + c] * y[r.base + c]; }
  // the dot product rides on the same tree: with both maxima 0, merge adds the middle terms exactly
  let total = rowMerge(vec3f(0.0, dot, 0.0), lid, r.lane).y;
  for (var c = r.lane; c < r.cols; c += ROW_THREADS) {
    let i = r.base + c;
    out[i] = y[i] * (dy[i] - total);
  }
}

// x: [N,C] logits, labels: [N] -> out: [N] per-row loss, statsOut: [N] (max, log sum exp(x - max))
@compute @workgroup_size(WG)
fn crossEntropyForward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = rowSlot(wid, nwg, lid);
  let st = rowStats(r, lid);
  if (r.lane == 0u && r.cols > 0u) {
    let logS = log(st.y);
    let x0 = x[r.base];
    let eps = p.smoothing;
    // lse - (1-eps)*x_label - eps/C * sum x, each term taken relative to x0
    out[r.row] = (st.x - x0 + logS) - (1.0 - eps) * (x[r.base + labels[r.row]] - x0) - eps * st.z / f32(p.cols);
    statsOut[r.row] = vec2f(st.x, logS);
  }
}

// x: [N,C], labels: [N], stats: [N] (max, log sum exp), dLoss: [1] -> out: [N,C] = (softmax(x) - t) * dLoss * scale
@compute @workgroup_size(WG)
fn crossEntropyBackward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = rowSlot(wid, nwg, lid);
  if (r.cols == 0u) { return; }
  let st = stats[r.row];
  let label = labels[r.row];
  let g = dLoss[0] * p.scale;
  let eps = p.smoothing;
  for (var c = r.lane; c < r.cols; c += ROW_THREADS) {
    let t = select(0.0, 1.0 - eps, c == label) + eps / f32(p.cols); // smoothed target
    out[r.base + c] = (exp(x[r.base + c] - st.x - st.y) - t) * g;
  }
}
