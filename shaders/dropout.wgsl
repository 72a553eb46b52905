// Dropout in training mode (torch semantics): y = x * keep / (1 - p), keep ~ Bernoulli(1 - p).
// The keep bit of element i comes from a counter-based hash of (seed, i) computed right here, so
// the backward, dx = dy * keep / (1 - p), is this same kernel applied to dy with the same seed: the
// mask is recomputed, never stored.
// T is f32, or vec4<f32> when the length is a multiple of 4; U is the matching u32 type (element
// indices and hashes of T's lanes), WIDTH its lane count and LANES the lane offsets within one T.
// The loop is grid-strided (see stridedWorkgroups in src/ops/reduce.ts).
// out, x: [n] (any shape, flattened)

alias T = {{T}};
alias U = {{U}};

struct Params {
  n: u32,          // elements of T
  seed: u32,
  keepBelow: u32,  // an element is kept when the top 24 bits of its hash are below round((1 - p) * 2^24)
  scale: f32,      // 1 / (1 - p) (0 when p = 1)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<T>;
@group(0) @binding(2) var<storage, read> x: array<T>;

// PCG-RXS-M-XS 32-bit output permutation: a bijective hash with good avalanche (Jarzynski & Olano,
// "Hash Functions for GPU Rendering", 2020).
fn pcg(v: U) -> U {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> U(28u)) + U(4u))) ^ state) * 277803737u;
  return (word >> U(22u)) ^ word;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let seedHash = pcg(U(p.seed));
  for (var i = wid.x * 256u + lid; i < p.n; i += nwg.x * 256u) {
    let element = U(i * {{WIDTH}}u) + {{LANES}};
    // hashing the hashed index with the hashed seed decorrelates neighbouring elements and seeds
    let h = pcg(pcg(element) ^ seedHash);
    out[i] = select(T(0.0), x[i] * p.scale, (h >> U(8u)) < U(p.keepBelow));
  }
}
