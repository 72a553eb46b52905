// Normalization: BatchNormalization (inference with the running statistics, or training with the
// batch's, which moves them; any rank from [N,C] up, on the engine's [N,C,H,W] kernel) and
// LayerNormalization (opset 17; older exports spell it out, and src/onnx/fuse.ts recognises that
// pattern as this op).
import { batchNorm2d } from '../../ops/batchnorm.ts';
import { add, mul, reciprocal, sqrt, sub } from '../../ops/elementwise.ts';
import { layerNorm } from '../../ops/layernorm.ts';
import { mean } from '../../ops/reduce.ts';
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
      const [w, b, runningMean, v] = [1, 2, 3, 4].map((i) => c.gpu(i));
      // [N,C], [N,C,L], [N,C,D,H,W]: the statistics are per channel over all the rest, as for [N,C,rest,1]
      const x = c.gpu(0);
      if (x.ndim === 4) return [batchNorm2d(x, w, b, runningMean, v, { training, eps, momentum })];
      if (x.ndim < 2) throw new OpError(c.op, `input ${shapeStr(x.shape)} has no channel dimension`);
      const y = batchNorm2d(x.reshape([x.shape[0], x.shape[1], shapeSize(x.shape.slice(2)), 1]), w, b, runningMean, v, { training, eps, momentum });
      return [y.reshape(x.shape)];
    },
  },
  LayerNormalization: {
    params: [1, 2],
    run: (c) => {
      const x = c.gpu(0);
      const axis = normAxis(c.op, c.int('axis', -1), x.ndim);
      const norm = x.shape.slice(axis);
      const eps = c.float('epsilon', 1e-5);
      const y = layerNorm(x, norm, affine(c, 1, norm), affine(c, 2, norm), eps);
      if (!c.node.outputs.slice(1).some((o) => o !== '')) return [y];
      // the optional Mean and InvStdDev outputs ([d0..d(axis-1), 1, ..., 1]), which the fused
      // kernel keeps to itself: computed again on the engine's reductions
      const axes = norm.map((_, k) => axis + k);
      const m = mean(x, { axes, keepdim: true });
      const d = sub(x, m);
      const invStd = reciprocal(sqrt(add(mean(mul(d, d), { axes, keepdim: true }), eps)));
      d.discard();
      return [y, m, invStd];
    },
  },
};
