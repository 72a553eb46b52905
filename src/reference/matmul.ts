// Float64 references of matmul and linear: plain triple loops.

/** C[m, n] = sum over k of op(A)[m, k] * op(B)[k, n] (+ bias[n]), where op(A)[m, k] = a[k, m] when
 *  transA (a stored [K, M]) else a[m, k], and op(B)[k, n] = b[n, k] when transB else b[k, n]. */
export function matmulRef(
  a: Float64Array,
  b: Float64Array,
  M: number,
  N: number,
  K: number,
  opts: { transA?: boolean; transB?: boolean; bias?: Float64Array | null } = {},
): Float64Array {
  const { transA = false, transB = false, bias = null } = opts;
  const c = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = bias ? bias[n] : 0;
      for (let k = 0; k < K; k++) {
        s += (transA ? a[k * M + m] : a[m * K + k]) * (transB ? b[n * K + k] : b[k * N + n]);
      }
      c[m * N + n] = s;
    }
  }
  return c;
}

/** y[i, o] = sum over j of x[i, j] * w[o, j] + b[o]: x: [N, IN], w: [OUT, IN], b: [OUT] or null. */
export function linearRef(x: Float64Array, w: Float64Array, b: Float64Array | null, N: number, IN: number, OUT: number): Float64Array {
  return matmulRef(x, w, N, OUT, IN, { transB: true, bias: b });
}
