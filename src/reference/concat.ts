// Float64 references of the block-copy ops along one axis. A tensor of `shape` is viewed as
// [outer, shape[axis], inner] (outer: product of the dimensions before axis, inner: after it).
//   concat:  y[o, off_k + j, i] = x_k[o, j, i], off_k = sum of the axis sizes of x_0..x_{k-1}
//   narrow:  y[o, j, i] = x[o, start + j, i] for j < length
//   padAxis: y[o, before + j, i] = x[o, j, i], every other y = value

function split(shape: readonly number[], axis: number): [number, number, number] {
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  return [outer, shape[axis], inner];
}

export function concatRef(xs: Float64Array[], shapes: number[][], axis: number): Float64Array {
  const sizes = shapes.map((s) => s[axis]);
  const total = sizes.reduce((a, b) => a + b, 0);
  const [outer, , inner] = split(shapes[0], axis);
  const y = new Float64Array(outer * total * inner);
  let off = 0;
  xs.forEach((x, k) => {
    for (let o = 0; o < outer; o++) {
      for (let j = 0; j < sizes[k]; j++) {
        for (let i = 0; i < inner; i++) y[(o * total + off + j) * inner + i] = x[(o * sizes[k] + j) * inner + i];
      }
    }
    off += sizes[k];
  });
  return y;
}

export function narrowRef(x: Float64Array, shape: number[], axis: number, start: number, length: number): Float64Array {
  const [outer, size, inner] = split(shape, axis);
  const y = new Float64Array(outer * length * inner);
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < length; j++) {
      for (let i = 0; i < inner; i++) y[(o * length + j) * inner + i] = x[(o * size + start + j) * inner + i];
    }
  }
  return y;
}

export function padAxisRef(x: Float64Array, shape: number[], axis: number, before: number, after: number, value: number): Float64Array {
  const [outer, size, inner] = split(shape, axis);
  const total = size + before + after;
  const y = new Float64Array(outer * total * inner).fill(value);
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < size; j++) {
      for (let i = 0; i < inner; i++) y[(o * total + before + j) * inner + i] = x[(o * size + j) * inner + i];
    }
  }
  return y;
}
