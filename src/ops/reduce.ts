// Reductions over any set of axes, as torch's x.sum(dims, keepdim), x.mean(...) and x.amax(...)
// (shaders/reduce.wgsl; the walk and the layouts are described there).
// Backward: every element of a sum contributes with weight 1 (1/R for a mean of R elements), so
// dx = dy broadcast back over the reduced axes (times 1/R); a max passes dy to the elements equal
// to the maximum, shared evenly among ties (torch.amax's rule), so dx = [x == max] * dy / count.
// Read first: the plain float64 loops in src/reference/reduce.ts.
import { getGpu, grid } from '../gpu/index.ts';
import { OpError, recordOp, shapeSize, shapeStr, Tensor, type Shape } from '../tensor/index.ts';
import { coalesce, contiguousStrides } from '../tensor/layout.ts';
import { maxRef, meanRef, sumRef } from '../reference/reduce.ts';
import { registerGradcheck } from './gradcheck.ts';

export interface ReduceOptions {
  /** the axes to reduce (negative counts from the end); all when omitted, none when empty */
  axes?: number | readonly number[];
  /** keep reduced axes as size 1 (else they are removed) */
  keepdim?: boolean;
}

type ReduceKind = 'sum' | 'max';

/**
 * Kept and reduced dimension groups of x (innermost first, at most 4 each): sizes and strides in
 * x, counted in elements of the kernel's T. T is vec4 when the innermost group is a multiple of 4
 * long (every other stride is then a multiple of 4 too): if that group is reduced, a vec4's lanes
 * fold into one output; if it is kept (`columns`), a vec4 holds 4 consecutive outputs and
 * `outputs` counts vec4s. Else T is f32.
 */
interface ReduceWalk {
  /** outputs, in T when `columns` */
  outputs: number;
  /** T elements per output */
  reduced: number;
  vec: 1 | 4;
  columns: boolean;
  kept: { sizes: number[]; strides: number[] };
  red: { sizes: number[]; strides: number[] };
}

const MAX_GROUPS = 4;

/** The sorted, distinct, non-negative axes of `axes` for a tensor of `shape` (a 0-d tensor has none). */
export function normalizeAxes(op: string, shape: Shape, axes: ReduceOptions['axes']): number[] {
  if (axes === undefined) return shape.map((_, i) => i);
  const list = typeof axes === 'number' ? [axes] : [...axes];
  const rank = Math.max(1, shape.length); // torch lets a 0-d tensor take axis 0 or -1
  const out = list.map((a) => {
    if (!Number.isInteger(a) || a < -rank || a >= rank) throw new OpError(op, `axis ${a} is out of range for ${shapeStr(shape)}`);
    return a < 0 ? a + rank : a;
  });
  if (new Set(out).size !== out.length) throw new OpError(op, `axis repeated in ${JSON.stringify(list)} for ${shapeStr(shape)}`);
  return shape.length === 0 ? [] : out.sort((a, b) => a - b);
}

/** The shape of x reduced over `axes` (sorted), with the reduced axes kept as 1 or removed. */
function reducedShape(shape: Shape, axes: readonly number[], keepdim: boolean): number[] {
  return keepdim ? shape.map((d, i) => (axes.includes(i) ? 1 : d)) : shape.filter((_, i) => !axes.includes(i));
}

function walkOf(op: string, shape: Shape, axes: readonly number[]): ReduceWalk {
  const xStrides = contiguousStrides(shape);
  // the output's strides over x's dims, 0 along the reduced ones: merged dims stay of one kind
  const kept = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const outStrides = contiguousStrides(kept).map((s, i) => (axes.includes(i) ? 0 : s));
  const { sizes, strides } = coalesce(shape, [xStrides, outStrides]);
  const reduced = shapeSize(shape.filter((_, i) => axes.includes(i)));
  const innerReduced = strides[1][0] === 0;
  const vec = sizes.length > 0 && sizes[0] % 4 === 0 ? 4 : 1;
  const columns = vec === 4 && !innerReduced;
  const walk: ReduceWalk = {
    outputs: shapeSize(kept) / (columns ? vec : 1),
    reduced: reduced / (innerReduced ? vec : 1),
    vec, columns, kept: { sizes: [], strides: [] }, red: { sizes: [], strides: [] },
  };
  sizes.forEach((size, g) => {
    const group = strides[1][g] === 0 ? walk.red : walk.kept;
    group.sizes.push(g === 0 ? size / vec : size);
    group.strides.push(g === 0 ? strides[0][g] : strides[0][g] / vec); // the innermost stays 1
  });
  if (walk.kept.sizes.length > MAX_GROUPS || walk.red.sizes.length > MAX_GROUPS) {
    throw new OpError(op, `axes ${JSON.stringify(axes)} of ${shapeStr(shape)} interleave kept and reduced dims more than ${MAX_GROUPS} times`);
  }
  return walk;
}

/**
 * Lanes per output and slices per output for O outputs of R elements each. A slice is one
 * workgroup's share; a lane folds every lanes-th element of it. Lanes and slices grow until the
 * adapter is busy (about 16 workgroups on lavapipe, whose barriers cost ~20 us each; tens of
 * thousands of invocations on a GPU), but never below `perLane` elements per lane.
 */
function reduceLayout(outputs: number, reduced: number, allowSlices: boolean): { wg: number; lanes: number; slices: number } {
  const gpu = getGpu();
  const wg = gpu.isCpu ? 64 : Math.min(256, gpu.limits.maxComputeInvocationsPerWorkgroup);
  const busy = gpu.isCpu ? 16 * wg : 256 * wg;
  const perLane = gpu.isCpu ? 256 : 16;
  const pow2 = (v: number) => 2 ** Math.floor(Math.log2(Math.max(1, v)));
  const lanes = Math.min(wg, pow2(Math.ceil(reduced / perLane)), pow2(busy / outputs));
  const slices = allowSlices ? Math.max(1, Math.min(1024, Math.floor(reduced / (lanes * perLane)), Math.ceil(busy / (outputs * lanes)))) : 1;
  return { wg, lanes, slices };
}

/** The Params of a walk (groups padded to 4 with size 1, stride 0). */
function walkParams(w: ReduceWalk, lanes: number, slices: number, scale: number) {
  const pad = (a: number[], fill: number) => [...a, ...new Array(MAX_GROUPS - a.length).fill(fill)];
  const [k0, k1, k2] = pad(w.kept.sizes, 1);
  const [ks0, ks1, ks2, ks3] = pad(w.kept.strides, 0);
  const [r0, r1, r2] = pad(w.red.sizes, 1);
  const [rs0, rs1, rs2, rs3] = pad(w.red.strides, 0);
  const innerReduced = w.red.strides[0] === 1;
  return {
    outputs: w.outputs, reduced: w.reduced, slices, span: Math.ceil(w.reduced / slices), lanes, outputFastest: !innerReduced,
    k0, k1, k2, ks0, ks1, ks2, ks3, r0, r1, r2, rs0, rs1, rs2, rs3, scale,
  };
}

function kernelDefines(w: ReduceWalk) {
  return w.vec === 4 ? { T: 'vec4<f32>', U: 'vec4<u32>', W: '4' } : { T: 'f32', U: 'u32', W: '1' };
}

function workgroups(w: ReduceWalk, wg: number, lanes: number, slices: number): [number, number] {
  return grid(Math.ceil(w.outputs / (wg / lanes)) * slices, 1);
}

/**
 * Launches the forward walk: returns the O results (times `scale`) as `shape` and, for max, the
 * tie counts [O]. With several slices, a second launch reduces the [O, slices] partial results.
 */
function reduceForward(kind: ReduceKind, x: Tensor, w: ReduceWalk, shape: Shape, scale: number, label: string): { out: Tensor; count: Tensor | null } {
  const gpu = getGpu();
  const run = (input: Tensor, inputCount: Tensor | null, walk: ReduceWalk, allowSlices: boolean, s: number, what: string) => {
    const { wg, lanes, slices } = reduceLayout(walk.outputs, walk.reduced, allowSlices);
    const out = Tensor.empty(slices === 1 ? shape : walk.columns ? [walk.outputs, slices, walk.vec] : [walk.outputs, slices]);
    // the sum writes no counts: a scratch buffer fills the binding (two writable bindings of one buffer are invalid)
    const count = Tensor.empty(kind === 'max' ? out.shape : [1], 'reduce counts');
    gpu.dispatch({
      kernel: { shader: 'reduce', entry: walk.columns ? 'reduceColumns' : 'reduce', bindings: ['write', 'write', 'read', 'read'], constants: { WG: wg, IS_MAX: Number(kind === 'max'), COUNTED: Number(inputCount !== null) }, defines: kernelDefines(walk) },
      buffers: [out.buffer, count.buffer, input.buffer, (inputCount ?? input).buffer],
      params: walkParams(walk, lanes, slices, slices === 1 ? s : 1),
      workgroups: workgroups(walk, wg, lanes, slices),
      label: `${label}${what}`,
      work: { bytes: 4 * (input.size * (inputCount ? 2 : 1) + out.size * (kind === 'max' ? 2 : 1)) },
    });
    return { out, count, slices };
  };
  const first = run(x, null, w, true, scale, '');
  if (first.slices === 1) {
    if (kind === 'sum') first.count.release();
    return { out: first.out, count: kind === 'max' ? first.count : null };
  }
  // the partial results [O, slices] (of T when the outputs are columns): summed over the slices
  const second = run(first.out, kind === 'max' ? first.count : null, walkOf(label, first.out.shape, [1]), false, scale, ' final');
  first.out.release();
  first.count.release();
  if (kind === 'sum') second.count.release();
  return { out: second.out, count: kind === 'max' ? second.count : null };
}

function reduceOp(op: string, kind: ReduceKind, x: Tensor, opts: ReduceOptions, meanScale: boolean): Tensor {
  if (!(x instanceof Tensor)) throw new OpError(op, `expected a tensor, got ${typeof x}`);
  const axes = normalizeAxes(op, x.shape, opts.axes);
  const outShape = reducedShape(x.shape, axes, opts.keepdim ?? false);
  const w = walkOf(op, x.shape, axes);
  const reduced = shapeSize(axes.map((a) => x.shape[a]));
  if (kind === 'max' && reduced === 0) throw new OpError(op, `cannot take the max over the empty axes ${JSON.stringify(axes)} of ${shapeStr(x.shape)}`);
  const scale = meanScale ? 1 / reduced : 1; // the mean of nothing is NaN, as in torch
  const label = `${op} ${shapeStr(x.shape)} axes ${JSON.stringify(axes)}`;
  if (w.outputs === 0) return Tensor.empty(outShape);
  const { out, count } = reduceForward(kind, x, w, outShape, scale, label);
  const y = recordOp(op, [x], out, (dy) => {
    const dx = Tensor.empty(x.shape);
    const { wg, lanes, slices } = reduceLayout(w.outputs, w.reduced, true);
    // unused read bindings of the sum are given dy, never read
    const saved = kind === 'max' ? [x, out, count!] : [dy, dy, dy];
    getGpu().dispatch({
      kernel: { shader: 'reduce', entry: w.columns ? 'reduceColumnsBackward' : 'reduceBackward', bindings: ['write', 'read', 'read', 'read', 'read'], constants: { WG: wg, IS_MAX: Number(kind === 'max') }, defines: kernelDefines(w) },
      buffers: [dx.buffer, dy.buffer, ...saved.map((t) => t.buffer)],
      params: walkParams(w, lanes, slices, scale),
      workgroups: workgroups(w, wg, lanes, slices),
      label: `${label}.backward`,
      work: { bytes: 4 * (x.size * (kind === 'max' ? 2 : 1) + dy.size * (kind === 'max' ? 3 : 1)) },
    });
    return [dx];
  });
  if (!y.node) count?.release();
  return y;
}

/** The sum over `axes` (all by default), as torch's x.sum(dim, keepdim). */
export function sum(x: Tensor, opts: ReduceOptions = {}): Tensor {
  return reduceOp('sum', 'sum', x, opts, false);
}

/** The mean over `axes` (all by default), as torch's x.mean(dim, keepdim). */
export function mean(x: Tensor, opts: ReduceOptions = {}): Tensor {
  return reduceOp('mean', 'sum', x, opts, true);
}

/** The maximum over `axes` (all by default), as torch.amax(x, dim, keepdim): the gradient is shared
 *  evenly among tied maxima. */
export function max(x: Tensor, opts: ReduceOptions = {}): Tensor {
  return reduceOp('max', 'max', x, opts, false);
}

/** x summed over `axes` into `shape` (x's shape with those axes made 1 or dropped) times `scale`,
 *  not recorded on the tape: the gradient of a broadcast operand, the sum of a loss. */
export function reduceSumTo(x: Tensor, axes: readonly number[], shape: Shape, scale: number, label: string): Tensor {
  const w = walkOf(label, x.shape, axes);
  if (w.outputs === 0) return Tensor.empty(shape);
  return reduceForward('sum', x, w, shape, scale, label).out;
}

/**
 * The sum of x's elements times `scale`, into a new [1] tensor (not recorded on the tape). Shared
 * with the ops whose loss is a sum of per-row terms (softmax cross-entropy).
 */
export function reduceSum(x: Tensor, scale: number, label: string): Tensor {
  return reduceSumTo(x, x.shape.map((_, i) => i), [1], scale, label);
}

// ---- gradcheck (--options '{"axes":[1]}'; all axes by default) -------------------------------

for (const [name, op, ref] of [['sum', sum, sumRef], ['mean', mean, meanRef], ['max', max, maxRef]] as const) {
  registerGradcheck({
    name,
    inputs: ['x'],
    shapes: ([x = [3, 4, 5]]) => [x],
    options: { axes: null as number | number[] | null, keepdim: false },
    run: ([x], o) => op(x, { axes: o.axes ?? undefined, keepdim: o.keepdim }),
    reference: ([x], [shape], o) => ref(x, shape, normalizeAxes(name, shape, o.axes ?? undefined)),
  });
}
