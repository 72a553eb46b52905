// Shapes and data movement: Constant, Identity, Shape, Reshape, Flatten, (Un)Squeeze, Concat,
// Gather, Slice, Split, Pad, Cast, ConstantOfShape, Range, ScatterND, Expand, Transpose.
// Exporters compute shapes with these (x.size(0) becomes Shape -> Gather -> Unsqueeze -> Concat ->
// Reshape), so each folds on the host when its inputs are known; on the GPU, reshapes are views
// and the others the engine's data movement ops (src/ops/layout.ts, src/ops/concat.ts).
import { concat, split } from '../../ops/concat.ts';
import { dropout } from '../../ops/dropout.ts';
import { expand, gather, pad, type PadMode, slice, sliceRanges, type SliceSpec, transpose } from '../../ops/layout.ts';
import { OpError, shapeSize, shapeStr, Tensor } from '../../tensor/index.ts';
import { DataType, type OnnxTensor } from '../ir.ts';
import { concatHost, expandHost, gatherHost, hostTensor, int64Tensor, normAxis, scatterNDHost, sliceHost, transposeHost, typeName, values } from './host.ts';
import { type NodeContext, type OnnxOp, type Value } from './op.ts';

/** A view of x with another shape (same memory; the gradient flows back through the view). */
const view = (x: Tensor, shape: readonly number[]): Tensor => x.reshape(shape);

/** The value with new dims, on the host or as a GPU view. */
function reshaped(c: NodeContext, shape: number[]): Value {
  if (shapeSize(shape) !== shapeSize(c.shape(0))) throw new OpError(c.op, `cannot reshape ${shapeStr(c.shape(0))} to ${shapeStr(shape)}`);
  if (c.isHost(0)) return { ...c.host(0), name: c.output(), dims: shape };
  return view(c.gpu(0), shape);
}

/** ONNX Reshape's target: 0 copies the input's dimension (unless allowzero), -1 is inferred. */
function reshapeTarget(c: NodeContext): number[] {
  const spec = c.numbers(1);
  const inShape = c.shape(0);
  const allowZero = c.int('allowzero', 0) === 1;
  const shape = spec.map((d, i) => (d === 0 && !allowZero ? inShape[i] : d));
  const free = shape.indexOf(-1);
  if (free >= 0) {
    const rest = shapeSize(shape.filter((_, i) => i !== free));
    if (rest === 0 || shapeSize(inShape) % rest !== 0) throw new OpError(c.op, `cannot reshape ${shapeStr(inShape)} to ${shapeStr(spec)}`);
    shape[free] = shapeSize(inShape) / rest;
  }
  return shape;
}

function flattenTarget(c: NodeContext): number[] {
  const s = c.shape(0);
  const raw = c.int('axis', 1);
  const axis = raw < 0 ? raw + s.length : raw;
  if (axis < 0 || axis > s.length) throw new OpError(c.op, `axis ${raw} out of range for ${shapeStr(s)}`);
  return [shapeSize(s.slice(0, axis)), shapeSize(s.slice(axis))];
}

/** Squeeze/Unsqueeze axes: the attribute before opset 13, the optional input 1 from it. */
function axesOf(c: NodeContext): number[] | null {
  if (c.opset < 13) return c.attr('axes') === undefined ? null : c.ints('axes');
  return c.has(1) ? c.numbers(1) : null;
}

function squeezeTarget(c: NodeContext): number[] {
  const s = c.shape(0);
  const given = axesOf(c);
  const axes = given ? given.map((a) => normAxis(c.op, a, s.length)) : s.flatMap((d, i) => (d === 1 ? [i] : []));
  for (const a of axes) if (s[a] !== 1) throw new OpError(c.op, `axis ${a} of ${shapeStr(s)} is not 1`);
  return s.filter((_, i) => !axes.includes(i));
}

function unsqueezeTarget(c: NodeContext): number[] {
  const s = c.shape(0);
  const given = axesOf(c);
  if (!given) throw new OpError(c.op, 'axes are required');
  const rank = s.length + given.length;
  const axes = given.map((a) => normAxis(c.op, a, rank));
  const out: number[] = [];
  let k = 0;
  for (let i = 0; i < rank; i++) out.push(axes.includes(i) ? 1 : s[k++]);
  return out;
}

/** Ops that only give their input another shape: a host value gets new dims, a GPU one a view.
 *  A weight reshaped this way stays the weight (its gradient flows back through the view). */
const reshapeLike = (target: (c: NodeContext) => number[]): OnnxOp => ({
  params: [0],
  fold: (c) => (c.isHost(0) ? [reshaped(c, target(c)) as OnnxTensor] : null),
  run: (c) => [reshaped(c, target(c))],
});

/** Slice's starts, ends, axes and steps: attributes before opset 10, inputs from it. */
function sliceOf(c: NodeContext): SliceSpec {
  if (c.opset < 10) return { starts: c.ints('starts'), ends: c.ints('ends'), axes: c.attr('axes') === undefined ? undefined : c.ints('axes') };
  return { starts: c.numbers(1), ends: c.numbers(2), axes: c.has(3) ? c.numbers(3) : undefined, steps: c.has(4) ? c.numbers(4) : undefined };
}

/** Split's part sizes along the axis: input 1 (opset 13+), the split attribute, num_outputs or equal parts. */
function splitSizes(c: NodeContext, length: number): number[] {
  const parts = c.node.outputs.length;
  if (c.opset >= 13 && c.has(1)) return c.numbers(1);
  if (c.opset < 13 && c.attr('split') !== undefined) return c.ints('split');
  const n = c.attr('num_outputs') === undefined ? parts : c.int('num_outputs');
  const size = Math.ceil(length / n);
  return Array.from({ length: n }, (_, i) => Math.max(0, Math.min(size, length - i * size)));
}

function splitAt(c: NodeContext): { axis: number; sizes: number[]; offsets: number[] } {
  const s = c.shape(0);
  const axis = normAxis(c.op, c.int('axis', 0), s.length);
  const sizes = splitSizes(c, s[axis]);
  if (sizes.length !== c.node.outputs.length || sizes.reduce((a, b) => a + b, 0) !== s[axis]) {
    throw new OpError(c.op, `parts ${JSON.stringify(sizes)} do not split axis ${axis} of ${shapeStr(s)} into ${c.node.outputs.length} outputs`);
  }
  const offsets = sizes.map((_, i) => sizes.slice(0, i).reduce((a, b) => a + b, 0));
  return { axis, sizes, offsets };
}

/** Constant: its value attribute, or a value_float(s) / value_int(s) one. */
function constantValue(c: NodeContext): OnnxTensor {
  const name = c.output();
  const v = (k: string) => c.attr(k);
  if (v('value') !== undefined) return { ...(v('value') as OnnxTensor), name };
  if (v('value_float') !== undefined) return hostTensor(name, DataType.FLOAT, [], [c.float('value_float', 0)]);
  if (v('value_floats') !== undefined) return hostTensor(name, DataType.FLOAT, [c.floats('value_floats').length], c.floats('value_floats'));
  if (v('value_int') !== undefined) return int64Tensor(name, [], [c.int('value_int')]);
  if (v('value_ints') !== undefined) return int64Tensor(name, [c.ints('value_ints').length], c.ints('value_ints'));
  throw new OpError(c.op, `only value, value_float(s) and value_int(s) are supported, got ${Object.keys(c.node.attrs).join(', ')}`);
}

/** The types Cast can produce on the host. */
const CASTABLE: readonly number[] = [DataType.FLOAT, DataType.DOUBLE, DataType.INT64, DataType.INT32, DataType.INT8, DataType.UINT8, DataType.BOOL];

export const SHAPE_OPS: Record<string, OnnxOp> = {
  Constant: { fold: (c) => [constantValue(c)] },
  Identity: {
    fold: (c) => [{ ...c.host(0), name: c.output() }],
    run: (c) => [view(c.gpu(0), c.shape(0))],
  },
  Shape: {
    foldsOnShapes: true,
    fold: (c) => {
      const s = c.shape(0);
      const norm = (v: number) => Math.min(Math.max(v < 0 ? v + s.length : v, 0), s.length);
      const start = c.opset >= 15 ? norm(c.int('start', 0)) : 0;
      const end = c.opset >= 15 && c.attr('end') !== undefined ? norm(c.int('end')) : s.length;
      const dims = s.slice(start, end);
      return [int64Tensor(c.output(), [dims.length], dims)];
    },
  },
  Size: { foldsOnShapes: true, fold: (c) => [int64Tensor(c.output(), [], [shapeSize(c.shape(0))])] },
  Reshape: reshapeLike(reshapeTarget),
  Flatten: reshapeLike(flattenTarget),
  Squeeze: reshapeLike(squeezeTarget),
  Unsqueeze: reshapeLike(unsqueezeTarget),
  Concat: {
    fold: (c) => [concatHost(c.node.inputs.filter((n) => n !== '').map((_, i) => c.host(i)), c.int('axis'), c.output())],
    run: (c) => [concat(c.node.inputs.flatMap((n, i) => (n === '' ? [] : [c.gpu(i)])), c.int('axis'))],
  },
  Gather: {
    // a gather from a weight (an embedding, Swin's relative position bias table) trains it
    params: [0],
    fold: (c) => [gatherHost(c.host(0), c.host(1), c.int('axis', 0), c.output())],
    run: (c) => {
      const s = c.shape(0);
      const axis = normAxis(c.op, c.int('axis', 0), s.length);
      const indices = c.host(1);
      if (indices.dims.length === 0) return [gather(c.gpu(0), c.scalar(1), axis)]; // the axis dropped (x[:, 0])
      const y = gather(c.gpu(0), values(indices), axis);
      if (indices.dims.length === 1) return [y];
      const out = y.reshape([...s.slice(0, axis), ...indices.dims, ...s.slice(axis + 1)]);
      y.discard();
      return [out];
    },
  },
  Slice: {
    params: [0],
    fold: (c) => [sliceHost(c.host(0), sliceRanges(c.op, c.shape(0), sliceOf(c)), c.output())],
    run: (c) => [slice(c.gpu(0), sliceOf(c))],
  },
  Split: {
    fold: (c) => {
      const { axis, sizes, offsets } = splitAt(c);
      const s = c.shape(0);
      return sizes.map((n, k) => sliceHost(c.host(0), s.map((d, a) => (a === axis ? { start: offsets[k], step: 1, count: n } : { start: 0, step: 1, count: d })), c.output(k)));
    },
    run: (c) => {
      const { axis, sizes } = splitAt(c);
      return split(c.gpu(0), sizes, axis);
    },
  },
  Pad: {
    refuse: (node) => (node.attrs.mode !== undefined && !PAD_MODES.includes(node.attrs.mode as string) ? `mode '${node.attrs.mode}'` : null),
    run: (c) => [padNode(c)],
  },
  Cast: {
    fold: (c) => {
      const to = c.int('to');
      if (!CASTABLE.includes(to)) throw new OpError(c.op, `casting to ${typeName(to)} is not supported`);
      const v = values(c.host(0));
      return [hostTensor(c.output(), to, c.shape(0), to === DataType.FLOAT || to === DataType.DOUBLE ? v : v.map(Math.trunc))];
    },
    run: (c) => {
      const to = c.int('to');
      if (to !== DataType.FLOAT) throw new OpError(c.op, `casting a tensor computed on the GPU to ${typeName(to)} is not supported (GPU tensors are float)`);
      return [view(c.gpu(0), c.shape(0))];
    },
  },
  ConstantOfShape: {
    fold: (c) => {
      const dims = c.numbers(0);
      const v = c.attr('value') as OnnxTensor | undefined;
      return [hostTensor(c.output(), v?.dataType ?? DataType.FLOAT, dims, new Array(shapeSize(dims)).fill(v ? values(v)[0] : 0))];
    },
  },
  Range: {
    fold: (c) => {
      const [start, limit, delta] = [0, 1, 2].map((i) => c.scalar(i));
      const n = Math.max(0, Math.ceil((limit - start) / delta));
      if (!Number.isFinite(n) || n > 2 ** 24) throw new OpError(c.op, `range(${start}, ${limit}, ${delta}) is too long`);
      return [hostTensor(c.output(), c.dataType(0), [n], Array.from({ length: n }, (_, i) => start + i * delta))];
    },
  },
  ScatterND: {
    refuse: (node) => (node.attrs.reduction !== undefined && node.attrs.reduction !== 'none' ? `reduction '${node.attrs.reduction}'` : null),
    fold: (c) => [scatterNDHost(c.host(0), c.host(1), c.host(2), c.output())],
  },
  Expand: {
    // ViT's class token expanded to the batch trains
    params: [0],
    fold: (c) => [expandHost(c.host(0), c.numbers(1), c.output())],
    run: (c) => [expand(c.gpu(0), c.numbers(1))],
  },
  Transpose: {
    // a transposed weight (a Linear's, in an export without constant folding) stays the weight
    params: [0],
    fold: (c) => [transposeHost(c.host(0), permOf(c), c.output())],
    run: (c) => [transpose(c.gpu(0), permOf(c))],
  },
  Dropout: {
    refuse: (node, g) => (node.outputs.slice(1).some((o) => o !== '' && g.consumed.has(o)) ? 'the mask output in use' : null),
    // ONNX drops only with the training_mode input (opset 12+) set; a module in training mode always does
    fold: (c) => (dropping(c) ? null : [{ ...c.host(0), name: c.output() }]),
    run: (c) => {
      if (!dropping(c)) return [view(c.gpu(0), c.shape(0))];
      const ratio = c.has(1) ? c.scalar(1) : c.float('ratio', 0.5);
      return [dropout(c.gpu(0), ratio, true, c.seed())];
    },
  },
};

function dropping(c: NodeContext): boolean {
  return c.training || (c.has(2) && c.scalar(2) !== 0);
}

const PAD_MODES: readonly string[] = ['constant', 'reflect', 'edge'] satisfies PadMode[];

/** Transpose's permutation: the attribute, or the dims reversed. */
const permOf = (c: NodeContext): number[] => (c.attr('perm') === undefined ? [...Array(c.shape(0).length).keys()].reverse() : c.ints('perm'));

/** Pad: pads [begin per axis..., end per axis...] from the attribute (opset < 11) or input 1, the
 *  constant from the value attribute or input 2, over every axis or those of input 3 (opset 18). */
function padNode(c: NodeContext): Tensor {
  const pads = c.opset < 11 ? c.ints('pads', []) : c.has(1) ? c.numbers(1) : [];
  const value = c.opset < 11 ? c.float('value', 0) : c.has(2) ? c.scalar(2) : 0;
  const axes = c.has(3) ? c.numbers(3) : undefined;
  return pad(c.gpu(0), pads, c.str('mode', 'constant') as PadMode, value, axes);
}
