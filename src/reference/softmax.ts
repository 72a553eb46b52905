// Float64 references of softmax and cross-entropy (torch.nn.functional semantics), row by row.

/** x: [N, C] -> y[n, c] = exp(x[n, c]) / sum_k exp(x[n, k]) (computed with the row max subtracted) */
export function softmaxRef(x: Float64Array, n: number, c: number): Float64Array {
  const y = new Float64Array(n * c);
  for (let r = 0; r < n; r++) {
    const row = x.subarray(r * c, (r + 1) * c);
    const m = Math.max(...row);
    let s = 0;
    for (let k = 0; k < c; k++) s += Math.exp(row[k] - m);
    for (let k = 0; k < c; k++) y[r * c + k] = Math.exp(row[k] - m) / s;
  }
  return y;
}

/**
 * F.cross_entropy(x, labels, reduction, label_smoothing=eps) -> [1]:
 *   loss_n = -sum_c t[n, c] * log_softmax(x)[n, c],  t[n, c] = (1 - eps) * [c == labels[n]] + eps / C,
 * then the mean over rows or their sum.
 */
export function crossEntropyRef(x: Float64Array, n: number, c: number, labels: ArrayLike<number>, reduction: 'mean' | 'sum', eps: number): Float64Array {
  let total = 0;
  for (let r = 0; r < n; r++) {
    const row = x.subarray(r * c, (r + 1) * c);
    const m = Math.max(...row);
    let s = 0;
    for (let k = 0; k < c; k++) s += Math.exp(row[k] - m);
    const lse = m + Math.log(s);
    for (let k = 0; k < c; k++) {
      const target = (k === labels[r] ? 1 - eps : 0) + eps / c;
      total -= target * (row[k] - lse);
    }
  }
  return Float64Array.of(reduction === 'mean' ? total / n : total);
}
