// 2-D pooling of x: [N,C,H,W] (torch max_pool2d, avg_pool2d, adaptive_avg_pool2d(x, 1)).
// Window (oh, ow) has KH taps on the rows oh*SH - PH + kh*DIL_H, kh < KH (columns alike; dilation
// 1 but for max pooling), clipped to the image; padding never wins a max (it is -inf) and counts in
// an average's divisor only with countIncludePad, and then only up to the padded extent H + PH, as
// torch.
// Backward kernels are gathers, each input element summing the dy of the windows that cover it,
// so no float atomics are needed:
//   max: dx[i] = sum of dy[o] over windows o whose argmax (saved by the forward) is i;
//   avg: dx[i] = sum of dy[o] / divisor(o) over windows o covering i;
//   global average: dx[i] = dy[plane of i] / (H*W).
// The windowed kernels give each invocation a tile of ROWS rows x 4 columns (of outputs forward,
// of inputs backward): neighbouring windows share their loads and index arithmetic, and the 4
// columns are one vec4 of compares and selects.

struct Params {
  H: u32,
  W: u32,
  OH: u32,
  OW: u32,
  KH: u32,
  KW: u32,
  SH: u32,
  SW: u32,
  PH: u32,
  PW: u32,
  planes: u32,           // N*C
  countIncludePad: u32,  // avg: padding counts in the divisor
  saveArgmax: u32,       // max: the backward will need the argmax
}

override TX: u32 = 16; // tiles per workgroup along a row
override TY: u32 = 16; // tiles per workgroup down a column
override DIL_H: u32 = 1; // max pooling: rows between a window's taps (a constant: 1 costs nothing)
override DIL_W: u32 = 1; // and columns
const ROWS = 2u;       // rows of a tile (its columns: 4)

@group(0) @binding(0) var<uniform> p: Params;


// (plane, row, column) of the first element of the tile of invocation lid, in an image of `rows`
// rows. Workgroups are (column block, flat (plane, row block)), the flat index folded into y and
// z past 65535 (see grid() in src/gpu/gpu.ts); divisions involve only workgroup-uniform values.
fn tile_origin(wid: vec3u, nwg: vec3u, lid: vec3u, rows: u32) -> vec3u {
  let rowBlocks = (rows + ROWS * TY - 1u) / (ROWS * TY);
  let flat = wid.y + wid.z * nwg.y;
  let plane = flat / rowBlocks;
  return vec3u(plane, ((flat - plane * rowBlocks) * TY + lid.y) * ROWS, (wid.x * TX + lid.x) * 4u);
}

// Start of window o along one dimension (in the padding when negative).
fn window_start(o: u32, stride: u32, pad: u32) -> i32 {
  return i32(o * stride) - i32(pad);
}

// Positions a window of k taps, d apart, spans along one dimension.
fn span(k: u32, d: u32) -> u32 {
  return (k - 1u) * d + 1u;
}

// The first tap at or past position 0 of each of 4 windows starting at `start`, taps d apart.
fn first_tap(start: vec4i, d: u32) -> vec4i {
  let di = i32(d);
  return select(start, start + ((di - 1 - start) / di) * di, start < vec4i(0));
}

// Elements along one dimension of the window starting at `start` that an average divides by.
fn window_count(start: i32, k: u32, size: u32, pad: u32) -> i32 {
  let end = start + i32(k);
  if (p.countIncludePad != 0u) { return min(end, i32(size + pad)) - start; }
  return min(end, i32(size)) - max(start, 0);
}

// Windows along one dimension that cover input position i: [first, end).
fn windows_over(i: u32, stride: u32, pad: u32, k: u32, outSize: u32) -> vec2u {
  let padded = i + pad;
  var first = 0u;
  if (padded >= k) { first = (padded - k) / stride + 1u; }
  return vec2u(first, min(padded / stride + 1u, outSize));
}

// Whether each of 4 positions is a tap of the window starting at `start` (k taps, d apart).
fn inside(pos: vec4i, start: vec4i, k: u32, d: u32) -> vec4<bool> {
  let off = pos - start;
  return (off >= vec4i(0)) & (off < vec4i(i32(span(k, d)))) & (off % vec4i(i32(d)) == vec4i(0));
}

// ---- forward ------------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read_write> max_out: array<f32>;
@group(0) @binding(2) var<storage, read_write> max_argmax: array<u32>;
@group(0) @binding(3) var<storage, read> max_x: array<f32>;

// out, argmax: [N,C,OH,OW] (argmax: h*W + w within the plane, the first maximum in row-major
// order, as torch); x: [N,C,H,W]. One invocation per output tile: it walks the input rectangle
// its windows cover once, each element updating the windows that contain it.
@compute @workgroup_size(TX, TY)
fn max_forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let t = tile_origin(wid, nwg, lid, p.OH);
  if (t.x >= p.planes || t.y >= p.OH || t.z >= p.OW) { return; }
  let base = t.x * p.H * p.W;
  let colStart = window_start(t.z, p.SW, p.PW) + vec4i(0, 1, 2, 3) * i32(p.SW);
  let rowStart = window_start(t.y, p.SH, p.PH);
  // start from each window's first tap in the image (clamped for tile columns past OW, never written)
  let firstCol = vec4u(clamp(first_tap(colStart, DIL_W), vec4i(0), vec4i(i32(p.W) - 1)));
  var best: array<vec4f, ROWS>;
  var arg: array<vec4u, ROWS>;
  for (var r = 0u; r < ROWS; r++) {
    arg[r] = u32(clamp(first_tap(vec4i(rowStart + i32(r * p.SH)), DIL_H).x, 0, i32(p.H) - 1)) * p.W + firstCol;
    best[r] = vec4f(max_x[base + arg[r].x], max_x[base + arg[r].y], max_x[base + arg[r].z], max_x[base + arg[r].w]);
  }
  let rowEnd = min(rowStart + i32((ROWS - 1u) * p.SH + span(p.KH, DIL_H)), i32(p.H));
  let colEnd = min(colStart.w + i32(span(p.KW, DIL_W)), i32(p.W));
  for (var h = max(rowStart, 0); h < rowEnd; h++) {
    for (var w = max(colStart.x, 0); w < colEnd; w++) {
      let at = u32(h) * p.W + u32(w);
      let v = vec4f(max_x[base + at]);
      let inCols = inside(vec4i(w), colStart, p.KW, DIL_W);
      for (var r = 0u; r < ROWS; r++) {
        // a larger value or a NaN takes the window, as torch
        let better = inCols & inside(vec4i(h), vec4i(rowStart + i32(r * p.SH)), p.KH, DIL_H) & ((v > best[r]) | (v != v));
        best[r] = select(best[r], v, better);
        arg[r] = select(arg[r], vec4u(at), better);
      }
    }
  }
  for (var r = 0u; r < ROWS; r++) {
    if (t.y + r >= p.OH) { break; }
    let o = (t.x * p.OH + t.y + r) * p.OW + t.z;
    for (var j = 0u; j < min(4u, p.OW - t.z); j++) {
      max_out[o + j] = best[r][j];
      if (p.saveArgmax != 0u) { max_argmax[o + j] = arg[r][j]; }
    }
  }
}

@group(0) @binding(1) var<storage, read_write> max4_out: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> max4_argmax: array<vec4u>;
@group(0) @binding(3) var<storage, read> max4_x: array<vec4f>;

// -inf (a var: WGSL's constant evaluation refuses an infinite f32)
fn neg_inf() -> f32 {
  var bits = 0xff800000u;
  return bitcast<f32>(bits);
}

// The vec4 of input row `row4` (an index into max4_x) at vec4 column q, or -inf outside the image.
fn max4_chunk(row4: u32, q: i32) -> vec4f {
  if (q < 0 || q >= i32(p.W / 4u)) { return vec4f(neg_inf()); }
  return max4_x[row4 + u32(q)];
}

// Tap v (one value per window of the row of 4) at plane positions `at`, visited in row-major order
// within each window: a larger value or a NaN takes the window, as torch.
fn max4_tap(best: ptr<function, vec4f>, arg: ptr<function, vec4u>, v: vec4f, at: vec4i) {
  let better = (v > *best) | (v != v);
  *best = select(*best, v, better);
  *arg = select(*arg, vec4u(at), better);
}

// out, argmax: [N,C,OH,OW]; x: [N,C,H,W], with W and OW multiples of 4. max_forward with vec4s:
// each input row a tile's windows touch is loaded once as the aligned vec4s covering its columns,
// and each tap of the 4 windows of a tile row is one vec4 swizzled from them. The loads and taps
// are written out for the window's geometry by src/ops/pool.ts (maxPoolVec4Taps), so every vec4
// and lane index is a constant: the text substituted below declares best0.., arg0.. (one per
// tile row), runs the taps and stores; rowStart, q0 and at0 are the tile's first window row, the vec4 column of its
// first window's column base (t.z * SW) and that column's plane index.
@compute @workgroup_size(TX, TY)
fn max_forward_vec4(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let t = tile_origin(wid, nwg, lid, p.OH);
  if (t.x >= p.planes || t.y >= p.OH || t.z >= p.OW) { return; }
  let rowStart = window_start(t.y, p.SH, p.PH);
  let colStart = window_start(t.z, p.SW, p.PW) + vec4i(0, 1, 2, 3) * i32(p.SW);
  // a window with no larger value keeps its first tap inside the image, as torch
  let firstCol = vec4u(clamp(first_tap(colStart, DIL_W), vec4i(0), vec4i(i32(p.W) - 1)));
  let plane4 = t.x * p.H * (p.W / 4u);
  let q0 = i32(t.z * p.SW / 4u);
  let colBase = t.z * p.SW;
  {{MAX4_TAPS}}
}

@group(0) @binding(1) var<storage, read_write> avg_out: array<f32>;
@group(0) @binding(2) var<storage, read> avg_x: array<f32>;

// out: [N,C,OH,OW]; x: [N,C,H,W]. One invocation per output tile, as max_forward.
@compute @workgroup_size(TX, TY)
fn avg_forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let t = tile_origin(wid, nwg, lid, p.OH);
  if (t.x >= p.planes || t.y >= p.OH || t.z >= p.OW) { return; }
  let base = t.x * p.H * p.W;
  let colStart = window_start(t.z, p.SW, p.PW) + vec4i(0, 1, 2, 3) * i32(p.SW);
  let rowStart = window_start(t.y, p.SH, p.PH);
  var sum: array<vec4f, ROWS>;
  let rowEnd = min(rowStart + i32((ROWS - 1u) * p.SH + p.KH), i32(p.H));
  let colEnd = min(colStart.w + i32(p.KW), i32(p.W));
  for (var h = max(rowStart, 0); h < rowEnd; h++) {
    for (var w = max(colStart.x, 0); w < colEnd; w++) {
      let v = vec4f(avg_x[base + u32(h) * p.W + u32(w)]);
      let inCols = inside(vec4i(w), colStart, p.KW, 1u);
      for (var r = 0u; r < ROWS; r++) {
        sum[r] += select(vec4f(0.0), v, inCols & inside(vec4i(h), vec4i(rowStart + i32(r * p.SH)), p.KH, 1u));
      }
    }
  }
  for (var r = 0u; r < ROWS; r++) {
    if (t.y + r >= p.OH) { break; }
    let o = (t.x * p.OH + t.y + r) * p.OW + t.z;
    let rowCount = window_count(rowStart + i32(r * p.SH), p.KH, p.H, p.PH);
    for (var j = 0u; j < min(4u, p.OW - t.z); j++) {
      avg_out[o + j] = sum[r][j] / f32(rowCount * window_count(colStart[j], p.KW, p.W, p.PW));
    }
  }
}

// ---- backward -----------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read_write> maxgrad_dx: array<f32>;
@group(0) @binding(2) var<storage, read> maxgrad_dy: array<f32>;
@group(0) @binding(3) var<storage, read> maxgrad_argmax: array<u32>;

// dx: [N,C,H,W]; dy, argmax: [N,C,OH,OW]. One invocation per input tile, visiting every window
// whose span covers some element of it once (the argmax picks out the taps).
@compute @workgroup_size(TX, TY)
fn max_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let t = tile_origin(wid, nwg, lid, p.H);
  if (t.x >= p.planes || t.y >= p.H || t.z >= p.W) { return; }
  let outBase = t.x * p.OH * p.OW;
  let spanH = span(p.KH, DIL_H);
  let spanW = span(p.KW, DIL_W);
  let rows = vec2u(windows_over(t.y, p.SH, p.PH, spanH, p.OH).x, windows_over(min(t.y + ROWS - 1u, p.H - 1u), p.SH, p.PH, spanH, p.OH).y);
  let cols = vec2u(windows_over(t.z, p.SW, p.PW, spanW, p.OW).x, windows_over(min(t.z + 3u, p.W - 1u), p.SW, p.PW, spanW, p.OW).y);
  let tileCols = t.z + vec4u(0u, 1u, 2u, 3u);
  var sum: array<vec4f, ROWS>;
  for (var oh = rows.x; oh < rows.y; oh++) {
    for (var ow = cols.x; ow < cols.y; ow++) {
      let o = outBase + oh * p.OW + ow;
      let winner = vec4u(maxgrad_argmax[o]);
      let g = vec4f(maxgrad_dy[o]);
      for (var r = 0u; r < ROWS; r++) {
        sum[r] += select(vec4f(0.0), g, winner == (t.y + r) * p.W + tileCols);
      }
    }
  }
  for (var r = 0u; r < ROWS; r++) {
    if (t.y + r >= p.H) { break; }
    let i = (t.x * p.H + t.y + r) * p.W + t.z;
    for (var j = 0u; j < min(4u, p.W - t.z); j++) { maxgrad_dx[i + j] = sum[r][j]; }
  }
}

@group(0) @binding(1) var<storage, read_write> maxgrad4_dx: array<vec4f>;

// dx: [N,C,H,W] as vec4s; dy, argmax: [N,C,OH,OW] (maxgrad_dy, maxgrad_argmax). max_backward for
// W a multiple of 4 and tiles whose origins are multiples of the strides: the windows that can
// cover a tile then sit at fixed offsets from (t.y / SH, t.z / SW), and src/ops/pool.ts
// (maxPoolVec4Grads) writes out, for each, its guarded loads and the compares of the tile rows
// it covers; the text substituted below also stores the tile rows as vec4s.
@compute @workgroup_size(TX, TY)
fn max_backward_vec4(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let t = tile_origin(wid, nwg, lid, p.H);
  if (t.x >= p.planes || t.y >= p.H || t.z >= p.W) { return; }
  let planeOut = t.x * p.OH;
  {{MAX4_GRADS}}
}

@group(0) @binding(1) var<storage, read_write> avggrad_dx: array<f32>;
@group(0) @binding(2) var<storage, read> avggrad_dy: array<f32>;

// dx: [N,C,H,W]; dy: [N,C,OH,OW]. One invocation per input tile, as max_backward.
@compute @workgroup_size(TX, TY)
fn avg_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let t = tile_origin(wid, nwg, lid, p.H);
  if (t.x >= p.planes || t.y >= p.H || t.z >= p.W) { return; }
  let outBase = t.x * p.OH * p.OW;
  let rows = vec2u(windows_over(t.y, p.SH, p.PH, p.KH, p.OH).x, windows_over(min(t.y + ROWS - 1u, p.H - 1u), p.SH, p.PH, p.KH, p.OH).y);
  let cols = vec2u(windows_over(t.z, p.SW, p.PW, p.KW, p.OW).x, windows_over(min(t.z + 3u, p.W - 1u), p.SW, p.PW, p.KW, p.OW).y);
  let tileCols = vec4i(t.z + vec4u(0u, 1u, 2u, 3u));
  var sum: array<vec4f, ROWS>;
  for (var oh = rows.x; oh < rows.y; oh++) {
    let rowStart = window_start(oh, p.SH, p.PH);
    let rowCount = window_count(rowStart, p.KH, p.H, p.PH);
    for (var ow = cols.x; ow < cols.y; ow++) {
      let colStart = window_start(ow, p.SW, p.PW);
      let g = vec4f(avggrad_dy[outBase + oh * p.OW + ow] / f32(rowCount * window_count(colStart, p.KW, p.W, p.PW)));
      let inCols = inside(tileCols, vec4i(colStart), p.KW, 1u);
      for (var r = 0u; r < ROWS; r++) {
        sum[r] += select(vec4f(0.0), g, inCols & inside(vec4i(i32(t.y + r)), vec4i(rowStart), p.KH, 1u));
      }
    }
  }
  for (var r = 0u; r < ROWS; r++) {
    if (t.y + r >= p.H) { break; }
    let i = (t.x * p.H + t.y + r) * p.W + t.z;
    for (var j = 0u; j < min(4u, p.W - t.z); j++) { avggrad_dx[i + j] = sum[r][j]; }
  }
}

// ---- global average -----------------------------------------------------------------------------

override LANES: u32 = 4; // invocations per plane, a power of two <= 256

var<workgroup> partial: array<f32, 256>;

@group(0) @binding(1) var<storage, read_write> global_out: array<f32>;
@group(0) @binding(2) var<storage, read> global_x: array<f32>;

// out: [N*C] (= [N,C,1,1]); x: [N,C,H,W]. LANES invocations per plane sum strided elements
// (adjacent lanes read adjacent addresses), then a tree over the plane's lanes.
@compute @workgroup_size(256)
fn global_avg_forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let plane = ((wid.x + wid.y * nwg.x) * 256u + lid) / LANES;
  let lane = lid % LANES;
  let size = p.H * p.W;
  var sum = 0.0;
  if (plane < p.planes) {
    for (var i = lane; i < size; i += LANES) { sum += global_x[plane * size + i]; }
  }
  partial[lid] = sum;
  for (var d = LANES / 2u; d > 0u; d >>= 1u) {
    workgroupBarrier();
    if (lane < d) { partial[lid] += partial[lid + d]; }
  }
  if (lane == 0u && plane < p.planes) { global_out[plane] = partial[lid] / f32(size); }
}

@group(0) @binding(1) var<storage, read_write> globalgrad_dx: array<f32>;
@group(0) @binding(2) var<storage, read> globalgrad_dy: array<f32>;

// dx: [N,C,H,W]; dy: [N*C]. LANES invocations per plane write its elements, strided.
@compute @workgroup_size(256)
fn global_avg_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let plane = ((wid.x + wid.y * nwg.x) * 256u + lid) / LANES;
  if (plane >= p.planes) { return; }
  let size = p.H * p.W;
  let g = globalgrad_dy[plane] / f32(size);
  for (var i = lid % LANES; i < size; i += LANES) { globalgrad_dx[plane * size + i] = g; }
}
