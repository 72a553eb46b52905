// Float64 reference of torch.optim.Adam and torch.optim.AdamW's update rule (torch/optim/adam.py
// and adamw.py, single-tensor path, amsgrad and maximize off), per step t = 1, 2, ...:
//   AdamW: param = param * (1 - lr * weightDecay);   Adam: g = grad + weightDecay * param
//   m = beta1 * m + (1 - beta1) * g,   v = beta2 * v + (1 - beta2) * g^2      (m, v start at 0)
//   param = param - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

export interface AdamRefOptions {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  decoupled: boolean;
}

/** Runs one step per entry of `grads` from `param`; returns the parameter and both moments after them. */
export function adamRef(param: Float64Array, grads: Float64Array[], o: AdamRefOptions): { param: Float64Array; m: Float64Array; v: Float64Array } {
  const w = Float64Array.from(param);
  const m = new Float64Array(w.length);
  const v = new Float64Array(w.length);
  const [b1, b2] = o.betas;
  grads.forEach((grad, k) => {
    const t = k + 1;
    for (let i = 0; i < w.length; i++) {
      if (o.decoupled) w[i] *= 1 - o.lr * o.weightDecay;
      const g = grad[i] + (o.decoupled ? 0 : o.weightDecay * w[i]);
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      w[i] -= (o.lr / (1 - b1 ** t)) * (m[i] / (Math.sqrt(v[i]) / Math.sqrt(1 - b2 ** t) + o.eps));
    }
  });
  return { param: w, m, v };
}
