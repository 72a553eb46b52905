// Softmax and the fused SoftmaxCrossEntropyLoss.
import { softmax, softmaxCrossEntropy } from '../../ops/softmax.ts';
import { OpError, shapeSize, shapeStr, Tensor } from '../../tensor/index.ts';
import type { NodeContext, OnnxOp } from './op.ts';

/**
 * Softmax. Opset < 13 coerces the input to 2-D at `axis` (rows: the dimensions before it) and
 * normalizes each row; opset 13 normalizes along `axis` alone, which is the same when every
 * dimension after it is 1 (the last axis, the usual case). Other axes would need a transpose.
 */
function softmaxNode(c: NodeContext): Tensor {
  const x = c.gpu(0);
  const r = x.ndim;
  const raw = c.int('axis', c.opset < 13 ? 1 : -1);
  const axis = raw < 0 ? raw + r : raw;
  if (axis < 0 || axis >= r) throw new OpError(c.op, `axis ${raw} out of range for ${shapeStr(x.shape)}`);
  if (c.opset >= 13 && shapeSize(x.shape.slice(axis + 1)) !== 1) {
    throw new OpError(c.op, `softmax along axis ${raw} of ${shapeStr(x.shape)} is not supported (only along the last axis)`);
  }
  const rows = shapeSize(x.shape.slice(0, axis));
  const rows2d = x.reshape([rows, x.size / Math.max(1, rows)]);
  const y = softmax(rows2d);
  const out = y.reshape(x.shape);
  for (const view of [rows2d, y]) view.discard(); // `out` holds the memory
  return out;
}

export const SOFTMAX_OPS: Record<string, OnnxOp> = {
  Softmax: { run: (c) => [softmaxNode(c)] },
  SoftmaxCrossEntropyLoss: {
    refuse: (node) => {
      if (node.inputs.length > 2 && node.inputs[2] !== '') return 'class weights';
      if (node.attrs.ignore_index !== undefined) return 'ignore_index';
      if ((node.attrs.reduction ?? 'mean') === 'none') return "reduction 'none'";
      if (node.outputs.slice(1).some((o) => o !== '')) return 'the log_prob output';
      return null;
    },
    run: (c) => {
      const reduction = c.str('reduction', 'mean') as 'mean' | 'sum';
      return [softmaxCrossEntropy(c.gpu(0), c.numbers(1), { reduction }).reshape([])];
    },
  },
};
