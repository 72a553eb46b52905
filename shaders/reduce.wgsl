// Reductions over any set of axes: sum (and mean, a scaled sum) and max (torch.amax), forward and
// backward (src/ops/reduce.ts).
//
// x's dimensions are merged (src/tensor/layout.ts, coalesce) into at most 4 kept groups and 4
// reduced groups, each with its size and stride in x, innermost first: [N,C,H,W] over axes 1 and 3
// keeps H (stride W) and N (stride CHW) and reduces W (stride 1) and C (stride HW); over axes 0,
// 2, 3 it keeps C and reduces H*W (one group) and N. Output o and reduced index r (row-major over
// the kept, resp. reduced, groups) address x[base(o) + offset(r)]; the output is [O] = the kept
// dims in order.
//
// Forward: each output's R reduced elements are split into `slices` (one per workgroup row, when
// there are few outputs and many elements: a second launch over the [O, slices] partial results
// finishes them), and each slice over `lanes` invocations, which fold their strided share and then
// merge by a shared-memory tree. A workgroup holds WG / lanes outputs. src/ops/reduce.ts picks
// lanes and slices per adapter: on a GPU many lanes per output; on lavapipe (barriers are dear)
// one lane per output unless there are too few outputs to fill the cores.
// Consecutive invocations take consecutive reduced elements when the innermost group is reduced
// (a row reduction) and consecutive outputs otherwise (a column reduction): loads stay contiguous.
//
// max keeps, with the maximum, how many elements reach it: torch.amax's gradient is shared evenly
// among tied maxima, dx = [x == max] * dy / count. NaN propagates, as in torch.
// Backward (both ops): the same walk, writing every element of dx once:
//   sum: dx = dy[o] * scale;  max: dx = x == max[o] ? dy[o] / count[o] : 0.
//
// T is vec4<f32> when the innermost group is a multiple of 4 long, and the walk counts vec4s (every
// size and stride in it divided by 4): vector loads are twice as fast on lavapipe and no slower on
// GPUs. If that group is reduced, a vec4's lanes fold into one output (reduce); if it is kept, a
// vec4 holds 4 consecutive outputs (reduceColumns). Else f32.

alias T = {{T}};
alias U = {{U}}; // T's shape in u32, for NaN tests
const W = {{W}}u; // lanes of T

override WG: u32 = 256;        // invocations per workgroup, a power of two
override IS_MAX: bool = false; // max with tie counts (else a sum)
override COUNTED: bool = false; // x_count holds the tie counts of a first pass (else each x counts 1)

struct Params {
  outputs: u32,       // O
  reduced: u32,       // R, reduced elements per output
  slices: u32,        // slices of R (partial results per output)
  span: u32,          // reduced elements per slice
  lanes: u32,         // invocations per (output, slice), a power of two dividing WG
  outputFastest: u32, // consecutive invocations take consecutive outputs (else consecutive r)
  k0: u32,            // sizes of kept groups 0..2 (group 3 takes what remains of o)
  k1: u32,
  k2: u32,
  ks0: u32,           // strides in x of kept groups 0..3
  ks1: u32,
  ks2: u32,
  ks3: u32,
  r0: u32,            // sizes of reduced groups 0..2 (group 3 takes what remains of r)
  r1: u32,
  r2: u32,
  rs0: u32,           // strides in x of reduced groups 0..3
  rs1: u32,
  rs2: u32,
  rs3: u32,
  scale: f32,         // multiplies the result (1/R for mean) or dy (backward)
}

@group(0) @binding(0) var<uniform> p: Params;

// digits of i in the mixed radix (d0, d1, d2, rest), innermost first
fn digits(i: u32, d0: u32, d1: u32, d2: u32) -> vec4u {
  let q0 = i / d0;
  let q1 = q0 / d1;
  let q2 = q1 / d2;
  return vec4u(i - q0 * d0, q0 - q1 * d1, q1 - q2 * d2, q2);
}

// offset in x of output o's first element
fn kept_offset(o: u32) -> u32 {
  return dot(digits(o, p.k0, p.k1, p.k2), vec4u(p.ks0, p.ks1, p.ks2, p.ks3));
}

// digits of reduced index r over the reduced groups
fn reduced_digits(r: u32) -> vec4u {
  return digits(r, p.r0, p.r1, p.r2);
}

// pos + step (both digit vectors) with carries: a division-free walk (integer division is slow on
// the CPUs lavapipe runs on). One subtraction per digit suffices, as both digits are below the size.
fn advance(pos: vec4u, step: vec4u) -> vec4u {
  var d = pos + step;
  if (d.x >= p.r0) { d.x -= p.r0; d.y += 1u; }
  if (d.y >= p.r1) { d.y -= p.r1; d.z += 1u; }
  if (d.z >= p.r2) { d.z -= p.r2; d.w += 1u; }
  return d;
}

// The elements a lane visits: output o's reduced elements start, start + lanes, ... below end.
struct Walk {
  base: u32,
  pos: vec4u,
  step: vec4u,
  strides: vec4u,
  start: u32,
  end: u32,
}

// Which output, slice and lane an invocation serves; valid is false past the last output.
struct Lane {
  o: u32,
  slice: u32,
  s: u32,
  slot: u32, // its place in the workgroup's shared array: lanes of one output are adjacent
  valid: bool,
}

fn lane_of(wid: vec3u, nwg: vec3u, lid: u32) -> Lane {
  let perGroup = WG / p.lanes;
  let blocks = (p.outputs + perGroup - 1u) / perGroup;
  let flat = wid.x + wid.y * nwg.x;
  let slice = flat / blocks;
  var g: u32;
  var s: u32;
  if (p.outputFastest == 1u) {
    g = lid % perGroup;
    s = lid / perGroup;
  } else {
    g = lid / p.lanes;
    s = lid % p.lanes;
  }
  let o = (flat - slice * blocks) * perGroup + g;
  return Lane(o, slice, s, g * p.lanes + s, o < p.outputs && slice < p.slices);
}

fn walk_of(l: Lane) -> Walk {
  let first = l.slice * p.span;
  return Walk(kept_offset(l.o), reduced_digits(first + l.s), reduced_digits(p.lanes), vec4u(p.rs0, p.rs1, p.rs2, p.rs3),
              first + l.s, min(first + p.span, p.reduced));
}

// A lane's running result, per lane of T: the sum (c unused) or the max and how many reach it
// (count 0 is "no element yet": a lane may get none).
struct Acc {
  v: T,
  c: T,
}

// NaN tests on the bits: a compiler may assume that v != v never holds (WGSL lets it)
fn is_nan(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// a combined with b (element(s) counted b.c times, or another lane's result). NaN propagates, as in
// torch.
fn fold(a: Acc, b: Acc) -> Acc {
  if (!IS_MAX) { return Acc(a.v + b.v, a.c); }
  let keep = (bitcast<U>(a.v) & U(0x7fffffffu)) > U(0x7f800000u); // a NaN stays
  let bNaN = (bitcast<U>(b.v) & U(0x7fffffffu)) > U(0x7f800000u);
  let take = !keep & (b.c != T(0.0)) & ((a.c == T(0.0)) | bNaN | (b.v > a.v));
  let tie = !keep & !take & (b.v == a.v);
  return Acc(select(a.v, b.v, take), select(select(a.c, a.c + b.c, tie), b.c, take));
}

// The lanes of a T folded into one (value, count) pair, as fold() does.
fn fold_lanes(a: Acc) -> vec2f {
  var r = vec2f(vec4f(a.v).x, vec4f(a.c).x);
  for (var k = 1u; k < W; k++) {
    let v = vec4f(a.v)[k];
    let c = vec4f(a.c)[k];
    if (!IS_MAX) {
      r.x += v;
    } else if (!is_nan(r.x) && c != 0.0) {
      if (r.y == 0.0 || is_nan(v) || v > r.x) { r = vec2f(v, c); } else if (v == r.x) { r.y += c; }
    }
  }
  return r;
}

// ---- forward ----------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read_write> out: array<f32>;       // [O, slices]
@group(0) @binding(2) var<storage, read_write> out_count: array<f32>; // [O, slices] tie counts (max)
@group(0) @binding(1) var<storage, read_write> out_t: array<T>;       // reduceColumns: the same, by T
@group(0) @binding(2) var<storage, read_write> out_count_t: array<T>;
@group(0) @binding(3) var<storage, read> x: array<T>;
@group(0) @binding(4) var<storage, read> x_count: array<T>;           // (max, second pass)

var<workgroup> acc: array<Acc, WG>;

// The result of lane l's (output, slice), in lane s = 0: each lane folds its elements, then the
// lanes of an output merge by a tree.
fn reduce_lanes(l: Lane) -> Acc {
  var a = Acc(T(0.0), T(0.0)); // the sum's identity; for max, no element yet
  if (l.valid) {
    var w = walk_of(l);
    for (var j = w.start; j < w.end; j += p.lanes) {
      let i = w.base + dot(w.pos, w.strides);
      var c = T(1.0);
      if (COUNTED) { c = x_count[i]; }
      a = fold(a, Acc(x[i], c));
      w.pos = advance(w.pos, w.step);
    }
  }
  acc[l.slot] = a;
  for (var h = p.lanes / 2u; h > 0u; h >>= 1u) {
    workgroupBarrier();
    if (l.s < h) { acc[l.slot] = fold(acc[l.slot], acc[l.slot + h]); }
  }
  return acc[l.slot];
}

// x: any shape -> out: [O, slices] (the final [O] when slices = 1); a T's lanes fold into one output
@compute @workgroup_size(WG)
fn reduce(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let l = lane_of(wid, nwg, lid);
  let r = fold_lanes(reduce_lanes(l));
  if (l.valid && l.s == 0u) {
    out[l.o * p.slices + l.slice] = r.x * p.scale;
    if (IS_MAX) { out_count[l.o * p.slices + l.slice] = r.y; }
  }
}

// The same when the innermost group is kept: a T holds W consecutive outputs (O counts Ts), and
// out: [O, slices] of T
@compute @workgroup_size(WG)
fn reduceColumns(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let l = lane_of(wid, nwg, lid);
  let r = reduce_lanes(l);
  if (l.valid && l.s == 0u) {
    out_t[l.o * p.slices + l.slice] = r.v * p.scale;
    if (IS_MAX) { out_count_t[l.o * p.slices + l.slice] = r.c; }
  }
}

// ---- backward ---------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read_write> dx: array<T>;     // x's shape
@group(0) @binding(2) var<storage, read> dy: array<f32>;         // [O]
@group(0) @binding(3) var<storage, read> bx: array<T>;           // x (max)
@group(0) @binding(4) var<storage, read> bmax: array<f32>;       // [O] the maxima (max)
@group(0) @binding(5) var<storage, read> bcount: array<f32>;     // [O] their tie counts (max)
@group(0) @binding(2) var<storage, read> dy_t: array<T>;         // reduceColumnsBackward: the same, by T
@group(0) @binding(4) var<storage, read> bmax_t: array<T>;
@group(0) @binding(5) var<storage, read> bcount_t: array<T>;

// Writes lane l's share of dx: g (sum), or g where x equals m (max).
fn expand_lanes(l: Lane, g: T, m: T) {
  if (!l.valid) { return; }
  var w = walk_of(l);
  for (var j = w.start; j < w.end; j += p.lanes) {
    let i = w.base + dot(w.pos, w.strides);
    if (IS_MAX) { dx[i] = select(T(0.0), g, bx[i] == m); } else { dx[i] = g; }
    w.pos = advance(w.pos, w.step);
  }
}

// dy: [O] -> dx: x's shape
@compute @workgroup_size(WG)
fn reduceBackward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let l = lane_of(wid, nwg, lid);
  if (!l.valid) { return; }
  var g = dy[l.o] * p.scale;
  var m = 0.0;
  if (IS_MAX) {
    g /= bcount[l.o];
    m = bmax[l.o];
  }
  expand_lanes(l, T(g), T(m));
}

// dy: [O] of T (W outputs each) -> dx: x's shape
@compute @workgroup_size(WG)
fn reduceColumnsBackward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let l = lane_of(wid, nwg, lid);
  if (!l.valid) { return; }
  var g = dy_t[l.o] * p.scale;
  var m = T(0.0);
  if (IS_MAX) {
    g /= bcount_t[l.o];
    m = bmax_t[l.o];
  }
  expand_lanes(l, g, m);
}
