// The adapter's ceilings, timed by src/gpu/ceilings.ts so that the profiler and the benchmarks can
// say what share of the machine a kernel reaches: the peak rate of multiply-adds (fmaPeak) and of
// vec4 storage loads (loadPeak). Both are as simple as a kernel can be; a real kernel does less.

struct Params {
  iters: u32,  // fma: loop trips per invocation
  n: u32,      // load: vec4 elements of src
  m: f32,      // fma: the multiplier (a runtime value, so nothing folds)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<vec4f>;
@group(0) @binding(2) var<storage, read> src: array<vec4f>;

// out: [invocations]; 8 independent vec4 multiply-add chains per invocation, enough in flight to
// hide the latency of each: iters * 8 * 4 multiply-adds per invocation
@compute @workgroup_size(64)
fn fmaPeak(@builtin(global_invocation_id) gid: vec3u) {
  let m = vec4f(p.m);
  let c = vec4f(1e-3);
  var a0 = vec4f(f32(gid.x)); var a1 = a0 + 1.0; var a2 = a0 + 2.0; var a3 = a0 + 3.0;
  var a4 = a0 + 4.0; var a5 = a0 + 5.0; var a6 = a0 + 6.0; var a7 = a0 + 7.0;
  for (var i = 0u; i < p.iters; i++) {
    a0 = fma(a0, m, c); a1 = fma(a1, m, c); a2 = fma(a2, m, c); a3 = fma(a3, m, c);
    a4 = fma(a4, m, c); a5 = fma(a5, m, c); a6 = fma(a6, m, c); a7 = fma(a7, m, c);
  }
  out[gid.x] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}

// src: [n] vec4s, PER_LOAD consecutive ones per invocation (as an elementwise kernel walks its input);
// out is written only if the sum is the sentinel (it never is), so that only loads are timed
const PER_LOAD = 4u;
@compute @workgroup_size(64)
fn loadPeak(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let first = ((wid.x + wid.y * nwg.x) * 64u) * PER_LOAD + lid;
  var s = vec4f(0.0);
  for (var k = 0u; k < PER_LOAD; k++) {
    let i = first + k * 64u;
    if (i < p.n) { s += src[i]; }
  }
  if (s.x == 1234.5) { out[lid] = s; }
}
