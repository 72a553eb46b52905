// Matrix products: Gemm (y = alpha op(A) op(B) + beta C) and MatMul (batched, broadcasting).
import { add, scale } from '../../ops/elementwise.ts';
import { linear, matmul } from '../../ops/matmul.ts';
import { OpError, shapeStr, Tensor } from '../../tensor/index.ts';
import type { NodeContext, OnnxOp } from './op.ts';

/** Gemm: y = alpha op(A) op(B) + beta C, C broadcast to [M, N]. */
function gemm(c: NodeContext): Tensor {
  const alpha = c.float('alpha', 1);
  const beta = c.float('beta', 1);
  const transA = c.int('transA', 0) === 1;
  const transB = c.int('transB', 0) === 1;
  const A = c.gpu(0);
  const B = c.gpu(1);
  let C = c.has(2) ? c.gpu(2) : null;
  if (A.ndim !== 2 || B.ndim !== 2) throw new OpError(c.op, `A and B must be 2-D, got ${shapeStr(A.shape)}, ${shapeStr(B.shape)}`);
  const M = transA ? A.shape[1] : A.shape[0];
  const N = transB ? B.shape[0] : B.shape[1];
  // the common case, a torch Linear layer: one kernel with the bias fused
  if (!transA && transB && alpha === 1 && beta === 1 && (!C || (C.size === N && C.shape[C.ndim - 1] === N && C.ndim <= 2))) {
    return linear(A, B, C && C.ndim === 2 ? C.reshape([N]) : C);
  }
  let y = matmul(A, B, { transA, transB });
  if (alpha !== 1) y = scale(y, alpha);
  if (!C || beta === 0) return y;
  if (beta !== 1) C = scale(C, beta);
  // broadcast C ([], [1], [N], [1,N], [M,1] or [M,N]) to [M,N] by products with ones, which the tape differentiates
  const [rows, cols] = C.ndim === 2 ? C.shape : [1, C.ndim === 1 ? C.shape[0] : 1];
  if ((rows !== 1 && rows !== M) || (cols !== 1 && cols !== N)) throw new OpError(c.op, `C ${shapeStr(C.shape)} does not broadcast to [${M},${N}]`);
  let bias = C.reshape([rows, cols]);
  if (rows === 1 && M !== 1) bias = matmul(Tensor.ones([M, 1]), bias);
  if (cols === 1 && N !== 1) bias = matmul(bias, Tensor.ones([1, N]));
  return add(y, bias);
}

export const LINEAR_OPS: Record<string, OnnxOp> = {
  Gemm: { params: [0, 1, 2], run: (c) => [gemm(c)] },
  // numpy's matmul: vectors, matrices and stacks of them whose batch dimensions broadcast (attention)
  MatMul: { params: [0, 1], run: (c) => [matmul(c.gpu(0), c.gpu(1))] },
};
