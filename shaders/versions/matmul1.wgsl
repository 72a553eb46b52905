// matmul version 1, the textbook: one invocation per output, a dot product over K read straight
// from storage (2 loads per multiply-add). Version 2 is shaders/matmul.wgsl's gemm (register-blocked
// 4x4 blocks, vec4 loads). Timed side by side by bench/versions.ts.

struct Params { M: u32, N: u32, K: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> c: array<f32>;  // c: [M,N]
@group(0) @binding(2) var<storage, read> a: array<f32>;        // a: [M,K]
@group(0) @binding(3) var<storage, read> b: array<f32>;        // b: [K,N]

@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let n = gid.x;
  let m = gid.y;
  if (m >= p.M || n >= p.N) { return; }
  var s = 0.0;
  for (var k = 0u; k < p.K; k++) { s = fma(a[m * p.K + k], b[k * p.N + n], s); }
  c[m * p.N + n] = s;
}
