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

/**
 * torch.matmul(op(a), op(b)) for operands of any rank >= 1 (op transposes the last two dims): a 1-D
 * a is a row vector [1, K] and a 1-D b a column vector [K, 1], that dimension dropped from the
 * result; otherwise C[i] = op(A[i]) op(B[i]) for every index i of the broadcast batch dimensions,
 * A[i] being the matrix of a at i with its size-1 (or missing) batch dimensions read at 0.
 */
export function matmulNdRef(
  a: Float64Array,
  aShape: readonly number[],
  b: Float64Array,
  bShape: readonly number[],
  opts: { transA?: boolean; transB?: boolean } = {},
): { y: Float64Array; shape: number[] } {
  const { transA = false, transB = false } = opts;
  const as = aShape.length === 1 ? (transA ? [aShape[0], 1] : [1, aShape[0]]) : [...aShape];
  const bs = bShape.length === 1 ? (transB ? [1, bShape[0]] : [bShape[0], 1]) : [...bShape];
  const [M, K] = transA ? as.slice(-2).reverse() : as.slice(-2);
  const N = transB ? bs[bs.length - 2] : bs[bs.length - 1];
  const rank = Math.max(as.length, bs.length) - 2;
  const pad = (s: number[]) => [...new Array<number>(rank - (s.length - 2)).fill(1), ...s.slice(0, -2)];
  const [ab, bb] = [pad(as), pad(bs)];
  const batch = ab.map((d, i) => Math.max(d, bb[i]));
  const y = new Float64Array(batch.reduce((p, d) => p * d, 1) * M * N);
  for (let flat = 0; flat < y.length / (M * N); flat++) {
    // the batch index of item `flat`, and the matrix of each operand it reads
    let rest = flat;
    let ai = 0;
    let bi = 0;
    let aStep = 1;
    let bStep = 1;
    for (let d = rank - 1; d >= 0; d--) {
      const i = rest % batch[d];
      rest = Math.floor(rest / batch[d]);
      ai += (ab[d] === 1 ? 0 : i) * aStep;
      bi += (bb[d] === 1 ? 0 : i) * bStep;
      aStep *= ab[d];
      bStep *= bb[d];
    }
    const c = matmulRef(a.subarray(ai * M * K, (ai + 1) * M * K), b.subarray(bi * K * N, (bi + 1) * K * N), M, N, K, { transA, transB });
    y.set(c, flat * M * N);
  }
  const shape = [...batch, M, N];
  if (aShape.length === 1) shape.splice(shape.length - 2, 1);
  if (bShape.length === 1) shape.pop();
  return { y, shape };
}
