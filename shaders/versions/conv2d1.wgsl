// conv2d forward version 1, the textbook: one invocation per output element, the loops of
// src/reference/conv2d.ts over input channels and taps, every operand read from storage.
// Version 2 is shaders/conv2d.wgsl's forward (implicit GEMM: a register tile per lane, weight rows
// as vec4, the gathered input shared across the subgroup). Timed by bench/versions.ts.

struct Params { N: u32, C: u32, H: u32, W: u32, OC: u32, OH: u32, OW: u32, KH: u32, KW: u32, S: u32, P: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;  // y: [N,OC,OH,OW]
@group(0) @binding(2) var<storage, read> x: array<f32>;        // x: [N,C,H,W]
@group(0) @binding(3) var<storage, read> w: array<f32>;        // w: [OC,C,KH,KW]

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= p.N * p.OC * p.OH * p.OW) { return; }
  let ow = i % p.OW;
  let oh = (i / p.OW) % p.OH;
  let oc = (i / (p.OW * p.OH)) % p.OC;
  let n = i / (p.OW * p.OH * p.OC);
  var s = 0.0;
  for (var c = 0u; c < p.C; c++) {
    for (var kh = 0u; kh < p.KH; kh++) {
      let ih = i32(oh * p.S + kh) - i32(p.P);
      if (ih < 0 || ih >= i32(p.H)) { continue; }
      for (var kw = 0u; kw < p.KW; kw++) {
        let iw = i32(ow * p.S + kw) - i32(p.P);
        if (iw < 0 || iw >= i32(p.W)) { continue; }
        s = fma(x[((n * p.C + c) * p.H + u32(ih)) * p.W + u32(iw)], w[((oc * p.C + c) * p.KH + kh) * p.KW + kw], s);
      }
    }
  }
  y[i] = s;
}
