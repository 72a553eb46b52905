// One torch.optim.SGD step on one parameter, in place:
//   d = grad + weightDecay * param
//   with momentum: buf = d on the first step (no dampening then), else momentum * buf + (1 - dampening) * d;
//                  d = d + momentum * buf with nesterov, else buf
//   param -= lr * d
// T is f32, or vec4<f32> when the parameter's length is a multiple of 4. Loops are grid-strided (see
// stridedWorkgroups in src/ops/reduce.ts).
// param, grad, buf: [n] (the parameter's shape, flattened)

alias T = {{T}};

struct Params {
  n: u32,                    // elements of T
  firstStep: u32,            // 1 when buf holds nothing yet
  nesterov: u32,             // 1 for Nesterov momentum
  lr: f32,
  weightDecay: f32,
  momentum: f32,
  dampeningComplement: f32,  // 1 - dampening, rounded once on the CPU as torch does
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> param: array<T>;
@group(0) @binding(2) var<storage, read> grad: array<T>;
@group(0) @binding(3) var<storage, read_write> buf: array<T>;  // momentum buffer (sgdMomentum only)

@compute @workgroup_size(256)
fn sgd(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  for (var i = wid.x * 256u + lid; i < p.n; i += nwg.x * 256u) {
    let w = param[i];
    param[i] = w - p.lr * (grad[i] + p.weightDecay * w);
  }
}

@compute @workgroup_size(256)
fn sgdMomentum(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  for (var i = wid.x * 256u + lid; i < p.n; i += nwg.x * 256u) {
    let w = param[i];
    let d = grad[i] + p.weightDecay * w;
    // select, not arithmetic, so the unset buffer of the first step never enters the result
    let b = select(p.momentum * buf[i] + p.dampeningComplement * d, d, p.firstStep == 1u);
    buf[i] = b;
    param[i] = w - p.lr * select(b, d + p.momentum * b, p.nesterov == 1u);
  }
}
