// Float64 references of softmax, log-softmax and cross-entropy (torch.nn.functional semantics).
// Around the class axis a tensor is viewed as [outer, C, inner]; a row is x[o, :, i], its C
// elements `inner` apart (inner = 1 for the last axis).
//   softmax:      y[c] = exp(x[c] - m) / sum_k exp(x[k] - m),  m = max_k x[k]
//   log-softmax:  y[c] = x[c] - m - log sum_k exp(x[k] - m)
//   cross-entropy (F.cross_entropy; logits [N, C] or [N, C, d1, ...], class axis 1), with label
//   smoothing eps and class weights w (all 1 without):
//     class indices y_r: loss_r = -(1 - eps) * w[y_r] * logp[y_r] - eps/C * sum_c w[c] * logp[c],
//                        0 for a row whose label is ignoreIndex; 'mean' divides the sum by the
//                        summed weights w[y_r] of the rows not ignored;
//     probabilities t:   loss_r = -sum_c w[c] * ((1 - eps) * t[c] + eps/C) * logp[c];
//                        'mean' divides by the number of rows.

/** [outer, C, inner] around `axis` (negative counts from the end). */
function rowsAround(shape: readonly number[], axis: number): [number, number, number] {
  const a = axis < 0 ? axis + shape.length : axis;
  const outer = shape.slice(0, a).reduce((p, d) => p * d, 1);
  const inner = shape.slice(a + 1).reduce((p, d) => p * d, 1);
  return [outer, shape[a], inner];
}

/** log-softmax along `axis`: the textbook form every other function here builds on. */
export function logSoftmaxRef(x: Float64Array, shape: readonly number[], axis = -1): Float64Array {
  const [outer, C, inner] = rowsAround(shape, axis);
  const y = new Float64Array(x.length);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const at = (c: number) => (o * C + c) * inner + i;
      let m = -Infinity;
      for (let c = 0; c < C; c++) m = Math.max(m, x[at(c)]);
      let s = 0;
      for (let c = 0; c < C; c++) s += Math.exp(x[at(c)] - m);
      for (let c = 0; c < C; c++) y[at(c)] = x[at(c)] - m - Math.log(s);
    }
  }
  return y;
}

export function softmaxRef(x: Float64Array, shape: readonly number[], axis = -1): Float64Array {
  return logSoftmaxRef(x, shape, axis).map(Math.exp);
}

export interface CrossEntropyRefOptions {
  reduction: 'mean' | 'sum' | 'none';
  labelSmoothing?: number;
  /** [C] */
  weight?: ArrayLike<number> | null;
  ignoreIndex?: number | null;
}

/**
 * F.cross_entropy(x, target, weight, ignore_index, reduction, label_smoothing) for logits x of
 * `shape` ([N, C, ...]); target is one class index per row ([N, ...] flattened) or a probability
 * array of x's shape. Returns [1] for 'mean' and 'sum', the per-row losses for 'none'.
 */
export function crossEntropyRef(x: Float64Array, shape: readonly number[], target: { labels: ArrayLike<number> } | { probs: ArrayLike<number> }, o: CrossEntropyRefOptions): Float64Array {
  const [outer, C, inner] = rowsAround(shape, 1);
  const eps = o.labelSmoothing ?? 0;
  const w = (c: number) => (o.weight ? o.weight[c] : 1);
  const logp = logSoftmaxRef(x, shape, 1);
  const losses = new Float64Array(outer * inner);
  let divisor = 0;
  for (let n = 0; n < outer; n++) {
    for (let i = 0; i < inner; i++) {
      const r = n * inner + i;
      const at = (c: number) => (n * C + c) * inner + i;
      let loss = 0;
      if ('labels' in target) {
        const y = target.labels[r];
        if (y === o.ignoreIndex) continue;
        loss -= (1 - eps) * w(y) * logp[at(y)];
        for (let c = 0; c < C; c++) loss -= (eps / C) * w(c) * logp[at(c)];
        divisor += w(y);
      } else {
        for (let c = 0; c < C; c++) loss -= w(c) * ((1 - eps) * target.probs[at(c)] + eps / C) * logp[at(c)];
        divisor += 1;
      }
      losses[r] = loss;
    }
  }
  if (o.reduction === 'none') return losses;
  const total = losses.reduce((a, b) => a + b, 0);
  return Float64Array.of(o.reduction === 'mean' ? total / divisor : total);
}
