// Index arithmetic shared by the ops that walk tensors of different shapes together: numpy
// broadcasting, and the merging of dimensions a kernel can treat as one (PyTorch's TensorIterator
// "coalescing"), which turns e.g. [N,C,H,W] * [N,C,1,1] into [N*C, H*W] * [N*C, 1] so that a kernel
// needs only a few (size, stride) pairs whatever the rank.
import { OpError, shapeStr, type Shape } from './tensor.ts';

/** Row-major strides of a contiguous tensor of `shape`. */
export function contiguousStrides(shape: Shape): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    strides[d] = s;
    s *= shape[d];
  }
  return strides;
}

/** The numpy broadcast of `shapes` (aligned at their last dimension), or null when they clash. */
export function broadcastShapes(...shapes: Shape[]): number[] | null {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const d = rank - s.length + i;
      if (s[i] === out[d] || s[i] === 1) continue;
      if (out[d] !== 1) return null;
      out[d] = s[i];
    }
  }
  return out;
}

/** Strides of a contiguous tensor of `shape` read as if broadcast to `out` (0 along the dims it repeats). */
export function broadcastStrides(shape: Shape, out: Shape): number[] {
  const own = contiguousStrides(shape);
  return out.map((d, i) => {
    const k = i - (out.length - shape.length);
    if (k < 0 || shape[k] === 1) return 0;
    if (shape[k] !== d) throw new OpError('broadcast', `${shapeStr(shape)} does not broadcast to ${shapeStr(out)}`);
    return own[k];
  });
}

/** The axes of `out` along which a tensor of `shape` is repeated when broadcast to it. */
export function broadcastAxes(shape: Shape, out: Shape): number[] {
  const lead = out.length - shape.length;
  return out.flatMap((d, i) => (i < lead || (shape[i - lead] === 1 && d !== 1) ? [i] : []));
}

/**
 * Merges the dimensions of an iteration over `shape` that every operand walks as one: adjacent dims
 * d, d+1 merge when each operand's stride[d] = stride[d+1] * shape[d+1]; dims of size 1 drop out.
 * Returns the merged sizes and each operand's strides over them, innermost dimension first.
 */
export function coalesce(shape: Shape, strides: readonly (readonly number[])[]): { sizes: number[]; strides: number[][] } {
  const sizes: number[] = [];
  const merged: number[][] = strides.map(() => []);
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] === 1) continue;
    const last = sizes.length - 1;
    if (last >= 0 && strides.every((s, k) => s[d] === merged[k][last] * sizes[last])) {
      sizes[last] *= shape[d];
    } else {
      sizes.push(shape[d]);
      strides.forEach((s, k) => merged[k].push(s[d]));
    }
  }
  return { sizes, strides: merged };
}
