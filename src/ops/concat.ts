// Concatenation along any axis (ONNX Concat, torch.cat), and the two ops its gradient is made of:
// narrow (a slice of consecutive rows along one axis, torch.narrow) and padAxis (constant padding
// before and after along one axis: pad's constant mode, in src/ops/layout.ts). split cuts x into
// narrow pieces, concat's inverse.
// All three are the one block-copy kernel of shaders/concat.wgsl:
//   concat:  y = [x0; x1; ...] along axis      dx_k = narrow(dy, axis, offset_k, size_k)
//   narrow:  y = x[..., start:start+len, ...]  dx = padAxis(dy, axis, start, rest, 0)
//   padAxis: y = [c..c; x; c..c]               dx = narrow(dy, axis, before, size)
// Read first: the plain float64 loops in src/reference/concat.ts; the kernels are in shaders/concat.wgsl.
import { getGpu, grid } from '../gpu/index.ts';
import { concatRef, narrowRef, padAxisRef } from '../reference/concat.ts';
import { OpError, recordOp, type Shape, shapeSize, shapeStr, Tensor } from '../tensor/index.ts';
import { registerGradcheck } from './gradcheck.ts';

/** The axis in [0, rank), accepting negative axes as ONNX and torch do. */
export function normAxis(op: string, axis: number, shape: Shape): number {
  const r = shape.length;
  if (!Number.isInteger(axis) || axis < -r || axis >= r) throw new OpError(op, `axis ${axis} out of range for ${shapeStr(shape)}`);
  return axis < 0 ? axis + r : axis;
}

/** Copies rows [srcOff, srcOff+len) of src's `axis` into rows [dstOff, dstOff+len) of dst's. */
function copyBlock(dst: Tensor, src: Tensor, axis: number, len: number, srcOff: number, dstOff: number, label: string): void {
  const outer = shapeSize(src.shape.slice(0, axis));
  const inner = shapeSize(src.shape.slice(axis + 1));
  const n = outer * len * inner;
  if (n === 0) return;
  const vec = inner % 4 === 0;
  const innerT = vec ? inner / 4 : inner;
  getGpu().dispatch({
    kernel: { shader: 'concat', entry: 'copy_block', bindings: ['write', 'read'], defines: { T: vec ? 'vec4<f32>' : 'f32' } },
    buffers: [dst.buffer, src.buffer],
    params: { n: n / (vec ? 4 : 1), inner_t: innerT, len, src_axis: src.shape[axis], src_off: srcOff, dst_axis: dst.shape[axis], dst_off: dstOff },
    workgroups: grid(n / (vec ? 4 : 1), 256),
    label,
  });
}

/** x[..., start:start+length, ...] along `axis` (torch.narrow), as a new tensor. */
export function narrow(x: Tensor, axis: number, start: number, length: number): Tensor {
  const op = 'narrow';
  const a = normAxis(op, axis, x.shape);
  if (!Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 || start + length > x.shape[a]) {
    throw new OpError(op, `rows [${start}, ${start + length}) of axis ${a} are outside ${shapeStr(x.shape)}`);
  }
  const shape = x.shape.map((d, i) => (i === a ? length : d));
  const out = Tensor.empty(shape);
  copyBlock(out, x, a, length, start, 0, `${op} x${shapeStr(x.shape)} axis ${a} [${start}, ${start + length})`);
  return recordOp(op, [x], out, (dy) => [padAxis(dy, a, start, x.shape[a] - start - length, 0)]);
}

/** Pads `x` along `axis` with `before` and `after` rows of the constant `value` (-Infinity allowed). */
export function padAxis(x: Tensor, axis: number, before: number, after: number, value = 0): Tensor {
  const op = 'padAxis';
  const a = normAxis(op, axis, x.shape);
  if (![before, after].every((p) => Number.isInteger(p) && p >= 0)) {
    throw new OpError(op, `pads must be non-negative integers, got ${before}, ${after} for ${shapeStr(x.shape)}`);
  }
  const shape = x.shape.map((d, i) => (i === a ? d + before + after : d));
  const out = Tensor.full(shape, value);
  copyBlock(out, x, a, x.shape[a], 0, before, `${op} x${shapeStr(x.shape)} axis ${a} +${before}/+${after}`);
  return recordOp(op, [x], out, (dy) => [narrow(dy, a, before, x.shape[a])]);
}

/** Joins tensors that agree on every dimension but `axis` (negative counts from the end). */
export function concat(xs: readonly Tensor[], axis: number): Tensor {
  const op = 'concat';
  if (xs.length === 0 || !xs.every((t) => t instanceof Tensor)) throw new OpError(op, 'expects a non-empty list of tensors');
  const first = xs[0].shape;
  const a = normAxis(op, axis, first);
  const shapes = () => xs.map((t) => shapeStr(t.shape)).join(', ');
  for (const t of xs) {
    if (t.ndim !== first.length || t.shape.some((d, i) => i !== a && d !== first[i])) {
      throw new OpError(op, `shapes must agree except along axis ${a}: ${shapes()}`);
    }
  }
  const offsets: number[] = [];
  let total = 0;
  for (const t of xs) {
    offsets.push(total);
    total += t.shape[a];
  }
  const out = Tensor.empty(first.map((d, i) => (i === a ? total : d)));
  const label = `${op} axis ${a} ${shapes()}`;
  xs.forEach((t, k) => copyBlock(out, t, a, t.shape[a], 0, offsets[k], `${label} #${k}`));
  return recordOp(op, xs, out, (dy, needs) => xs.map((t, k) => (needs[k] ? narrow(dy, a, offsets[k], t.shape[a]) : null)));
}

/** Pieces of x along `axis` (torch.split, ONNX Split): `sizes` lists their lengths, which add up
 *  to the axis, or one number cuts pieces of that length (the last may be shorter). Each piece is
 *  a narrow, and so is its gradient's way back. */
export function split(x: Tensor, sizes: number | readonly number[], axis = 0): Tensor[] {
  const op = 'split';
  if (!(x instanceof Tensor)) throw new OpError(op, `expected a tensor, got ${typeof x}`);
  const a = normAxis(op, axis, x.shape);
  const n = x.shape[a];
  if (typeof sizes === 'number' && !(Number.isInteger(sizes) && sizes > 0)) throw new OpError(op, `the piece size ${sizes} must be a positive integer`);
  const list = typeof sizes === 'number' ? Array.from({ length: Math.max(1, Math.ceil(n / sizes)) }, (_, i) => Math.min(sizes, n - i * sizes)) : [...sizes];
  if (list.some((s) => !Number.isInteger(s) || s < 0) || list.reduce((t, s) => t + s, 0) !== n) {
    throw new OpError(op, `sizes ${JSON.stringify(sizes)} do not split axis ${a} of ${shapeStr(x.shape)} (${n} rows)`);
  }
  let start = 0;
  return list.map((len) => {
    const piece = narrow(x, a, start, len);
    start += len;
    return piece;
  });
}

// ---- gradcheck ------------------------------------------------------------------------------

registerGradcheck({
  name: 'concat',
  inputs: ['a', 'b'],
  shapes: ([a = [2, 3, 4], b = a.map((d, i) => (i === 1 ? d + 2 : d))]) => [a, b],
  options: { axis: 1 },
  run: (xs, o) => concat(xs, o.axis),
  reference: (xs, shapes, o) => concatRef(xs, shapes.map((s) => [...s]), normAxis('concat', o.axis, shapes[0])),
});

registerGradcheck({
  name: 'narrow',
  inputs: ['x'],
  shapes: ([x = [2, 7, 3]]) => [x],
  options: { axis: 1, start: 2, length: 4 },
  run: ([x], o) => narrow(x, o.axis, o.start, o.length),
  reference: ([x], [shape], o) => narrowRef(x, [...shape], normAxis('narrow', o.axis, shape), o.start, o.length),
});

registerGradcheck({
  name: 'padaxis',
  inputs: ['x'],
  shapes: ([x = [2, 3, 4]]) => [x],
  options: { axis: -1, before: 2, after: 1, value: 0.5 },
  run: ([x], o) => padAxis(x, o.axis, o.before, o.after, o.value),
  reference: ([x], [shape], o) => padAxisRef(x, [...shape], normAxis('padAxis', o.axis, shape), o.before, o.after, o.value),
});

registerGradcheck({
  name: 'split',
  inputs: ['x'],
  shapes: ([x = [2, 7, 3]]) => [x],
  // one piece of the split (each piece's gradient flows back on its own)
  options: { sizes: [2, 4, 1] as number | number[], axis: 1, piece: 1 },
  run: ([x], o) => split(x, o.sizes, o.axis)[o.piece],
  reference: ([x], [shape], o) => {
    const a = normAxis('split', o.axis, shape);
    const n = shape[a];
    const sizes = typeof o.sizes === 'number' ? Array.from({ length: Math.ceil(n / o.sizes) }, (_, i) => Math.min(o.sizes as number, n - i * (o.sizes as number))) : o.sizes;
    const start = sizes.slice(0, o.piece).reduce((t, v) => t + v, 0);
    return narrowRef(x, [...shape], a, start, sizes[o.piece]);
  },
});
