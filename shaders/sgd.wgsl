// One torch.optim.SGD step on several parameters at once, in place:
//   d = grad + weightDecay * param
//   with momentum: buf = d on the first step (no dampening then), else momentum * buf + (1 - dampening) * d;
//                  d = d + momentum * buf with nesterov, else buf
//   param -= lr * d
// One launch updates up to as many parameters of one group as the adapter's storage bindings allow:
// the lengths n<k>, the bindings param<k>, grad<k> (and buf<k>) and each parameter's grid-strided
// loop, which calls sgd_plain or sgd_momentum below, are written out by launchParameters
// (src/optim/optimizer.ts). T is f32, or vec4<f32> when every parameter's length is a multiple of 4.
// param<k>, grad<k>, buf<k>: [n<k>] (parameter k's shape, flattened)

alias T = {{T}};

struct Params {
  {{SIZES}}
  firstStep: u32,            // 1 when the buffers hold nothing yet
  nesterov: u32,             // 1 for Nesterov momentum
  lr: f32,
  weightDecay: f32,
  momentum: f32,
  dampeningComplement: f32,  // 1 - dampening, rounded once on the CPU as torch does
}

@group(0) @binding(0) var<uniform> p: Params;
{{BINDINGS}}

// param's new value without momentum
fn sgd_plain(w: T, g: T) -> T {
  return w - p.lr * (g + p.weightDecay * w);
}

struct MomentumStep {
  w: T,  // the parameter's new value
  b: T,  // the momentum buffer's
}

fn sgd_momentum(w: T, g: T, b0: T) -> MomentumStep {
  let d = g + p.weightDecay * w;
  // select, not arithmetic, so the unset buffer of the first step never enters the result
  let b = select(p.momentum * b0 + p.dampeningComplement * d, d, p.firstStep == 1u);
  return MomentumStep(w - p.lr * select(b, d + p.momentum * b, p.nesterov == 1u), b);
}

@compute @workgroup_size(256)
fn sgd(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let first = wid.x * 256u + lid;
  let stride = nwg.x * 256u;
  {{LOOPS}}
}
