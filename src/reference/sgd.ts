// Float64 reference of torch.optim.SGD's update rule (torch/optim/sgd.py, single-tensor path), per step:
//   d = grad + weightDecay * param
//   if momentum != 0: buf = d on the first step, else momentum * buf + (1 - dampening) * d
//                     d = d + momentum * buf if nesterov, else buf
//   param = param - lr * d

export interface SgdRefOptions {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
}

/** Runs one step per entry of `grads` from `param`; returns the parameter and momentum buffer after them. */
export function sgdRef(param: Float64Array, grads: Float64Array[], o: SgdRefOptions): { param: Float64Array; buf: Float64Array | null } {
  const w = Float64Array.from(param);
  let buf: Float64Array | null = null;
  for (const g of grads) {
    const d = g.map((gi, i) => gi + o.weightDecay * w[i]);
    if (o.momentum !== 0) {
      const prev: Float64Array | null = buf;
      const b: Float64Array = prev ? prev.map((v, i) => o.momentum * v + (1 - o.dampening) * d[i]) : Float64Array.from(d);
      for (let i = 0; i < d.length; i++) d[i] = o.nesterov ? d[i] + o.momentum * b[i] : b[i];
      buf = b;
    }
    for (let i = 0; i < w.length; i++) w[i] -= o.lr * d[i];
  }
  return { param: w, buf };
}
