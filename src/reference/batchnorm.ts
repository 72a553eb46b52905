// Float64 reference of batch normalization (torch.nn.functional.batch_norm semantics), x: [N,C,H,W]:
//   y[n,c,h,w] = (x[n,c,h,w] - mean[c]) / sqrt(var[c] + eps) * gamma[c] + beta[c]
// training: mean and var are the batch's (biased var) over n, h, w; then, in place,
//   runningMean = (1 - momentum) * runningMean + momentum * mean
//   runningVar  = (1 - momentum) * runningVar  + momentum * var * n/(n-1)   (unbiased)
// eval: mean and var are runningMean and runningVar. gamma = 1 and beta = 0 when null.

export interface BatchNormRefOptions {
  training: boolean;
  momentum: number;
  eps: number;
}

export function batchNorm2dRef(
  x: Float64Array,
  shape: readonly number[],
  gamma: Float64Array | null,
  beta: Float64Array | null,
  runningMean: Float64Array,
  runningVar: Float64Array,
  opts: BatchNormRefOptions,
): Float64Array {
  const [N, C, H, W] = shape;
  const plane = H * W;
  const count = N * plane;
  const y = new Float64Array(x.length);
  for (let c = 0; c < C; c++) {
    let mean: number;
    let variance: number;
    if (opts.training) {
      // two passes: mean first, then the mean squared deviation
      let sum = 0;
      for (let n = 0; n < N; n++) for (let i = 0; i < plane; i++) sum += x[(n * C + c) * plane + i];
      mean = sum / count;
      let sq = 0;
      for (let n = 0; n < N; n++) for (let i = 0; i < plane; i++) sq += (x[(n * C + c) * plane + i] - mean) ** 2;
      variance = sq / count;
      runningMean[c] = (1 - opts.momentum) * runningMean[c] + opts.momentum * mean;
      runningVar[c] = (1 - opts.momentum) * runningVar[c] + (opts.momentum * sq) / (count - 1);
    } else {
      mean = runningMean[c];
      variance = runningVar[c];
    }
    const invstd = 1 / Math.sqrt(variance + opts.eps);
    const g = gamma ? gamma[c] : 1;
    const b = beta ? beta[c] : 0;
    for (let n = 0; n < N; n++) {
      for (let i = 0; i < plane; i++) {
        const k = (n * C + c) * plane + i;
        y[k] = (x[k] - mean) * invstd * g + b;
      }
    }
  }
  return y;
}
