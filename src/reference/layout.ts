// Float64 references of the data-movement ops, element by element through their index maps.
// An index of a tensor of `shape` is its position (i_0, ..., i_{r-1}), flattened row-major.
//   transpose: y[i_0, ..., i_{r-1}] = x[j] with j_{perm[d]} = i_d
//   slice:     y[i] = x[j], j_d = start_d + i_d * step_d (ranges as sliceRanges in src/ops/layout.ts)
//   gather:    y[..., j, ...] = x[..., indices[j], ...] along the axis
//   expand:    y[i] = x[j], j_d = i_d where x's dim d (aligned at the last dim) is not 1, else 0
//   pad:       y[i] = x[j], j_d = i_d - before_d mapped into [0, n_d): the constant where it falls
//              outside (constant), mirrored about the edge (reflect: -1 -> 1) or clamped (edge)

function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let step = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    s[d] = step;
    step *= shape[d];
  }
  return s;
}

/** y of `outShape` with y[i] = x at source(position of i), or `fill` where source returns null. */
function mapIndices(x: Float64Array, xShape: readonly number[], outShape: readonly number[], source: (pos: number[]) => number[] | null, fill = 0): Float64Array {
  const xs = strides(xShape);
  const os = strides(outShape);
  const y = new Float64Array(outShape.reduce((p, d) => p * d, 1));
  for (let i = 0; i < y.length; i++) {
    const pos = outShape.map((d, k) => Math.floor(i / os[k]) % d);
    const src = source(pos);
    y[i] = src ? x[src.reduce((at, j, k) => at + j * xs[k], 0)] : fill;
  }
  return y;
}

export function transposeRef(x: Float64Array, shape: readonly number[], perm: readonly number[]): Float64Array {
  const out = perm.map((a) => shape[a]);
  return mapIndices(x, shape, out, (pos) => {
    const j = new Array<number>(shape.length);
    perm.forEach((a, d) => (j[a] = pos[d]));
    return j;
  });
}

export function sliceRef(x: Float64Array, shape: readonly number[], ranges: readonly { start: number; step: number; count: number }[]): Float64Array {
  return mapIndices(x, shape, ranges.map((r) => r.count), (pos) => pos.map((i, d) => ranges[d].start + i * ranges[d].step));
}

export function gatherRef(x: Float64Array, shape: readonly number[], indices: readonly number[], axis: number): Float64Array {
  const out = shape.map((d, i) => (i === axis ? indices.length : d));
  return mapIndices(x, shape, out, (pos) => pos.map((i, d) => (d === axis ? (indices[i] < 0 ? indices[i] + shape[d] : indices[i]) : i)));
}

export function expandRef(x: Float64Array, shape: readonly number[], outShape: readonly number[]): Float64Array {
  const lead = outShape.length - shape.length;
  return mapIndices(x, shape, outShape, (pos) => shape.map((d, k) => (d === 1 ? 0 : pos[k + lead])));
}

/** pads: [before_0, ..., before_{r-1}, after_0, ..., after_{r-1}] over every axis */
export function padRef(x: Float64Array, shape: readonly number[], pads: readonly number[], mode: 'constant' | 'reflect' | 'edge', value = 0): Float64Array {
  const r = shape.length;
  const out = shape.map((d, k) => pads[k] + d + pads[k + r]);
  return mapIndices(
    x,
    shape,
    out,
    (pos) => {
      const j = pos.map((i, k) => i - pads[k]);
      if (mode === 'constant') return j.every((v, k) => v >= 0 && v < shape[k]) ? j : null;
      if (mode === 'edge') return j.map((v, k) => Math.min(Math.max(v, 0), shape[k] - 1));
      return j.map((v, k) => (v < 0 ? -v : v >= shape[k] ? 2 * (shape[k] - 1) - v : v));
    },
    value,
  );
}
