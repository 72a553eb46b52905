// One torch.optim.Adam / torch.optim.AdamW step on several parameters, in place (amsgrad and maximize
// off), t counting this step:
//   AdamW: param = param * (1 - lr * weightDecay)        (decoupled weight decay)
//   Adam:  g = grad + weightDecay * param                (L2 decay through the gradient; AdamW: g = grad)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g * g
//   param = param - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)   (eps outside the sqrt)
// The scalars that depend on the step are computed once in double on the CPU, as torch does, so
// one launch updates parameters at the same step t: the lengths n<k>, the bindings param<k>,
// grad<k>, m<k>, v<k> and each parameter's grid-strided loop, which calls adam_step below, are
// written out by launchParameters (src/optim/optimizer.ts). T is f32, or vec4<f32> when every
// parameter's length is a multiple of 4.
// param<k>, grad<k>, m<k>, v<k>: [n<k>] (parameter k's shape, flattened)

alias T = {{T}};

struct Params {
  {{SIZES}}
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
{{BINDINGS}}

struct AdamStep {
  w: T,  // the parameter's new value
  m: T,  // exp_avg's
  v: T,  // exp_avg_sq's
}

fn adam_step(w0: T, grad: T, m0: T, v0: T) -> AdamStep {
  let w = w0 * p.decay;
  let g = grad + p.l2 * w;
  let m = m0 * p.beta1 + g * p.oneMinusBeta1;
  let v = v0 * p.beta2 + p.oneMinusBeta2 * g * g;
  return AdamStep(w - p.stepSize * (m / (sqrt(v) / p.correction2 + p.eps)), m, v);
}

@compute @workgroup_size(256)
fn adam(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let first = wid.x * 256u + lid;
  let stride = nwg.x * 256u;
  {{LOOPS}}
}
