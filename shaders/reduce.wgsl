// Sum of all elements, as a two-level tree: the first launch has G workgroups, each folding a
// grid-strided share of x into one partial sum; the second is the same kernel over the G partials
// with one workgroup. (One launch when G = 1.) `scale` multiplies the result: 1 for sum, 1/n for mean.
// Backward: d(sum)/dx_i = 1, so dx = dy broadcast (times 1/n for mean): the `broadcast` entry.
//
// x is read as vec4 (2x the bandwidth of scalar loads on lavapipe) for any n: pool buffers are whole
// vec4s (sizeClass rounds to 16 bytes) and the lanes past n are masked out.

override WG: u32 = 256; // invocations per workgroup, a power of two

struct Params {
  n: u32,      // elements of x (sumPartial) or of out (broadcast)
  scale: f32,  // multiplies the result
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;

var<workgroup> partial: array<f32, WG>;

// x: [n] -> out: [G] (G = workgroups launched; 1-D)
@compute @workgroup_size(WG)
fn sumPartial(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let full = p.n / 4u; // whole vec4s
  let stride = nwg.x * WG;
  // two accumulators halve the chain of dependent adds
  var acc0 = vec4f(0.0);
  var acc1 = vec4f(0.0);
  var j = wid.x * WG + lid;
  for (; j + stride < full; j += 2u * stride) {
    acc0 += x[j];
    acc1 += x[j + stride];
  }
  if (j < full) { acc0 += x[j]; }
  // the last, partial vec4 when n is not a multiple of 4
  if (wid.x == 0u && lid == 0u && full * 4u < p.n) {
    let idx = vec4u(4u * full) + vec4u(0u, 1u, 2u, 3u);
    acc1 += select(vec4f(0.0), x[full], idx < vec4u(p.n));
  }
  let acc = acc0 + acc1;
  partial[lid] = (acc.x + acc.y) + (acc.z + acc.w);
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { partial[lid] += partial[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) { out[wid.x] = partial[0] * p.scale; }
}

// dy: [1] (read as x[0].x) -> out: [n] = dy * scale (grid-strided)
@compute @workgroup_size(WG)
fn broadcast(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let value = x[0].x * p.scale;
  for (var i = wid.x * WG + lid; i < p.n; i += nwg.x * WG) { out[i] = value; }
}
