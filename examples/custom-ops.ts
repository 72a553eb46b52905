// Two ops of one's own, written as the built-in ones are: WGSL kernels for the forward and the
// backward, a float64 reference, and a gradcheck spec that checks one against the other.
//   swish(x) = x * sigmoid(x)                                   an activation (torch's SiLU)
//   conv1d(x, w, b): y[n,o,l] = b[o] + sum_c,k x[n,c,l+k] w[o,c,k]   a 1-D convolution, stride 1, no padding
// swishComposed has the same forward and a backward made of built-in ops instead of a kernel.
//
//   gpunet gradcheck examples/custom-ops.ts     checks all three (in a checkout; a .mjs file works anywhere)
//   npx tsx examples/custom-op-train.ts         trains a small 1-D CNN made of them
import * as gpunet from 'gpunet';
import type { GradcheckSpec, Tensor } from 'gpunet';

const { ops } = gpunet;

// ---- swish ----------------------------------------------------------------------------------

const SWISH_WGSL = /* wgsl */ `
struct Params { n: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;   // backward only

fn sigmoid(v: f32) -> f32 { return 1.0 / (1.0 + exp(-v)); }

// x: [n] -> out: [n] = x * sigmoid(x)
@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) id: vec3u) {
  let i = id.x;
  if (i >= p.n) { return; }
  out[i] = x[i] * sigmoid(x[i]);
}

// x, dy: [n] -> out = dx: [n] = dy * d/dx (x s) = dy * (s + x s (1 - s)), s = sigmoid(x)
@compute @workgroup_size(64)
fn backward(@builtin(global_invocation_id) id: vec3u) {
  let i = id.x;
  if (i >= p.n) { return; }
  let s = sigmoid(x[i]);
  out[i] = dy[i] * (s + x[i] * s * (1.0 - s));
}
`;

/** one invocation per element, 64 to a workgroup */
const elementwise = (t: Tensor) => ({ params: { n: t.size }, workgroups: [Math.ceil(t.size / 64)] as [number] });

export const swish = gpunet.defineOp({
  name: 'swish',
  wgsl: SWISH_WGSL,
  forward: (k, x: Tensor) => k.run('forward', { output: x.shape, inputs: [x], ...elementwise(x) }),
  backward: (k, dy, { args: [x] }) => [k.run('backward', { output: x.shape, inputs: [x, dy], ...elementwise(x) })],
});

/** The same op with its gradient composed of built-in ops, no kernel of its own. */
export const swishComposed = gpunet.defineOp({
  name: 'swish-composed',
  wgsl: SWISH_WGSL,
  forward: (k, x: Tensor) => k.run('forward', { output: x.shape, inputs: [x], ...elementwise(x) }),
  backward: (_, dy, { args: [x] }) => {
    const s = ops.sigmoid(x);
    return [ops.mul(dy, ops.add(s, ops.mul(ops.mul(x, s), ops.sub(1, s))))];
  },
});

export function swishRef(x: Float64Array): Float64Array {
  return x.map((v) => v / (1 + Math.exp(-v)));
}

// ---- conv1d ---------------------------------------------------------------------------------

const CONV1D_WGSL = /* wgsl */ `
struct Params { N: u32, C: u32, L: u32, OC: u32, K: u32, OL: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;    // forward: x; backward: dy
@group(0) @binding(3) var<storage, read> b: array<f32>;    // forward: w; backwardInput: w; backwardWeight: x
@group(0) @binding(4) var<storage, read> bias: array<f32>; // forward only

// x: [N,C,L], w: [OC,C,K], bias: [OC] -> y: [N,OC,OL], OL = L - K + 1; one invocation per output
@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) id: vec3u) {
  let i = id.x;
  if (i >= p.N * p.OC * p.OL) { return; }
  let l = i % p.OL;
  let o = (i / p.OL) % p.OC;
  let n = i / (p.OL * p.OC);
  var s = bias[o];
  for (var c = 0u; c < p.C; c++) {
    for (var k = 0u; k < p.K; k++) {
      s += a[(n * p.C + c) * p.L + l + k] * b[(o * p.C + c) * p.K + k];
    }
  }
  out[i] = s;
}

// dy: [N,OC,OL], w: [OC,C,K] -> dx: [N,C,L]; x[n,c,j] met w[o,c,k] at every output l = j - k
@compute @workgroup_size(64)
fn backwardInput(@builtin(global_invocation_id) id: vec3u) {
  let i = id.x;
  if (i >= p.N * p.C * p.L) { return; }
  let j = i % p.L;
  let c = (i / p.L) % p.C;
  let n = i / (p.L * p.C);
  var s = 0.0;
  for (var o = 0u; o < p.OC; o++) {
    for (var k = 0u; k < p.K; k++) {
      if (j >= k && j - k < p.OL) { s += a[(n * p.OC + o) * p.OL + j - k] * b[(o * p.C + c) * p.K + k]; }
    }
  }
  out[i] = s;
}

// dy: [N,OC,OL], x: [N,C,L] -> dw: [OC,C,K] = sum over n, l of dy[n,o,l] x[n,c,l+k]
@compute @workgroup_size(64)
fn backwardWeight(@builtin(global_invocation_id) id: vec3u) {
  let i = id.x;
  if (i >= p.OC * p.C * p.K) { return; }
  let k = i % p.K;
  let c = (i / p.K) % p.C;
  let o = i / (p.K * p.C);
  var s = 0.0;
  for (var n = 0u; n < p.N; n++) {
    for (var l = 0u; l < p.OL; l++) { s += a[(n * p.OC + o) * p.OL + l] * b[(n * p.C + c) * p.L + l + k]; }
  }
  out[i] = s;
}
`;

function conv1dGeometry(x: Tensor, w: Tensor) {
  const [N, C, L] = x.shape;
  const [OC, wc, K] = w.shape;
  if (x.ndim !== 3 || w.ndim !== 3 || wc !== C || K > L) {
    throw new gpunet.OpError('my-conv1d', `expected x [N,C,L] and w [OC,C,K] with K <= L, got x[${x.shape}] w[${w.shape}]`);
  }
  return { N, C, L, OC, K, OL: L - K + 1 };
}

/** one invocation per element of a tensor of `shape` */
const perElement = (shape: number[]) => [Math.ceil(shape.reduce((a, b) => a * b, 1) / 64)] as [number];

export const conv1d = gpunet.defineOp({
  name: 'my-conv1d',
  wgsl: CONV1D_WGSL,
  forward: (k, x: Tensor, w: Tensor, bias: Tensor) => {
    const p = conv1dGeometry(x, w);
    const output = [p.N, p.OC, p.OL];
    return k.run('forward', { output, inputs: [x, w, bias], params: p, workgroups: perElement(output) });
  },
  backward: (k, dy, { args: [x, w], needs }) => {
    const p = conv1dGeometry(x, w);
    return [
      needs[0] ? k.run('backwardInput', { output: x.shape, inputs: [dy, w], params: p, workgroups: perElement([...x.shape]) }) : null,
      needs[1] ? k.run('backwardWeight', { output: w.shape, inputs: [dy, x], params: p, workgroups: perElement([...w.shape]) }) : null,
      // the bias gradient is dy summed over the batch and the positions: a built-in reduction
      needs[2] ? ops.sum(dy, { axes: [0, 2] }) : null,
    ];
  },
});

export function conv1dRef(x: Float64Array, [N, C, L]: readonly number[], w: Float64Array, [OC, , K]: readonly number[], bias: Float64Array): Float64Array {
  const OL = L - K + 1;
  const y = new Float64Array(N * OC * OL);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < OC; o++) {
      for (let l = 0; l < OL; l++) {
        let s = bias[o];
        for (let c = 0; c < C; c++) for (let k = 0; k < K; k++) s += x[(n * C + c) * L + l + k] * w[(o * C + c) * K + k];
        y[(n * OC + o) * OL + l] = s;
      }
    }
  }
  return y;
}

// ---- what `gpunet gradcheck examples/custom-ops.ts` checks ----------------------------------

export const gradchecks: GradcheckSpec[] = [
  { name: 'swish', inputs: ['x'], shapes: ([x = [3, 7]]) => [x], options: {}, run: ([x]) => swish(x), reference: ([x]) => swishRef(x) },
  { name: 'swish-composed', inputs: ['x'], shapes: ([x = [3, 7]]) => [x], options: {}, run: ([x]) => swishComposed(x), reference: ([x]) => swishRef(x) },
  {
    name: 'my-conv1d',
    inputs: ['x', 'weight', 'bias'],
    shapes: ([x = [2, 3, 11], w = [4, x[1], 3], b = [w[0]]]) => [x, w, b],
    options: {},
    run: ([x, w, b]) => conv1d(x, w, b),
    reference: ([x, w, b], [xs, ws]) => conv1dRef(x, xs, w, ws, b),
  },
];
