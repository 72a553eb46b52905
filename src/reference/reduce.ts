// Float64 references of reductions over a set of axes (torch's x.sum(dims), x.mean(dims),
// torch.amax(x, dims)): out[o] = the sum, mean or max of the x elements whose index agrees with o
// on the kept axes. The output is the kept axes in order (reshape for keepdim); axes are sorted and
// non-negative. The gradients: the sum's dy to every element of the output, amax's dy shared evenly
// among the elements equal to the maximum.

/** For each element of x (row-major over `shape`), the index of its output. */
function outputIndex(shape: readonly number[], axes: readonly number[]): Int32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const index = new Int32Array(n);
  const digits = new Array(shape.length).fill(0);
  for (let i = 0; i < n; i++) {
    let o = 0;
    for (let d = 0; d < shape.length; d++) if (!axes.includes(d)) o = o * shape[d] + digits[d];
    index[i] = o;
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++digits[d] < shape[d]) break;
      digits[d] = 0;
    }
  }
  return index;
}

function outputCount(shape: readonly number[], axes: readonly number[]): number {
  return shape.reduce((a, d, i) => (axes.includes(i) ? a : a * d), 1);
}

export function sumRef(x: Float64Array, shape: readonly number[], axes: readonly number[]): Float64Array {
  const out = new Float64Array(outputCount(shape, axes));
  outputIndex(shape, axes).forEach((o, i) => (out[o] += x[i]));
  return out;
}

export function meanRef(x: Float64Array, shape: readonly number[], axes: readonly number[]): Float64Array {
  const s = sumRef(x, shape, axes);
  const r = axes.reduce((a, d) => a * shape[d], 1);
  return s.map((v) => v / r);
}

export function maxRef(x: Float64Array, shape: readonly number[], axes: readonly number[]): Float64Array {
  const out = new Float64Array(outputCount(shape, axes)).fill(-Infinity);
  outputIndex(shape, axes).forEach((o, i) => (out[o] = Math.max(out[o], x[i])));
  return out;
}

/** dx of the sum for the output gradient dy: every element gets its output's dy. */
export function sumBackwardRef(shape: readonly number[], axes: readonly number[], dy: Float64Array): Float64Array {
  return Float64Array.from(outputIndex(shape, axes), (o) => dy[o]);
}

/** dx of amax for the output gradient dy: dy[o] / (number of maxima of o) at each maximum, else 0. */
export function maxBackwardRef(x: Float64Array, shape: readonly number[], axes: readonly number[], dy: Float64Array): Float64Array {
  const m = maxRef(x, shape, axes);
  const index = outputIndex(shape, axes);
  const ties = new Float64Array(m.length);
  index.forEach((o, i) => (ties[o] += x[i] === m[o] ? 1 : 0));
  return x.map((v, i) => (v === m[index[i]] ? dy[index[i]] / ties[index[i]] : 0));
}
