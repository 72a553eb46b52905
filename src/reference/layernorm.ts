// Float64 reference of layer normalization (torch.nn.functional.layer_norm) over rows of C
// elements (x: [rows, C], the normalized dims flattened; weight, bias: [C] or null):
//   y[r, c] = (x[r, c] - mean_r) / sqrt(var_r + eps) * weight[c] + bias[c]
// with mean_r and the biased var_r over the row, weight = 1 and bias = 0 when null.

export function layerNormRef(x: Float64Array, C: number, weight: Float64Array | null, bias: Float64Array | null, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / C; r++) {
    const row = x.subarray(r * C, (r + 1) * C);
    const mean = row.reduce((a, b) => a + b, 0) / C;
    const variance = row.reduce((a, v) => a + (v - mean) ** 2, 0) / C;
    const rstd = 1 / Math.sqrt(variance + eps);
    for (let c = 0; c < C; c++) y[r * C + c] = (row[c] - mean) * rstd * (weight ? weight[c] : 1) + (bias ? bias[c] : 0);
  }
  return y;
}
