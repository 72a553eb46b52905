// Softmax and log-softmax along any axis, and the fused softmax-cross-entropy loss
// (shaders/softmax.wgsl).
//   softmax:     y = exp(x - max) / sum exp(x - max) along the axis; backward dx = y * (dy - sum(dy * y))
//   logSoftmax:  y = x - max - log sum exp(x - max);                  backward dx = dy - exp(y) * sum(dy)
//   crossEntropy = torch.nn.functional.cross_entropy(logits, target, weight, ignore_index,
//   reduction, label_smoothing), the target class indices or probabilities: the forward keeps each
//   row's (max, log sum exp, summed target weight Q) so that the backward, (Q * softmax - q) * dLoss
//   (/ the mean's divisor), is one pass over the logits that builds the target q from the label.
// Every kernel works on rows: around the axis the tensor is [outer, C, inner], and a row's C
// elements lie `inner` apart, so no axis needs a transpose (the last has inner = 1). Strided rows
// are also the faster way on lavapipe: softmax over axis 1 of [4,64,3136] takes 5.8 ms, against
// 41 ms transposed to the last axis and back (and 0.6 against 3.0 ms over axis 0 of [64,1000]).
// Read first: the plain float64 loops in src/reference/softmax.ts; the kernels are in shaders/softmax.wgsl.
import { getGpu, grid, type Access } from '../gpu/index.ts';
import { isGradEnabled, OpError, recordOp, shapeSize, shapeStr, Tensor } from '../tensor/index.ts';
import { crossEntropyRef, logSoftmaxRef, softmaxRef } from '../reference/softmax.ts';
import { registerGradcheck } from './gradcheck.ts';
import { reduceSum } from './reduce.ts';

export interface CrossEntropyOptions {
  /** 'none': one loss per row, shaped as the logits without their class axis */
  reduction?: 'mean' | 'sum' | 'none';
  labelSmoothing?: number;
  /** [C] class weights (torch's weight=); 'mean' then divides by the summed weights of the rows' classes */
  weight?: Tensor | ArrayLike<number> | null;
  /** rows labelled with this index add nothing to the loss nor to the mean's divisor (class indices only) */
  ignoreIndex?: number | null;
}

/** A tensor as rows along an axis: `rows` = outer * inner rows of `cols` elements, `inner` apart. */
interface Rows {
  rows: number;
  cols: number;
  inner: number;
}

function rowsAlong(op: string, x: Tensor, axis: number): Rows {
  if (!(x instanceof Tensor)) throw new OpError(op, `expected a tensor, got ${typeof x}`);
  const r = x.ndim;
  if (!Number.isInteger(axis) || axis < -r || axis >= r) throw new OpError(op, `axis ${axis} out of range for ${shapeStr(x.shape)}`);
  const a = axis < 0 ? axis + r : axis;
  const inner = shapeSize(x.shape.slice(a + 1));
  return { rows: shapeSize(x.shape.slice(0, a)) * inner, cols: x.shape[a], inner };
}

/**
 * Workgroup size and invocations per row for rows of `cols` elements. A GPU spreads a row over
 * many lanes (about 8 columns each); on the CPU the shared-memory tree's barriers cost more than the
 * columns, so a row gets few invocations (about 256 columns each: 1 for C = 10, 4 for C = 1000) and
 * small workgroups, so that a batch still splits over the cores.
 */
export function rowLayout(cols: number): { WG: number; ROW_THREADS: number } {
  const cpu = getGpu().isCpu;
  const wg = cpu ? 64 : Math.min(256, getGpu().limits.maxComputeInvocationsPerWorkgroup);
  const colsPerInvocation = cpu ? 256 : 8;
  const rowThreads = Math.min(wg, 2 ** Math.ceil(Math.log2(Math.max(1, Math.ceil(cols / colsPerInvocation)))));
  return { WG: wg, ROW_THREADS: rowThreads };
}

/** The Params fields a kernel does not use. */
const UNUSED = { smoothing: 0, ignoring: false, ignoreIndex: 0, perRow: false, mean: false, scale: 1 };

/** Launches a kernel of softmax.wgsl over the rows of `g`; `params` overrides UNUSED's values,
 *  `variant` gives the pipeline constants of the kernel's kind (LOG, SOFT, WEIGHTED). */
function launchRows(entry: string, buffers: GPUBuffer[], access: Access[], g: Rows, params: Partial<typeof UNUSED>, label: string, variant: Record<string, number> = {}): void {
  const layout = rowLayout(g.cols);
  getGpu().dispatch({
    kernel: { shader: 'softmax', entry, bindings: access, constants: { ...layout, ...variant, STRIDED: Number(g.inner > 1) } },
    buffers,
    params: { ...UNUSED, ...params, rows: g.rows, cols: g.cols, inner: g.inner, nan: NaN },
    workgroups: grid(g.rows, layout.WG / layout.ROW_THREADS),
    label,
  });
}

function softmaxAlong(op: 'softmax' | 'logSoftmax', x: Tensor, axis: number): Tensor {
  const g = rowsAlong(op, x, axis);
  const variant = { LOG: Number(op === 'logSoftmax') };
  const label = `${op} ${shapeStr(x.shape)} axis ${axis}`;
  const y = Tensor.empty(x.shape);
  launchRows('softmaxForward', [y.buffer, x.buffer], ['write', 'read'], g, {}, label, variant);
  return recordOp(op, [x], y, (dy) => {
    const dx = Tensor.empty(x.shape);
    launchRows('softmaxBackward', [dx.buffer, y.buffer, dy.buffer], ['write', 'read', 'read'], g, {}, `${label}.backward`, variant);
    return [dx];
  });
}

/** Probabilities along `axis` (torch.softmax(x, dim), ONNX Softmax-13), differentiable. */
export function softmax(x: Tensor, axis = -1): Tensor {
  return softmaxAlong('softmax', x, axis);
}

/** log(softmax(x)) along `axis`, computed without forming the softmax (torch.log_softmax). */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  return softmaxAlong('logSoftmax', x, axis);
}

/** The class weights as a [C] tensor (uploaded when given as numbers), or null. */
function classWeights(op: string, weight: CrossEntropyOptions['weight'], C: number): Tensor | null {
  if (weight === undefined || weight === null) return null;
  if (weight instanceof Tensor) {
    if (weight.ndim !== 1 || weight.shape[0] !== C) throw new OpError(op, `class weights ${shapeStr(weight.shape)} for ${C} classes (expected [${C}])`);
    if (weight.requiresGrad && isGradEnabled()) throw new OpError(op, 'class weights take no gradient (detach them)');
    return weight;
  }
  if (weight.length !== C) throw new OpError(op, `${weight.length} class weights for ${C} classes`);
  const w = Float32Array.from(weight);
  const bad = w.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new OpError(op, `class weight ${weight[bad]} of class ${bad} is not a finite number`);
  return Tensor.from(w, [C]);
}

/**
 * Cross-entropy of logits [N, C] (or [N, C, d1, ...], classes along axis 1) against
 *  - class indices, one per row: numbers ([N] or [N, d1, ...] flattened), or a tensor of that
 *    shape holding them (its values are checked on the GPU: one that is no class index makes
 *    its row's loss NaN);
 *  - or probabilities: a tensor of the logits' shape (soft targets: mixup, cutmix, distillation).
 * Exactly torch.nn.functional.cross_entropy(logits, target, weight, ignore_index, reduction,
 * label_smoothing) in torch 1.13. Returns [1] ('mean', 'sum') or the per-row losses ('none').
 * Targets and class weights are constants: they take no gradient.
 */
export function softmaxCrossEntropy(logits: Tensor, target: ArrayLike<number> | Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const op = 'crossEntropy';
  if (!(logits instanceof Tensor)) throw new OpError(op, `expected logits as a tensor, got ${typeof logits}`);
  if (logits.ndim < 2 || logits.size === 0) {
    throw new OpError(op, `expected logits [N, C] or [N, C, d1, ...] with every size >= 1, got ${shapeStr(logits.shape)}`);
  }
  const reduction = opts.reduction ?? 'mean';
  const eps = opts.labelSmoothing ?? 0;
  const ignoreIndex = opts.ignoreIndex ?? null;
  if (!['mean', 'sum', 'none'].includes(reduction)) throw new OpError(op, `reduction must be 'mean', 'sum' or 'none', got '${reduction}'`);
  if (!(eps >= 0 && eps <= 1)) throw new OpError(op, `labelSmoothing must be in [0, 1], got ${eps}`);
  if (ignoreIndex !== null && !Number.isInteger(ignoreIndex)) throw new OpError(op, `ignoreIndex must be an integer, got ${ignoreIndex}`);
  const g = rowsAlong(op, logits, 1);
  const C = g.cols;
  const rowShape = logits.shape.filter((_, i) => i !== 1); // one label (and one loss) per row
  const desc = `${op} logits${shapeStr(logits.shape)}`;

  // the target as a tensor: probabilities, or class indices as f32 values (exact below 2^24)
  let targetT: Tensor;
  let soft = false;
  if (target instanceof Tensor) {
    soft = target.ndim === logits.ndim && target.shape.every((d, i) => d === logits.shape[i]);
    if (!soft && !(target.ndim === rowShape.length && target.shape.every((d, i) => d === rowShape[i]))) {
      throw new OpError(op, `target ${shapeStr(target.shape)} is neither class indices ${shapeStr(rowShape)} nor probabilities ${shapeStr(logits.shape)} for logits ${shapeStr(logits.shape)}`);
    }
    if (target.requiresGrad && isGradEnabled()) throw new OpError(op, 'the target takes no gradient (detach it)');
    if (soft && ignoreIndex !== null) throw new OpError(op, 'ignoreIndex applies to class indices, not to probability targets');
    targetT = target;
  } else {
    if (target?.length !== g.rows) throw new OpError(op, `${target?.length} labels for logits ${shapeStr(logits.shape)} (one per row of ${shapeStr(rowShape)} expected)`);
    const labels = new Float32Array(g.rows);
    for (let i = 0; i < g.rows; i++) {
      const l = target[i];
      if (l !== ignoreIndex && (!Number.isInteger(l) || l < 0 || l >= C)) {
        throw new OpError(op, `label ${l} at row ${i} is not a class index in [0, ${C})${ignoreIndex === null ? '' : ` nor the ignored ${ignoreIndex}`} of logits ${shapeStr(logits.shape)}`);
      }
      labels[i] = l;
    }
    targetT = Tensor.from(labels, [g.rows]);
  }
  const weight = classWeights(op, opts.weight, C);
  const flags = { smoothing: eps, ignoring: ignoreIndex !== null, ignoreIndex: ignoreIndex ?? 0 };
  const targetKind = { SOFT: Number(soft), WEIGHTED: Number(weight !== null) };

  const rowLoss = Tensor.empty(rowShape);
  const stats = Tensor.empty([g.rows, 3]);
  const rowDivisor = Tensor.empty([g.rows]);
  // without class weights, binding 4 is never read: the logits stand in
  const inputs = [logits.buffer, targetT.buffer, (weight ?? logits).buffer];
  launchRows('crossEntropyForward', [rowLoss.buffer, ...inputs, stats.buffer, rowDivisor.buffer], ['write', 'read', 'read', 'read', 'write', 'write'], g, flags, desc, targetKind);
  // the mean's divisor is the row count unless class weights or ignored labels make it the data's
  const meanOverRows = reduction === 'mean' && (soft || (weight === null && ignoreIndex === null));
  const scale = meanOverRows ? 1 / g.rows : 1;
  let loss = rowLoss;
  let divisor: Tensor | null = null;
  if (reduction !== 'none') {
    loss = reduceSum(rowLoss, scale, `${desc} ${reduction}`);
    rowLoss.release();
  }
  if (reduction === 'mean' && !meanOverRows) {
    const total = loss;
    divisor = reduceSum(rowDivisor, 1, `${desc} mean divisor`);
    loss = Tensor.empty([1]);
    getGpu().dispatch({
      kernel: { shader: 'softmax', entry: 'crossEntropyMean', bindings: ['write', 'read', 'read'] },
      buffers: [loss.buffer, total.buffer, divisor.buffer],
      params: { ...UNUSED, rows: 1, cols: C, inner: 1, nan: NaN },
      workgroups: [1],
      label: `${desc} mean`,
    });
    total.release();
  }
  rowDivisor.release();
  // the target and weights are inputs on the tape (never differentiated) so that they outlive the backward
  recordOp(op, [logits, targetT, weight], loss, (dy) => {
    const dx = Tensor.empty(logits.shape);
    launchRows(
      'crossEntropyBackward',
      [dx.buffer, ...inputs, stats.buffer, dy.buffer, (divisor ?? dy).buffer],
      ['write', 'read', 'read', 'read', 'read', 'read', 'read'],
      g,
      { ...flags, perRow: reduction === 'none', mean: divisor !== null, scale },
      `${desc}.backward`,
      targetKind,
    );
    return [dx, null, null];
  });
  if (!loss.node) {
    // nothing to backpropagate into: the saved state is not needed
    for (const t of [stats, divisor, targetT === target ? null : targetT, weight === opts.weight ? null : weight]) t?.release();
  }
  return loss;
}

/** The public name of softmaxCrossEntropy (torch's F.cross_entropy). */
export const crossEntropy = softmaxCrossEntropy;

// ---- gradcheck ------------------------------------------------------------------------------

registerGradcheck({
  name: 'softmax',
  inputs: ['x'],
  shapes: ([x = [3, 7]]) => [x],
  options: { axis: -1 },
  run: ([x], o) => softmax(x, o.axis),
  reference: ([x], [shape], o) => softmaxRef(x, shape, o.axis),
});

registerGradcheck({
  name: 'logsoftmax',
  inputs: ['x'],
  shapes: ([x = [3, 7]]) => [x],
  options: { axis: -1 },
  run: ([x], o) => logSoftmax(x, o.axis),
  reference: ([x], [shape], o) => logSoftmaxRef(x, shape, o.axis),
});

/** Class indices for every row of logits [N, C, ...]: a fixed spread over the classes. */
function gradcheckLabels(shape: readonly number[]): number[] {
  const rows = shapeSize(shape) / shape[1];
  return Array.from({ length: rows }, (_, r) => (r * 7 + 3) % shape[1]);
}

registerGradcheck({
  name: 'softmax-cross-entropy',
  inputs: ['logits'],
  shapes: ([x = [4, 5]]) => [x],
  options: { reduction: 'mean' as 'mean' | 'sum' | 'none', labelSmoothing: 0, weight: null as number[] | null, ignoreIndex: null as number | null },
  run: ([x], o) => softmaxCrossEntropy(x, gradcheckLabels(x.shape), o),
  reference: ([x], [shape], o) => crossEntropyRef(x, shape, { labels: gradcheckLabels(shape) }, o),
});

registerGradcheck({
  name: 'softmax-cross-entropy-soft',
  inputs: ['logits', 'probs'],
  shapes: ([x = [4, 5], t = x]) => [x, t],
  options: { reduction: 'mean' as 'mean' | 'sum' | 'none', labelSmoothing: 0, weight: null as number[] | null },
  differentiable: [true, false],
  // the target: a distribution over the classes of every row (positive values normalised along axis 1)
  sample: (i, shape, rng) => {
    const v = Float64Array.from({ length: shapeSize(shape) }, () => rng.uniform(i === 0 ? -1 : 0.05, 1));
    return i === 0 ? v : softmaxRef(v.map(Math.log), shape, 1);
  },
  run: ([x, t], o) => softmaxCrossEntropy(x, t, o),
  reference: ([x, t], [shape], o) => crossEntropyRef(x, shape, { probs: t }, o),
});
