// The ONNX op registry: every op gpunet reads is one entry (src/onnx/ops/op.ts says what an entry
// holds), grouped by family, one file each. The supported-ops list, the refusals and the graph
// runner all come from here: adding an op is adding its entry.
import { CONV_OPS } from './conv.ts';
import { ELEMENTWISE_OPS } from './elementwise.ts';
import { LINEAR_OPS } from './linear.ts';
import { NORM_OPS } from './norm.ts';
import type { OnnxOp } from './op.ts';
import { REDUCE_OPS } from './reduce.ts';
import { SHAPE_OPS } from './shape.ts';
import { SOFTMAX_OPS } from './softmax.ts';

export const ONNX_OPS: Readonly<Record<string, OnnxOp>> = { ...CONV_OPS, ...NORM_OPS, ...LINEAR_OPS, ...SOFTMAX_OPS, ...ELEMENTWISE_OPS, ...REDUCE_OPS, ...SHAPE_OPS };

/** The ONNX ops (default domain) gpunet runs on the GPU. */
export const GPU_OPS: readonly string[] = Object.keys(ONNX_OPS).filter((op) => ONNX_OPS[op].run).sort();

/** The ops gpunet computes only when their inputs are known before the graph runs (shape arithmetic). */
export const FOLDED_OPS: readonly string[] = Object.keys(ONNX_OPS).filter((op) => !ONNX_OPS[op].run).sort();

/** Every op of the registry. */
export const SUPPORTED_OPS: readonly string[] = Object.keys(ONNX_OPS).sort();

/** The supported ops as a refusal message lists them. */
export function supportedOpsText(): string {
  return `${GPU_OPS.join(', ')}; on constants and shapes only: ${FOLDED_OPS.join(', ')}`;
}

export { NodeContext, type OnnxOp, type Value, type ValueSource } from './op.ts';
