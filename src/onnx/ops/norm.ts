// Normalization: BatchNormalization (inference with the running statistics, or training with the
// batch's, which moves them) and LayerNormalization (opset 17; older exports spell it out, and
// src/onnx/fuse.ts recognises that pattern as this op).
import { batchNorm2d } from '../../ops/batchnorm.ts';
import { layerNorm } from '../../ops/layernorm.ts';
import { OpError, shapeSize, shapeStr, type Tensor } from '../../tensor/index.ts';
import { normAxis } from './host.ts';
import type { NodeContext, OnnxOp } from './op.ts';

/** A LayerNormalization's scale or bias as a tensor of the normalized shape (a view when its dims differ, [C] for [1,C]). */
function affine(c: NodeContext, i: number, norm: number[]): Tensor | null {
  if (!c.has(i)) return null;
  const t = c.gpu(i);
  if (t.size !== shapeSize(norm)) throw new OpError(c.op, `input ${i} ${shapeStr(t.shape)} does not fit the normalized shape ${shapeStr(norm)}`);
  return t.shape.length === norm.length && t.shape.every((d, k) => d === norm[k]) ? t : t.reshape(norm);
}

/** the refusal of a normalization whose statistics outputs something reads */
const statsInUse = (feature: string) => (node: { outputs: string[] }, g: { consumed: ReadonlySet<string> }) =>
  node.outputs.slice(1).some((o) => o !== '' && g.consumed.has(o)) ? feature : null;

export const NORM_OPS: Record<string, OnnxOp> = {
  BatchNormalization: {
    params: [1, 2],
    buffers: [3, 4],
    // a training-mode export's running statistics outputs are ignored, unless something reads them
    refuse: statsInUse('the running statistics outputs (training_mode) in use'),
    run: (c) => {
      const eps = c.float('epsilon', 1e-5);
      // ONNX's momentum weighs the running value, torch's the batch statistic
      const momentum = 1 - c.float('momentum', 0.9);
      // a training-mode export (running statistics outputs, which refuse() saw are unused)
      // describes the same network as an eval-mode one: the module's mode decides
      const statsOutputs = c.node.outputs.slice(1).some((o) => o !== '');
      const training = c.training || (c.int('training_mode', 0) === 1 && !statsOutputs);
      const [w, b, mean, v] = [1, 2, 3, 4].map((i) => c.gpu(i));
      return [batchNorm2d(c.gpu(0), w, b, mean, v, { training, eps, momentum })];
    },
  },
  LayerNormalization: {
    params: [1, 2],
    refuse: statsInUse('the Mean and InvStdDev outputs in use'),
    run: (c) => {
      const x = c.gpu(0);
      const norm = x.shape.slice(normAxis(c.op, c.int('axis', -1), x.ndim));
      return [layerNorm(x, norm, affine(c, 1, norm), affine(c, 2, norm), c.float('epsilon', 1e-5))];
    },
  },
};
