// Batch normalization of x: [N,C,H,W] per channel c, over N, H and W (n = N*H*W values):
//   training: y = (x - mean) * invstd * gamma + beta with the batch mean and biased variance,
//             invstd = 1/sqrt(var + eps); the running stats move toward the batch's (unbiased
//             variance), in place, as torch does;
//   eval:     the same with the running mean and variance.
// Backward, with xhat = (x - mean) * invstd and k = gamma * invstd:
//   dgamma = sum(dy * xhat), dbeta = sum(dy);
//   training: dx = k * (dy - sum(dy)/n - xhat * sum(dy*xhat)/n)  (mean and var depend on x)
//   eval:     dx = k * dy                                         (the stats are constants)
// Every full pass over x is either a per-channel reduction or a per-element affine map with
// per-channel coefficients (channel_affine, for y and for dx = a*dy + b*(x - mean) + c).
// A reduction runs in two kernels: *_partial, a grid of workgroups per channel in which every
// invocation reduces its strided share of one slice of the channel and writes its own partial
// result (no workgroup barrier: barriers are dear on lavapipe, and the partials cost a few % of
// the traffic); then *_finalize, one workgroup per channel merging that channel's partials by a
// tree.
// T is vec4<f32> when H*W is a multiple of 4 (a vec4 then never straddles two planes), else f32.

alias T = {{T}};
const W: u32 = {{W}}u; // lanes of T

override WG: u32 = 256; // workgroup size
override PER: u32 = 4;  // T elements per channel_affine invocation (amortizes its index set-up)

struct Params {
  C: u32,         // channels
  planeVecs: u32, // T elements per (n, c) plane: H*W/W
  items: u32,     // T elements per channel: N*planeVecs
  span: u32,      // T elements per slice of a channel (one reduction workgroup)
  slices: u32,    // slices per channel = partial results per channel
  total: u32,     // T elements of x: N*C*planeVecs
  stepN: u32,     // WG / planeVecs: planes advanced by a step of WG elements ...
  stepK: u32,     // WG % planeVecs: ... plus this many elements
  stepC: u32,     // stepN % C: channels advanced by a step of WG elements of x
  training: u32,    // batch statistics (else the running ones)
  hasGamma: u32,    // affine weight present (else 1)
  hasBeta: u32,     // affine bias present (else 0)
  writeDGamma: u32,
  writeDBeta: u32,
  twoInputs: u32,   // channel_affine reads in1 (else in1 = in0)
  eps: f32,
  momentum: f32,
}

@group(0) @binding(0) var<uniform> p: Params;


// Strided walks advance positions by WG elements with carries instead of a division per element
// (integer division is slow on CPUs, which lavapipe runs on).

// Position (plane n, offset k) of the j-th T element of a channel, planes n = 0..N-1 in order.
fn channel_start(j: u32) -> vec2u {
  let n = j / p.planeVecs;
  return vec2u(n, j - n * p.planeVecs);
}

// The position WG elements further along the channel.
fn channel_next(pos: vec2u) -> vec2u {
  var n = pos.x + p.stepN;
  var k = pos.y + p.stepK;
  if (k >= p.planeVecs) {
    k -= p.planeVecs;
    n += 1u;
  }
  return vec2u(n, k);
}

// Index in x of position pos of channel c.
fn channel_index(c: u32, pos: vec2u) -> u32 {
  return (pos.x * p.C + c) * p.planeVecs + pos.y;
}

// Sum of the lanes of v. A scalar T splats into 4 equal lanes, hence the W/4.
fn lane_sum(v: T) -> f32 {
  let v4 = vec4f(v);
  return (v4.x + v4.y + v4.z + v4.w) * (f32(W) / 4.0);
}

// Chan et al.'s merge of two (count, mean, M2) summaries, M2 = sum((x - mean)^2): stable in f32,
// unlike E[x^2] - E[x]^2.
fn merge_moments(a: vec4f, b: vec4f) -> vec4f {
  if (b.x == 0.0) { return a; }
  let n = a.x + b.x;
  let d = b.y - a.y;
  let f = b.x / n;
  return vec4f(n, a.y + d * f, a.z + b.z + d * d * a.x * f, 0.0);
}

var<workgroup> acc: array<vec4f, WG>;

// Reduces acc[0..WG) into acc[0], for lane 0 to read, by a tree of fan-in 16 (each level is a
// barrier, and barriers are what costs on lavapipe): Chan merges of moments, or plain sums.
fn reduce_workgroup(lid: u32, moments: bool) {
  var n = WG;
  while (n > 1u) {
    workgroupBarrier();
    let m = (n + 15u) / 16u; // lanes that merge acc[lane], acc[lane + m], ... below n
    if (lid < m) {
      var a = acc[lid];
      for (var q = lid + m; q < n; q += m) {
        if (moments) { a = merge_moments(a, acc[q]); } else { a += acc[q]; }
      }
      acc[lid] = a;
    }
    n = m;
  }
}

// ---- forward ----------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read_write> stats_partials: array<vec4f>;
@group(0) @binding(2) var<storage, read> stats_x: array<T>;

// partials: [C, slices, WG] (count, mean, M2, 0) per invocation; x: [N,C,H,W]
// Workgroup (slice, c). Each invocation runs Welford's update over its strided T elements (the
// lanes of a vec4 are four Welford accumulators with one shared count), then merges the lanes.
@compute @workgroup_size(WG)
fn stats_partial(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let slice = wid.x;
  let c = wid.y;
  let end = min((slice + 1u) * p.span, p.items);
  var count = 0.0;
  var mean = T(0.0);
  var m2 = T(0.0);
  var pos = channel_start(slice * p.span + lid);
  for (var j = slice * p.span + lid; j < end; j += WG) {
    let v = stats_x[channel_index(c, pos)];
    pos = channel_next(pos);
    count += 1.0;
    let d = v - mean;
    mean += d / count;
    m2 += d * (v - mean);
  }
  // equal counts per lane, so M2 gains count * the spread of the lane means
  let laneMean = lane_sum(mean) / f32(W);
  let spread = vec4f(mean) - laneMean;
  let laneM2 = lane_sum(m2) + count * dot(spread, spread) * (f32(W) / 4.0);
  stats_partials[(c * p.slices + slice) * WG + lid] = vec4f(count * f32(W), laneMean, laneM2, 0.0);
}

@group(0) @binding(1) var<storage, read_write> fin_saved: array<vec2f>;
@group(0) @binding(2) var<storage, read_write> fin_coef: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> fin_running_mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> fin_running_var: array<f32>;
@group(0) @binding(5) var<storage, read> fin_partials: array<vec4f>;
@group(0) @binding(6) var<storage, read> fin_gamma: array<f32>;
@group(0) @binding(7) var<storage, read> fin_beta: array<f32>;

// saved: [C] (mean, invstd) for the backward; coef: [C] channel_affine coefficients of y;
// running_mean, running_var: [C] (updated in place when training); partials: [C, slices, WG];
// gamma, beta: [C]. One workgroup per channel.
@compute @workgroup_size(WG)
fn stats_finalize(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x + wid.y * nwg.x;
  if (c >= p.C) { return; }
  if (p.training != 0u) {
    var m = vec4f(0.0);
    let first = c * p.slices * WG;
    for (var q = lid; q < p.slices * WG; q += WG) { m = merge_moments(m, fin_partials[first + q]); }
    acc[lid] = m;
    reduce_workgroup(lid, true);
  }
  if (lid != 0u) { return; }
  var mean: f32;
  var variance: f32;
  if (p.training != 0u) {
    let m = acc[0];
    mean = m.y;
    variance = m.z / m.x;
    fin_running_mean[c] = (1.0 - p.momentum) * fin_running_mean[c] + p.momentum * mean;
    fin_running_var[c] = (1.0 - p.momentum) * fin_running_var[c] + p.momentum * m.z / (m.x - 1.0);
  } else {
    mean = fin_running_mean[c];
    variance = fin_running_var[c];
  }
  let invstd = inverseSqrt(variance + p.eps);
  var gamma = 1.0;
  if (p.hasGamma != 0u) { gamma = fin_gamma[c]; }
  var beta = 0.0;
  if (p.hasBeta != 0u) { beta = fin_beta[c]; }
  fin_saved[c] = vec2f(mean, invstd);
  fin_coef[c] = vec4f(0.0, gamma * invstd, beta, mean); // y = gamma*invstd*(x - mean) + beta
}

@group(0) @binding(1) var<storage, read_write> affine_out: array<T>;
@group(0) @binding(2) var<storage, read> affine_coef: array<vec4f>;
@group(0) @binding(3) var<storage, read> affine_in0: array<T>;
@group(0) @binding(4) var<storage, read> affine_in1: array<T>;

// out, in0, in1: [N,C,H,W]; coef: [C] (a, b, c, m)
// out = a*in0 + b*(in1 - m) + c, with in1 = in0 unless TWO_INPUTS. Each invocation maps PER
// elements WG apart, tracking their channel and plane offset by carries.
@compute @workgroup_size(WG)
fn channel_affine(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let first = (wid.x + wid.y * nwg.x) * WG * PER + lid;
  if (first >= p.total) { return; }
  let plane = first / p.planeVecs;
  var k = first - plane * p.planeVecs;
  var c = plane % p.C;
  for (var j = 0u; j < PER; j++) {
    let i = first + j * WG;
    if (i >= p.total) { break; }
    let coef = affine_coef[c];
    let u = affine_in0[i];
    var v = u;
    if (p.twoInputs != 0u) { v = affine_in1[i]; }
    affine_out[i] = coef.x * u + coef.y * (v - coef.w) + coef.z;
    k += p.stepK;
    c += p.stepC;
    if (k >= p.planeVecs) {
      k -= p.planeVecs;
      c += 1u;
    }
    if (c >= p.C) { c -= p.C; }
  }
}

// ---- backward ---------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read_write> grad_partials: array<vec4f>;
@group(0) @binding(2) var<storage, read> grad_dy: array<T>;
@group(0) @binding(3) var<storage, read> grad_x: array<T>;
@group(0) @binding(4) var<storage, read> grad_saved: array<vec2f>;

// partials: [C, slices, WG] (sum(dy), sum(dy*xhat), 0, 0) per invocation; dy, x: [N,C,H,W];
// saved: [C]. Workgroup (slice, c), as stats_partial.
@compute @workgroup_size(WG)
fn grad_partial(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let slice = wid.x;
  let c = wid.y;
  let stats = grad_saved[c];
  let end = min((slice + 1u) * p.span, p.items);
  var sumDy = T(0.0);
  var sumDyCentered = T(0.0);
  var pos = channel_start(slice * p.span + lid);
  for (var j = slice * p.span + lid; j < end; j += WG) {
    let i = channel_index(c, pos);
    pos = channel_next(pos);
    let g = grad_dy[i];
    sumDy += g;
    sumDyCentered += g * (grad_x[i] - stats.x);
  }
  grad_partials[(c * p.slices + slice) * WG + lid] = vec4f(lane_sum(sumDy), lane_sum(sumDyCentered) * stats.y, 0.0, 0.0);
}

@group(0) @binding(1) var<storage, read_write> gfin_coef: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> gfin_dgamma: array<f32>;
@group(0) @binding(3) var<storage, read_write> gfin_dbeta: array<f32>;
@group(0) @binding(4) var<storage, read> gfin_partials: array<vec4f>;
@group(0) @binding(5) var<storage, read> gfin_saved: array<vec2f>;
@group(0) @binding(6) var<storage, read> gfin_gamma: array<f32>;

// coef: [C] channel_affine coefficients of dx (in0 = dy, in1 = x); dgamma, dbeta: [C];
// partials: [C, slices, WG] (none when only an eval-mode dx is wanted); saved: [C]; gamma: [C].
// One workgroup per channel.
@compute @workgroup_size(WG)
fn grad_finalize(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x + wid.y * nwg.x;
  if (c >= p.C) { return; }
  var sums = vec4f(0.0);
  let first = c * p.slices * WG;
  for (var q = lid; q < p.slices * WG; q += WG) { sums += gfin_partials[first + q]; }
  acc[lid] = sums;
  reduce_workgroup(lid, false);
  if (lid != 0u) { return; }
  sums = acc[0];
  if (p.writeDGamma != 0u) { gfin_dgamma[c] = sums.y; }
  if (p.writeDBeta != 0u) { gfin_dbeta[c] = sums.x; }
  let stats = gfin_saved[c];
  var gamma = 1.0;
  if (p.hasGamma != 0u) { gamma = gfin_gamma[c]; }
  let k = gamma * stats.y;
  if (p.training != 0u) {
    let n = f32(p.items * W);
    // k*(dy - sum(dy)/n - (x - mean)*invstd * sum(dy*xhat)/n)
    gfin_coef[c] = vec4f(k, -k * stats.y * sums.y / n, -k * sums.x / n, stats.x);
  } else {
    gfin_coef[c] = vec4f(k, 0.0, 0.0, 0.0);
  }
}
