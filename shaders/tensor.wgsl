// Primitives the tensor core itself needs: fill a buffer with one value (zeros, ones, NaN poison)
// and add two buffers (gradient accumulation on the autograd tape).
// Flat index of an invocation: workgroups fold into 2-D past 65535 (see grid() in src/gpu/gpu.ts).

struct Params {
  n: u32,      // elements (fill: vec4s)
  value: f32,  // fill value
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;

fn flat(wid: vec3u, nwg: vec3u, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * 256u + lid;
}

@group(0) @binding(1) var<storage, read_write> out4: array<vec4f>;

// out4: [n] vec4s = value: a tensor's buffer is a whole number of vec4s (src/gpu/pool.ts), so
// the last one may run past the tensor's elements into the padding
@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flat(wid, nwg, lid);
  if (i < p.n) { out4[i] = vec4f(p.value); }
}

// out: [n] = a + b
@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flat(wid, nwg, lid);
  if (i < p.n) { out[i] = a[i] + b[i]; }
}
