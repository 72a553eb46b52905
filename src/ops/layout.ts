// Data movement: transpose, slice, gather (constant indices), expand and pad, forward and backward
// (shaders/layout.wgsl). Each is a copy of elements to other positions, so each gradient sends dy
// back to where the elements came from:
//   transpose(x, perm):          y = x with its dims permuted      dx = transpose(dy, inverse perm)
//   slice(x, starts/ends/steps): y = x[start:end:step, ...]        dx = zeros with dy written back
//   gather(x, indices, axis):    y = x.take(indices, axis)         dx = dy added back row by row
//                                                                  (a repeated index sums its rows)
//   expand(x, shape):            y = x broadcast to shape          dx = dy summed over the repeats
//   pad(x, pads, mode, value):   constant (padAxis in concat.ts), reflect or edge, axis by axis;
//                                dx = dy summed over the rows each row of x went to
// Transpose, slice and expand are one kernel: out[i] = x[offset + pos(i) . strides], the strides
// permuted, stepped or zero. Split (pieces of narrow) lives with concat in concat.ts.
// Read first: the plain float64 loops in src/reference/layout.ts.
import { getGpu, grid } from '../gpu/index.ts';
import { OpError, recordOp, type Shape, shapeSize, shapeStr, Tensor } from '../tensor/index.ts';
import { broadcastAxes, broadcastShapes, broadcastStrides, coalesce, contiguousStrides } from '../tensor/layout.ts';
import { expandRef, gatherRef, padRef, sliceRef, transposeRef } from '../reference/layout.ts';
import { normAxis, padAxis } from './concat.ts';
import { registerGradcheck } from './gradcheck.ts';
import { reduceSumTo } from './reduce.ts';

/** merged dims the strided kernels walk */
const MAX_DIMS = 6;
/** elements each invocation writes (RUN in shaders/layout.wgsl) */
const RUN = 8;

function checkTensor(op: string, x: Tensor): void {
  if (!(x instanceof Tensor)) throw new OpError(op, `expected a tensor, got ${typeof x}`);
}

/**
 * Launches `strided` (out[i] = x[offset + pos(i) . strides]) or `scatter` (the other way round)
 * over a walk of `shape` in which `src` holds x's (out's) element strides per dim; as vec4s when
 * the walk's innermost merged dim is contiguous and every size, stride and the offset divide by 4.
 */
function launchStrided(entry: 'strided' | 'scatter', out: Tensor, x: Tensor, shape: Shape, src: readonly number[], offset: number, label: string): void {
  const n = shapeSize(shape);
  if (n === 0) return;
  const walk = coalesce(shape, [contiguousStrides(shape), src]);
  if (walk.sizes.length > MAX_DIMS) throw new OpError(label, `needs more than ${MAX_DIMS} merged dimensions`);
  const strides = walk.strides[1];
  const vec4 = walk.sizes[0] % 4 === 0 && walk.strides[0][0] === 1 && strides[0] === 1 && offset % 4 === 0 && strides.slice(1).every((s) => s % 4 === 0);
  const w = vec4 ? 4 : 1;
  const params: Record<string, number> = { n: n / w, offset: offset / w, rows: 0, picks: 0, inner: 0, before: 0, reflect: 0 };
  for (let d = 0; d < MAX_DIMS; d++) {
    if (d < MAX_DIMS - 1) params[`d${d}`] = (walk.sizes[d] ?? 1) / (d === 0 ? w : 1);
    params[`s${d}`] = d === 0 ? (strides[0] ?? 0) : (strides[d] ?? 0) / w;
  }
  getGpu().dispatch({
    kernel: { shader: 'layout', entry, bindings: ['write', 'read'], defines: elementDefines(vec4) },
    buffers: [out.buffer, x.buffer],
    params,
    workgroups: grid(Math.ceil(n / w / RUN), 256),
    label,
    work: { bytes: 8 * n },
  });
}

/** The shader's element type: vec4 (4 floats a load) or f32. */
function elementDefines(vec4: boolean): Record<string, string> {
  return { ELEM: vec4 ? 'vec4<f32>' : 'f32' };
}

/** Launches one of the row kernels over x viewed as [outer, rows, inner]; as vec4s when rows of
 *  `inner` elements are whole vec4s. */
function launchRows(entry: string, out: Tensor, inputs: Tensor[], p: { rows: number; picks: number; inner: number; before?: number; reflect?: boolean }, label: string): void {
  const n = out.size;
  if (n === 0) return;
  const w = p.inner % 4 === 0 ? 4 : 1;
  const params: Record<string, number | boolean> = { n: n / w, offset: 0, rows: p.rows, picks: p.picks, inner: p.inner / w, before: p.before ?? 0, reflect: p.reflect ?? false };
  for (let d = 0; d < MAX_DIMS; d++) {
    if (d < MAX_DIMS - 1) params[`d${d}`] = 1;
    params[`s${d}`] = 0;
  }
  getGpu().dispatch({
    kernel: { shader: 'layout', entry, bindings: ['write', ...inputs.map(() => 'read' as const)], defines: elementDefines(w === 4) },
    buffers: [out.buffer, ...inputs.map((t) => t.buffer)],
    params,
    workgroups: grid(Math.ceil(n / w / RUN), 256),
    label,
    work: { bytes: 8 * n },
  });
}

// ---- transpose ------------------------------------------------------------------------------

/** x with its dims permuted: y.shape[d] = x.shape[perm[d]] (torch.permute, ONNX Transpose; perm
 *  defaults to reversing the dims). */
export function transpose(x: Tensor, perm?: readonly number[]): Tensor {
  const op = 'transpose';
  checkTensor(op, x);
  const p = perm ? perm.map((a) => (Number.isInteger(a) && a < 0 ? a + x.ndim : a)) : x.shape.map((_, i) => x.ndim - 1 - i);
  if (p.length !== x.ndim || [...p].sort((a, b) => a - b).some((a, i) => a !== i)) {
    throw new OpError(op, `perm ${JSON.stringify(perm)} is not a permutation of the ${x.ndim} dims of ${shapeStr(x.shape)}`);
  }
  const shape = p.map((a) => x.shape[a]);
  const strides = contiguousStrides(x.shape);
  const out = Tensor.empty(shape);
  launchStrided('strided', out, x, shape, p.map((a) => strides[a]), 0, `${op} ${shapeStr(x.shape)} perm [${p}]`);
  const inverse = p.map((_, d) => p.indexOf(d));
  return recordOp(op, [x], out, (dy) => [transpose(dy, inverse)]);
}

// ---- slice ----------------------------------------------------------------------------------

export interface SliceSpec {
  starts: readonly number[];
  ends: readonly number[];
  /** the axes the starts and ends are for (negative counts from the end); all by default */
  axes?: readonly number[];
  /** 1 by default; negative walks backward */
  steps?: readonly number[];
}

/** The range of each axis a slice keeps: its first index, step and length. */
export interface SliceRange {
  start: number;
  step: number;
  count: number;
}

/**
 * ONNX Slice's (and Python's) rules per axis: negative starts and ends count from the end, then
 * are clamped to [0, size] stepping forward and to [-1, size - 1] stepping backward (as numpy and
 * the ONNX reference do), so out-of-range bounds select what exists.
 */
export function sliceRanges(op: string, shape: Shape, spec: SliceSpec): SliceRange[] {
  const { starts, ends } = spec;
  const axes = spec.axes ?? starts.map((_, i) => i);
  const steps = spec.steps ?? starts.map(() => 1);
  if (ends.length !== starts.length || axes.length !== starts.length || steps.length !== starts.length) {
    throw new OpError(op, `starts, ends, axes and steps differ in length (${starts.length}, ${ends.length}, ${axes.length}, ${steps.length}) for ${shapeStr(shape)}`);
  }
  const ranges: SliceRange[] = shape.map((d) => ({ start: 0, step: 1, count: d }));
  const seen = new Set<number>();
  axes.forEach((axis, i) => {
    const a = normAxis(op, axis, shape);
    if (seen.has(a)) throw new OpError(op, `axis ${a} given twice for ${shapeStr(shape)}`);
    seen.add(a);
    const d = shape[a];
    const step = steps[i];
    if (!Number.isInteger(step) || step === 0) throw new OpError(op, `step ${step} on axis ${a} must be a non-zero integer`);
    const [lo, hi] = step > 0 ? [0, d] : [-1, d - 1];
    const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + d : v, lo), hi);
    if (![starts[i], ends[i]].every((v) => typeof v === 'number' && !Number.isNaN(v))) throw new OpError(op, `start ${starts[i]} and end ${ends[i]} of axis ${a} must be numbers`);
    const start = clamp(starts[i]);
    ranges[a] = { start, step, count: Math.max(0, Math.ceil((clamp(ends[i]) - start) / step)) };
  });
  return ranges;
}

/** x[starts:ends:steps] along `axes` (ONNX Slice, Python slicing with negative indices and steps). */
export function slice(x: Tensor, spec: SliceSpec): Tensor {
  const op = 'slice';
  checkTensor(op, x);
  const ranges = sliceRanges(op, x.shape, spec);
  const shape = ranges.map((r) => r.count);
  const strides = contiguousStrides(x.shape);
  const offset = ranges.reduce((o, r, d) => o + (r.count > 0 ? r.start * strides[d] : 0), 0);
  const stepped = ranges.map((r, d) => r.step * strides[d]);
  const label = `${op} ${shapeStr(x.shape)} -> ${shapeStr(shape)}`;
  const out = Tensor.empty(shape);
  launchStrided('strided', out, x, shape, stepped, offset, label);
  return recordOp(op, [x], out, (dy) => {
    const dx = Tensor.zeros(x.shape);
    launchStrided('scatter', dx, dy, shape, stepped, offset, `${label}.backward`);
    return [dx];
  });
}

// ---- gather ---------------------------------------------------------------------------------

/**
 * x.take(indices, axis) for indices known on the host (numpy.take, ONNX Gather, torch.index_select):
 * the rows of `axis` at `indices` (negative count from the end, repeats allowed), which replace the
 * axis: [..., n, ...] -> [..., indices.length, ...]; a single number drops the axis (x[:, i]).
 * Indices of another shape: gather them flattened and reshape.
 */
export function gather(x: Tensor, indices: number | ArrayLike<number>, axis = 0): Tensor {
  const op = 'gather';
  checkTensor(op, x);
  const a = normAxis(op, axis, x.shape);
  const rows = x.shape[a];
  const list = typeof indices === 'number' ? [indices] : Array.from(indices);
  const index = new Uint32Array(list.length);
  list.forEach((v, j) => {
    if (!Number.isInteger(v) || v < -rows || v >= rows) throw new OpError(op, `index ${v} is out of range for axis ${a} of ${shapeStr(x.shape)}`);
    index[j] = v < 0 ? v + rows : v;
  });
  const inner = shapeSize(x.shape.slice(a + 1));
  const picks = index.length;
  const shape = x.shape.map((d, i) => (i === a ? picks : d));
  const label = `${op} ${shapeStr(x.shape)} axis ${a} [${picks} indices]`;
  const indexT = Tensor.empty([Math.max(1, picks)], 'gather indices'); // u32 in an f32 tensor's storage
  getGpu().upload(indexT.buffer, index);
  const out = Tensor.empty(shape);
  launchRows('gather_rows', out, [x, indexT], { rows, picks, inner }, label);
  indexT.release();
  const y = recordOp(op, [x], out, (dy) => {
    // the picks of each row k of x, in CSR form: first[k] .. first[k + 1] into the list
    const first = new Uint32Array(rows + 1);
    for (const k of index) first[k + 1]++;
    for (let k = 0; k < rows; k++) first[k + 1] += first[k];
    const fill = first.slice(0, rows);
    const byRow = new Uint32Array(Math.max(1, picks));
    index.forEach((k, j) => (byRow[fill[k]++] = j));
    const [firstT, listT] = [first, byRow].map((a) => {
      const t = Tensor.empty([a.length], 'gather backward indices');
      getGpu().upload(t.buffer, a);
      return t;
    });
    const dx = Tensor.empty(x.shape);
    launchRows('gather_rows_backward', dx, [dy, firstT, listT], { rows, picks, inner }, `${label}.backward`);
    firstT.release();
    listT.release();
    return [dx];
  });
  return typeof indices === 'number' ? y.reshape(x.shape.filter((_, i) => i !== a)) : y;
}

// ---- expand ---------------------------------------------------------------------------------

/**
 * x broadcast to `shape` (ONNX Expand, numpy broadcasting: the output is the broadcast of x's shape
 * and `shape`, either may be the larger in a dim; torch.expand's -1 keeps x's dim).
 */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  const op = 'expand';
  checkTensor(op, x);
  const lead = shape.length - x.ndim;
  const target = shape.map((d, i) => (d === -1 && i >= lead ? x.shape[i - lead] : d));
  const outShape = target.every((d) => Number.isInteger(d) && d >= 0) ? broadcastShapes(x.shape, target) : null;
  if (!outShape) throw new OpError(op, `${shapeStr(x.shape)} does not broadcast to ${shapeStr(shape)}`);
  const out = Tensor.empty(outShape);
  const label = `${op} ${shapeStr(x.shape)} -> ${shapeStr(outShape)}`;
  launchStrided('strided', out, x, outShape, broadcastStrides(x.shape, outShape), 0, label);
  return recordOp(op, [x], out, (dy) => [reduceSumTo(dy, broadcastAxes(x.shape, outShape), x.shape, 1, `${label}.backward`)]);
}

// ---- pad ------------------------------------------------------------------------------------

export type PadMode = 'constant' | 'reflect' | 'edge';

/** One axis padded by mirroring (reflect) or repeating (edge) its edge rows. */
function padRows(x: Tensor, axis: number, before: number, after: number, mode: 'reflect' | 'edge'): Tensor {
  const op = 'pad';
  const rows = x.shape[axis];
  const geometry = { rows, picks: before + rows + after, inner: shapeSize(x.shape.slice(axis + 1)), before, reflect: mode === 'reflect' };
  const label = `${op} ${mode} ${shapeStr(x.shape)} axis ${axis} +${before}/+${after}`;
  const out = Tensor.empty(x.shape.map((d, i) => (i === axis ? geometry.picks : d)));
  launchRows('pad_rows', out, [x], geometry, label);
  return recordOp(op, [x], out, (dy) => {
    const dx = Tensor.empty(x.shape);
    launchRows('pad_rows_backward', dx, [dy], geometry, `${label}.backward`);
    return [dx];
  });
}

/**
 * Pads x by pads = [before_0, ..., before_k, after_0, ..., after_k] along `axes` (all by default),
 * as ONNX Pad: with `value` (constant), the mirror image of the rows next to the edge (reflect,
 * torch's 'reflect': pads smaller than the axis) or the edge rows repeated (edge, torch's
 * 'replicate').
 */
export function pad(x: Tensor, pads: readonly number[], mode: PadMode = 'constant', value = 0, axes?: readonly number[]): Tensor {
  const op = 'pad';
  checkTensor(op, x);
  const list = (axes ?? x.shape.map((_, i) => i)).map((a) => normAxis(op, a, x.shape));
  if (!['constant', 'reflect', 'edge'].includes(mode)) throw new OpError(op, `mode must be 'constant', 'reflect' or 'edge', got '${mode}'`);
  if (pads.length !== 2 * list.length || pads.some((v) => !Number.isInteger(v) || v < 0)) {
    throw new OpError(op, `expected ${2 * list.length} non-negative integer pads for x${shapeStr(x.shape)}, got ${JSON.stringify(pads)}`);
  }
  let y = x;
  list.forEach((axis, i) => {
    const [before, after] = [pads[i], pads[i + list.length]];
    if (before === 0 && after === 0) return;
    const rows = x.shape[axis];
    if (mode === 'reflect' && Math.max(before, after) >= rows) {
      throw new OpError(op, `reflect pads ${before}, ${after} of axis ${axis} must be smaller than its size ${rows} (x${shapeStr(x.shape)})`);
    }
    if (mode === 'edge' && rows === 0) throw new OpError(op, `edge padding of the empty axis ${axis} of x${shapeStr(x.shape)}`);
    const next = mode === 'constant' ? padAxis(y, axis, before, after, value) : padRows(y, axis, before, after, mode);
    if (y !== x) y.discard();
    y = next;
  });
  return y === x ? x.reshape(x.shape) : y;
}

// ---- gradcheck ------------------------------------------------------------------------------

registerGradcheck({
  name: 'transpose',
  inputs: ['x'],
  shapes: ([x = [2, 3, 4]]) => [x],
  options: { perm: [2, 0, 1] },
  run: ([x], o) => transpose(x, o.perm),
  reference: ([x], [shape], o) => transposeRef(x, shape, o.perm),
});

registerGradcheck({
  name: 'slice',
  inputs: ['x'],
  shapes: ([x = [4, 7, 3]]) => [x],
  options: { starts: [1, -1], ends: [4, 0], axes: [0, 1], steps: [2, -2] } as SliceSpec,
  run: ([x], o) => slice(x, o),
  reference: ([x], [shape], o) => sliceRef(x, shape, sliceRanges('slice', shape, o)),
});

registerGradcheck({
  name: 'gather',
  inputs: ['x'],
  shapes: ([x = [5, 3]]) => [x],
  options: { indices: [4, 0, 2, 0], axis: 0 },
  run: ([x], o) => gather(x, o.indices, o.axis),
  reference: ([x], [shape], o) => gatherRef(x, shape, o.indices, normAxis('gather', o.axis, shape)),
});

registerGradcheck({
  name: 'expand',
  inputs: ['x'],
  shapes: ([x = [3, 1]]) => [x],
  options: { shape: [2, 3, 4] },
  run: ([x], o) => expand(x, o.shape),
  reference: ([x], [shape], o) => expandRef(x, shape, o.shape),
});

registerGradcheck({
  name: 'pad',
  inputs: ['x'],
  shapes: ([x = [2, 5, 4]]) => [x],
  // pads [before..., after...] over every axis
  options: { pads: [0, 2, 1, 1, 3, 2], mode: 'reflect' as PadMode, value: 0 },
  run: ([x], o) => pad(x, o.pads, o.mode, o.value),
  reference: ([x], [shape], o) => padRef(x, shape, o.pads, o.mode, o.value),
});
