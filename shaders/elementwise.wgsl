// Elementwise kernels, generated from the table in src/ops/elementwise.ts: {{BODY}} is one table
// row's forward or gradient expression with its loads. T is f32, or vec4<f32> when the length is a
// multiple of 4 (vector loads are 2x faster on lavapipe and no slower on GPUs).
// out, in0.., : [n] (any shape, flattened)

alias T = {{T}};

struct Params {
  n: u32,      // elements of T
  alpha: f32,  // the op's scalar parameters (leaky relu slope, scale factor, clip bounds, ...)
  beta: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<T>;
@group(0) @binding(2) var<storage, read> in0: array<T>;
@group(0) @binding(3) var<storage, read> in1: array<T>;
@group(0) @binding(4) var<storage, read> in2: array<T>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (i >= p.n) { return; }
  let alpha = p.alpha;
  let beta = p.beta;
  {{BODY}}
}
