// One torch.optim.Adam / torch.optim.AdamW step on one parameter, in place (amsgrad and maximize
// off), t counting this step:
//   AdamW: param = param * (1 - lr * weightDecay)        (decoupled weight decay)
//   Adam:  g = grad + weightDecay * param                (L2 decay through the gradient; AdamW: g = grad)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g * g
//   param = param - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)   (eps outside the sqrt)
// The scalars that depend on the step are computed once in double on the CPU, as torch does.
// T is f32, or vec4<f32> when the parameter's length is a multiple of 4. Loops are grid-strided.
// param, grad, m, v: [n] (the parameter's shape, flattened)

alias T = {{T}};

struct Params {
  n: u32,              // elements of T
  decay: f32,          // AdamW: 1 - lr * weightDecay (1 for Adam)
  l2: f32,             // Adam: weightDecay (0 for AdamW)
  beta1: f32,
  oneMinusBeta1: f32,  // 1 - beta1, rounded once on the CPU
  beta2: f32,
  oneMinusBeta2: f32,
  stepSize: f32,       // lr / (1 - beta1^t)
  correction2: f32,    // sqrt(1 - beta2^t)
  eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> param: array<T>;
@group(0) @binding(2) var<storage, read> grad: array<T>;
@group(0) @binding(3) var<storage, read_write> m: array<T>;  // exp_avg
@group(0) @binding(4) var<storage, read_write> v: array<T>;  // exp_avg_sq

@compute @workgroup_size(256)
fn adam(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  for (var i = wid.x * 256u + lid; i < p.n; i += nwg.x * 256u) {
    let w = param[i] * p.decay;
    let g = grad[i] + p.l2 * w;
    let mi = m[i] * p.beta1 + g * p.oneMinusBeta1;
    let vi = v[i] * p.beta2 + p.oneMinusBeta2 * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = w - p.stepSize * (mi / (sqrt(vi) / p.correction2 + p.eps));
  }
}
