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
// Small maps (a channel's N*H*W values a few thousand at most) take one kernel per pass instead:
// small_forward and small_backward, at the end of this file.

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
  // small_forward and small_backward only:
  N: u32,         // images
  hw: u32,        // floats per plane: H*W
  group: u32,     // channels per workgroup (the last one may have fewer)
  run: u32,       // vec4s of a full group's run at one image: group*hw/4
  imageVecs: u32, // vec4s of one image: C*hw/4
  nGroups: u32,   // images walked at once: lanes l and l + run take images n and n + 1
  needDx: u32,    // small_backward writes dx
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

// ---- small maps: the whole pass in one kernel per group of channels ----------------------------
// On small maps the launches and the finalize's barrier tree cost as much as the bytes, so a pass
// is one workgroup per group of `group` channels: it reads its channels' values once for the sums,
// folds them per channel, and reads them again (from cache) to write y or dx.
// What is contiguous: a channel's values are N runs of H*W floats, one per image, and the planes of
// consecutive channels at one image follow each other; so a group's values at image n are one run
// of group*H*W floats, whole vec4s when group*H*W and C*H*W divide by 4 (the TypeScript side takes
// this path only then), even for 7x7 planes (four channels, 49 vec4s). Lane l takes vec4 v = l % run
// of the runs of images l / run, + nGroups, ...: each lane of its vec4 belongs to one channel for
// the whole walk, so it sums the four apart and the channels' sums are folded from workgroup memory.
// The statistics are sums shifted by a value of the channel (its first), which keeps
// E[(x-s)^2] - E[x-s]^2 accurate where x's mean is large against its spread, as in Welford's.

@group(0) @binding(1) var<storage, read_write> sf_y: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> sf_saved: array<vec2f>;
@group(0) @binding(3) var<storage, read_write> sf_running_mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> sf_running_var: array<f32>;
@group(0) @binding(5) var<storage, read> sf_x: array<vec4f>;
@group(0) @binding(6) var<storage, read> sf_gamma: array<f32>;
@group(0) @binding(7) var<storage, read> sf_beta: array<f32>;

// per lane: its vec4 sums (two of them); then per channel of the group: what the second walk needs
var<workgroup> lane_sums: array<vec4f, 2u * WG>;

// A workgroup's place: its first channel, its channel count, the vec4 v its lane walks (and the
// first image), whether the lane walks at all, and the channel (of the group) of each lane of v.
struct SmallLane {
  first: u32,
  channels: u32,
  v: u32,
  image: u32,
  live: bool,
  chan: vec4u,
}

fn small_lane(wid: vec3u, nwg: vec3u, lid: u32) -> SmallLane {
  var s: SmallLane;
  s.first = (wid.x + wid.y * nwg.x) * p.group;
  s.channels = min(p.group, p.C - s.first);
  s.v = lid % p.run;
  s.image = lid / p.run;
  s.live = s.image < p.nGroups && 4u * s.v < s.channels * p.hw;
  let f = 4u * s.v;
  s.chan = min(vec4u(f, f + 1u, f + 2u, f + 3u) / p.hw, vec4u(s.channels - 1u));
  return s;
}

// Index in x of lane s's vec4 at image n.
fn small_index(s: SmallLane, n: u32) -> u32 {
  return n * p.imageVecs + s.first * p.hw / 4u + s.v;
}

// The sums of channel t (of the group) from every lane's pair in lane_sums: its floats are
// t*hw .. (t+1)*hw - 1 of each image slot's run, summed a vec4 at a time (the lanes of the two end
// vec4s that belong to the neighbours masked out).
fn fold_channel(t: u32) -> vec2f {
  let lo = t * p.hw;
  let hi = lo + p.hw;
  var a = 0.0;
  var b = 0.0;
  for (var j = lo / 4u; j <= (hi - 1u) / 4u; j++) {
    let f = 4u * j + vec4u(0u, 1u, 2u, 3u);
    let mask = select(vec4f(0.0), vec4f(1.0), (f >= vec4u(lo)) & (f < vec4u(hi)));
    for (var q = 0u; q < p.nGroups; q++) {
      a += dot(lane_sums[q * p.run + j], mask);
      b += dot(lane_sums[WG + q * p.run + j], mask);
    }
  }
  return vec2f(a, b);
}

// The four channels' values of a per-channel vec4 table in acc (component k), as lane s's vec4.
fn gather(s: SmallLane, k: u32) -> vec4f {
  return vec4f(acc[s.chan.x][k], acc[s.chan.y][k], acc[s.chan.z][k], acc[s.chan.w][k]);
}

// y, x: [N,C,H,W] as vec4s; saved: [C] (mean, invstd); running_mean, running_var: [C] (updated in
// place when training); gamma, beta: [C]. Workgroup g: channels g*group ...
@compute @workgroup_size(WG)
fn small_forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  if ((wid.x + wid.y * nwg.x) * p.group >= p.C) { return; } // past the last group (a 2-D grid rounds up)
  let s = small_lane(wid, nwg, lid);
  if (p.training != 0u) {
    var s1 = vec4f(0.0);
    var s2 = vec4f(0.0);
    if (s.live) {
      let f = (s.first + s.chan) * p.hw; // each lane's shift: its channel's first value
      let shift = vec4f(sf_x[f.x / 4u][f.x % 4u], sf_x[f.y / 4u][f.y % 4u], sf_x[f.z / 4u][f.z % 4u], sf_x[f.w / 4u][f.w % 4u]);
      for (var n = s.image; n < p.N; n += p.nGroups) {
        let d = sf_x[small_index(s, n)] - shift;
        s1 += d;
        s2 += d * d;
      }
    }
    lane_sums[lid] = s1;
    lane_sums[WG + lid] = s2;
  }
  workgroupBarrier();
  if (lid < s.channels) {
    let c = s.first + lid;
    var mean: f32;
    var variance: f32;
    if (p.training != 0u) {
      let f = c * p.hw;
      let shift = sf_x[f / 4u][f % 4u];
      let sums = fold_channel(lid);
      let n = f32(p.N * p.hw);
      let d = sums.x / n;
      mean = shift + d;
      let m2 = max(sums.y - sums.x * d, 0.0); // sum((x - mean)^2)
      variance = m2 / n;
      sf_running_mean[c] = (1.0 - p.momentum) * sf_running_mean[c] + p.momentum * mean;
      sf_running_var[c] = (1.0 - p.momentum) * sf_running_var[c] + p.momentum * m2 / (n - 1.0);
    } else {
      mean = sf_running_mean[c];
      variance = sf_running_var[c];
    }
    let invstd = inverseSqrt(variance + p.eps);
    var gamma = 1.0;
    if (p.hasGamma != 0u) { gamma = sf_gamma[c]; }
    var beta = 0.0;
    if (p.hasBeta != 0u) { beta = sf_beta[c]; }
    sf_saved[c] = vec2f(mean, invstd);
    acc[lid] = vec4f(gamma * invstd, mean, beta, 0.0);
  }
  workgroupBarrier();
  if (!s.live) { return; }
  let a = gather(s, 0u);
  let m = gather(s, 1u);
  let b = gather(s, 2u);
  for (var n = s.image; n < p.N; n += p.nGroups) {
    let i = small_index(s, n);
    sf_y[i] = a * (sf_x[i] - m) + b;
  }
}

@group(0) @binding(1) var<storage, read_write> sb_dx: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> sb_dgamma: array<f32>;
@group(0) @binding(3) var<storage, read_write> sb_dbeta: array<f32>;
@group(0) @binding(4) var<storage, read> sb_dy: array<vec4f>;
@group(0) @binding(5) var<storage, read> sb_x: array<vec4f>;
@group(0) @binding(6) var<storage, read> sb_saved: array<vec2f>;
@group(0) @binding(7) var<storage, read> sb_gamma: array<f32>;

// dx, dy, x: [N,C,H,W] as vec4s; dgamma, dbeta: [C]; saved: [C] (mean, invstd); gamma: [C].
// Workgroup g: channels g*group ..., as small_forward: the sums of dy and dy*(x - mean) (when
// training or when dgamma or dbeta is wanted), then dx = a*dy + b*(x - mean) + c.
@compute @workgroup_size(WG)
fn small_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  if ((wid.x + wid.y * nwg.x) * p.group >= p.C) { return; } // past the last group (a 2-D grid rounds up)
  let s = small_lane(wid, nwg, lid);
  let c = s.first + s.chan;
  let mean = vec4f(sb_saved[c.x].x, sb_saved[c.y].x, sb_saved[c.z].x, sb_saved[c.w].x);
  let reduce = p.training != 0u || p.writeDGamma != 0u || p.writeDBeta != 0u;
  if (reduce) {
    var s1 = vec4f(0.0);
    var s2 = vec4f(0.0);
    if (s.live) {
      for (var n = s.image; n < p.N; n += p.nGroups) {
        let i = small_index(s, n);
        let g = sb_dy[i];
        s1 += g;
        s2 += g * (sb_x[i] - mean);
      }
    }
    lane_sums[lid] = s1;
    lane_sums[WG + lid] = s2;
  }
  workgroupBarrier();
  if (lid < s.channels) {
    let ch = s.first + lid;
    let invstd = sb_saved[ch].y;
    var sums = vec2f(0.0); // sum(dy), sum(dy*(x - mean))
    if (reduce) { sums = fold_channel(lid); }
    if (p.writeDGamma != 0u) { sb_dgamma[ch] = sums.y * invstd; }
    if (p.writeDBeta != 0u) { sb_dbeta[ch] = sums.x; }
    var gamma = 1.0;
    if (p.hasGamma != 0u) { gamma = sb_gamma[ch]; }
    let k = gamma * invstd;
    var coef = vec4f(k, 0.0, 0.0, 0.0); // eval: dx = k*dy
    if (p.training != 0u) {
      // k*(dy - sum(dy)/n - (x - mean)*invstd^2 * sum(dy*(x - mean))/n)
      let n = f32(p.N * p.hw);
      coef = vec4f(k, -k * invstd * invstd * sums.y / n, -k * sums.x / n, 0.0);
    }
    acc[lid] = coef;
  }
  workgroupBarrier();
  if (p.needDx == 0u || !s.live) { return; }
  let a = gather(s, 0u);
  let b = gather(s, 1u);
  let k = gather(s, 2u);
  for (var n = s.image; n < p.N; n += p.nGroups) {
    let i = small_index(s, n);
    var dx = a * sb_dy[i] + k;
    if (p.training != 0u) { dx += b * (sb_x[i] - mean); }
    sb_dx[i] = dx;
  }
}
