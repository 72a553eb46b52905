// Block copy along one axis, the one kernel behind concat, narrow (slice) and padAxis: a tensor is
// viewed as [outer, axis, inner] and `len` rows of the axis are copied from src starting at
// `src_off` into dst starting at `dst_off`:
//   dst[o, dst_off + j, i] = src[o, src_off + j, i]   for o < outer, j < len, i < inner.
// concat copies each input into its slot of the output (its backward copies the slots back out of
// dy), narrow copies a slot out (its backward writes dy into a zero-filled tensor: padAxis).
// T is vec4<f32> when inner is a multiple of 4 (every row offset is then a whole vec4).
// src: [outer, src_axis, inner], dst: [outer, dst_axis, inner] (flattened, in units of T)

alias T = {{T}};

struct Params {
  n: u32,         // outer * len * inner_t: invocations with work
  inner_t: u32,   // inner in units of T
  len: u32,       // axis rows copied
  src_axis: u32,
  src_off: u32,
  dst_axis: u32,
  dst_off: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dst: array<T>;
@group(0) @binding(2) var<storage, read> src: array<T>;

@compute @workgroup_size(256)
fn copy_block(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let e = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (e >= p.n) { return; }
  let i = e % p.inner_t;
  let row = e / p.inner_t;   // o * len + j
  let j = row % p.len;
  let o = row / p.len;
  dst[(o * p.dst_axis + p.dst_off + j) * p.inner_t + i] = src[(o * p.src_axis + p.src_off + j) * p.inner_t + i];
}
