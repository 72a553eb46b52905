// Softmax over classes, and the fused softmax-cross-entropy loss (shaders/softmax.wgsl).
// softmax: y = exp(x - max) / sum exp(x - max) per row; backward dx = y * (dy - sum(dy * y)).
// softmaxCrossEntropy = torch.nn.functional.cross_entropy(logits, labels, reduction, label_smoothing):
// the forward keeps each row's (max, log sum exp) so that the backward, (softmax - target) * dLoss
// (/ N for 'mean'), is one pass over the logits that builds the smoothed target from the label.
// Read first: the plain float64 loops in src/reference/softmax.ts; the kernels are in shaders/softmax.wgsl.
import { getGpu, grid } from '../gpu/index.ts';
import { OpError, recordOp, shapeStr, Tensor } from '../tensor/index.ts';
import { reduceSum } from './reduce.ts';

export interface CrossEntropyOptions {
  reduction?: 'mean' | 'sum';
  labelSmoothing?: number;
}

/**
 * Workgroup size and invocations per row for rows of `cols` elements. A GPU spreads a row over
 * many lanes (about 8 columns each); on the CPU the shared-memory tree's barriers cost more than the
 * columns, so a row gets few invocations (about 256 columns each: 1 for C = 10, 4 for C = 1000) and
 * small workgroups, so that a batch still splits over the cores.
 */
function rowLayout(cols: number): { WG: number; ROW_THREADS: number } {
  const cpu = getGpu().isCpu;
  const wg = cpu ? 64 : Math.min(256, getGpu().limits.maxComputeInvocationsPerWorkgroup);
  const colsPerInvocation = cpu ? 256 : 8;
  const rowThreads = Math.min(wg, 2 ** Math.ceil(Math.log2(Math.max(1, Math.ceil(cols / colsPerInvocation)))));
  return { WG: wg, ROW_THREADS: rowThreads };
}

/** Launches a row kernel of softmax.wgsl over the rows of an [N, C] problem. */
function launchRows(entry: string, buffers: GPUBuffer[], access: ('read' | 'write')[], rows: number, cols: number, scalars: { smoothing: number; scale: number }, label: string): void {
  const layout = rowLayout(cols);
  getGpu().dispatch({
    kernel: { shader: 'softmax', entry, bindings: access, constants: layout },
    buffers,
    params: { rows, cols, ...scalars },
    workgroups: grid(rows, layout.WG / layout.ROW_THREADS),
    label,
  });
}

function checkLogits(op: string, x: Tensor): [number, number] {
  if (!(x instanceof Tensor)) throw new OpError(op, `expected a tensor, got ${typeof x}`);
  if (x.ndim !== 2 || x.shape[0] === 0 || x.shape[1] === 0) {
    throw new OpError(op, `expected logits [N, C] with N, C >= 1, got ${shapeStr(x.shape)}`);
  }
  return [x.shape[0], x.shape[1]];
}

/** x: [N, C] -> probabilities over C (differentiable). */
export function softmax(x: Tensor): Tensor {
  const [n, c] = checkLogits('softmax', x);
  const y = Tensor.empty(x.shape);
  launchRows('softmaxForward', [y.buffer, x.buffer], ['write', 'read'], n, c, { smoothing: 0, scale: 1 }, `softmax ${shapeStr(x.shape)}`);
  return recordOp('softmax', [x], y, (dy) => {
    const dx = Tensor.empty(x.shape);
    launchRows('softmaxBackward', [dx.buffer, y.buffer, dy.buffer], ['write', 'read', 'read'], n, c, { smoothing: 0, scale: 1 }, `softmax.backward ${shapeStr(x.shape)}`);
    return [dx];
  });
}

/**
 * Cross-entropy of logits [N, C] against class indices (one per row), as a [1] tensor: exactly
 * torch.nn.functional.cross_entropy(logits, labels, reduction, label_smoothing).
 */
export function softmaxCrossEntropy(logits: Tensor, labels: ArrayLike<number>, opts: CrossEntropyOptions = {}): Tensor {
  const op = 'softmaxCrossEntropy';
  const [n, c] = checkLogits(op, logits);
  const reduction = opts.reduction ?? 'mean';
  const eps = opts.labelSmoothing ?? 0;
  if (reduction !== 'mean' && reduction !== 'sum') throw new OpError(op, `reduction must be 'mean' or 'sum', got '${reduction}'`);
  if (!(eps >= 0 && eps <= 1)) throw new OpError(op, `labelSmoothing must be in [0, 1], got ${eps}`);
  if (labels?.length !== n) throw new OpError(op, `${labels?.length} labels for logits ${shapeStr(logits.shape)} (one per row expected)`);
  const classes = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const l = labels[i];
    if (!Number.isInteger(l) || l < 0 || l >= c) {
      throw new OpError(op, `label ${l} at row ${i} is not a class index in [0, ${c}) of logits ${shapeStr(logits.shape)}`);
    }
    classes[i] = l;
  }
  const gpu = getGpu();
  const desc = `${op} logits${shapeStr(logits.shape)}`;
  const labelBuf = Tensor.empty([n], 'labels'); // u32 class indices in an f32 tensor's storage
  gpu.upload(labelBuf.buffer, classes);
  const rowLoss = Tensor.empty([n]);
  const stats = Tensor.empty([n, 2]);
  launchRows('crossEntropyForward', [rowLoss.buffer, logits.buffer, labelBuf.buffer, stats.buffer], ['write', 'read', 'read', 'write'], n, c, { smoothing: eps, scale: 1 }, desc);
  const scale = reduction === 'mean' ? 1 / n : 1;
  const loss = reduceSum(rowLoss, scale, `${desc} ${reduction}`);
  rowLoss.release();
  recordOp(op, [logits], loss, (dy) => {
    const dx = Tensor.empty(logits.shape);
    launchRows('crossEntropyBackward', [dx.buffer, logits.buffer, labelBuf.buffer, stats.buffer, dy.buffer], ['write', 'read', 'read', 'read', 'read'], n, c, { smoothing: eps, scale }, `${desc}.backward`);
    return [dx];
  });
  if (!loss.node) {
    // nothing to backpropagate into: the saved state is not needed
    labelBuf.release();
    stats.release();
  }
  return loss;
}
