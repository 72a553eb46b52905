// Softmax, LogSoftmax and the fused SoftmaxCrossEntropyLoss.
import { logSoftmax, softmax, softmaxCrossEntropy } from '../../ops/softmax.ts';
import { OpError, shapeSize, shapeStr, Tensor } from '../../tensor/index.ts';
import { normAxis } from './host.ts';
import type { NodeContext, OnnxOp } from './op.ts';

/**
 * (Log)Softmax. Opset 13 normalizes along `axis`; before, the input is coerced to 2-D at `axis`
 * (rows: the dimensions before it) and each row is normalized over everything after.
 */
function softmaxNode(c: NodeContext, kernel: (x: Tensor, axis: number) => Tensor): Tensor {
  const x = c.gpu(0);
  const axis = normAxis(c.op, c.int('axis', c.opset < 13 ? 1 : -1), x.ndim);
  if (c.opset >= 13) return kernel(x, axis);
  const rows = shapeSize(x.shape.slice(0, axis));
  const rows2d = x.reshape([rows, x.size / Math.max(1, rows)]);
  const y = kernel(rows2d, 1);
  const out = y.reshape(x.shape);
  for (const view of [rows2d, y]) view.discard(); // `out` holds the memory
  return out;
}

/** SoftmaxCrossEntropyLoss: scores [N, C, d...], labels [N, d...] (host), optional class weights [C]. */
function crossEntropyNode(c: NodeContext): Tensor[] {
  const scores = c.gpu(0);
  const labels = c.host(1);
  const rowShape = scores.shape.filter((_, i) => i !== 1);
  if (labels.dims.length !== rowShape.length || labels.dims.some((d, i) => d !== rowShape[i])) {
    throw new OpError(c.op, `labels ${shapeStr(labels.dims)} do not match scores ${shapeStr(scores.shape)} (expected ${shapeStr(rowShape)})`);
  }
  const reduction = c.str('reduction', 'mean') as 'mean' | 'sum' | 'none';
  const ignoreIndex = c.attr('ignore_index') === undefined ? null : c.int('ignore_index');
  const loss = softmaxCrossEntropy(scores, c.numbers(1), { reduction, ignoreIndex, weight: c.has(2) ? c.gpu(2) : null });
  const outputs = [reduction === 'none' ? loss : loss.reshape([])];
  // the log_prob output, when asked for
  if (c.node.outputs[1]) outputs.push(logSoftmax(scores, 1));
  return outputs;
}

export const SOFTMAX_OPS: Record<string, OnnxOp> = {
  Softmax: { run: (c) => [softmaxNode(c, softmax)] },
  LogSoftmax: { run: (c) => [softmaxNode(c, logSoftmax)] },
  SoftmaxCrossEntropyLoss: { run: crossEntropyNode },
};
