// Elementwise kernels, generated from the table in src/ops/elementwise.ts: {{BODY}} is one table
// row's forward or gradient expression with its loads. T is f32, or vec4<f32> when the walk allows
// (vector loads are 2x faster on lavapipe and no slower on GPUs): every operand of the output's
// shape and a length that is a multiple of 4, or, broadcasting, an innermost merged dim that is a
// multiple of 4 along which each operand either runs (vec4 loads) or repeats (one float, splat).
// out: [n] (the broadcast shape, flattened); in0..in3: the tensor operands, each either of the
// output's shape (read at i) or broadcast to it: the output's dims are merged into at most 4
// (src/tensor/layout.ts, coalesce), and operand k is read at dot(position of i, its strides), a
// stride being 0 along a dim it repeats: [N,C,H,W] * [N,C,1,1] is [N*C, H*W] * strides (1, 0).

alias T = {{T}};
alias U = {{U}}; // T's shape in u32, for NaN tests

struct Params {
  n: u32,      // elements of T
  alpha: f32,  // the op's scalar parameters (leaky relu slope, scale factor, clip bounds, ...)
  beta: f32,
  d0: u32,     // broadcasting: sizes of the output's merged dims 0..2, innermost first (dim 3 is the rest)
  d1: u32,
  d2: u32,
  s00: u32,    // s{k}{d}: stride of operand k along merged dim d
  s01: u32,
  s02: u32,
  s03: u32,
  s10: u32,
  s11: u32,
  s12: u32,
  s13: u32,
  s20: u32,
  s21: u32,
  s22: u32,
  s23: u32,
  s30: u32,
  s31: u32,
  s32: u32,
  s33: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<T>;
@group(0) @binding(2) var<storage, read> in0: array<T>;
@group(0) @binding(3) var<storage, read> in1: array<T>;
@group(0) @binding(4) var<storage, read> in2: array<T>;
@group(0) @binding(5) var<storage, read> in3: array<T>;
// the same operands read as floats: one that repeats along the innermost dim while T is vec4 (splat)
@group(0) @binding(2) var<storage, read> in0s: array<f32>;
@group(0) @binding(3) var<storage, read> in1s: array<f32>;
@group(0) @binding(4) var<storage, read> in2s: array<f32>;
@group(0) @binding(5) var<storage, read> in3s: array<f32>;

// the position of output element i over the merged dims, innermost first
fn position(i: u32) -> vec4u {
  let q0 = i / p.d0;
  let q1 = q0 / p.d1;
  let q2 = q1 / p.d2;
  return vec4u(i - q0 * p.d0, q0 - q1 * p.d1, q1 - q2 * p.d2, q2);
}

// NaN, read from a variable: a NaN constant expression is a shader-creation error
var<private> NAN_BITS: u32 = 0x7fc00000u;

fn sigmoid(x: T) -> T {
  return T(1.0) / (T(1.0) + exp(-x));
}

// erf by Abramowitz & Stegun, Handbook of Mathematical Functions (1964), formula 7.1.26 (after
// Hastings): |error| <= 1.5e-7 for every x. WGSL has no erf.
fn erf(x: T) -> T {
  let t = T(1.0) / (T(1.0) + T(0.3275911) * abs(x));
  let poly = t * (T(0.254829592) + t * (T(-0.284496739) + t * (T(1.421413741) + t * (T(-1.453152027) + t * T(1.061405429)))));
  return sign(x) * (T(1.0) - poly * exp(-x * x));
}

// a^b as torch.pow: 0^0 = 1, a zero base gives 0 for b > 0, a negative base takes integer
// exponents (odd ones keep the sign) and gives NaN for others. WGSL's pow is only defined for a > 0.
fn pow_torch(a: T, b: T) -> T {
  let m = pow(abs(a), b);
  let integer = floor(b) == b;
  let odd = integer & (b - T(2.0) * floor(b * T(0.5)) == T(1.0));
  var r = select(m, -m, (a < T(0.0)) & odd);
  r = select(r, T(bitcast<f32>(NAN_BITS)), (a < T(0.0)) & !integer);
  r = select(r, select(T(0.0), T(1.0), b == T(0.0)), (a == T(0.0)) & (b >= T(0.0)));
  return r;
}

// |v|'s bits: above 0x7f800000 (infinity) exactly when v is NaN. NaN is told by its bits, as a
// compiler may assume that v != v never holds (WGSL lets it).
fn abs_bits(v: T) -> U {
  return bitcast<U>(v) & U(0x7fffffffu);
}

// max / min propagating NaN, as torch.maximum / torch.minimum (WGSL leaves NaN unspecified): a + b
// is NaN when either is
fn max_nan(a: T, b: T) -> T {
  return select(max(a, b), a + b, max(abs_bits(a), abs_bits(b)) > U(0x7f800000u));
}

fn min_nan(a: T, b: T) -> T {
  return select(min(a, b), a + b, max(abs_bits(a), abs_bits(b)) > U(0x7f800000u));
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (i >= p.n) { return; }
  let alpha = p.alpha;
  let beta = p.beta;
  {{BODY}}
}
