// Normalization: BatchNormalization (inference with the running statistics, or training with the
// batch's, which moves them).
import { batchNorm2d } from '../../ops/batchnorm.ts';
import type { OnnxOp } from './op.ts';

export const NORM_OPS: Record<string, OnnxOp> = {
  BatchNormalization: {
    params: [1, 2],
    buffers: [3, 4],
    // a training-mode export's running statistics outputs are ignored, unless something reads them
    refuse: (node, g) => (node.outputs.slice(1).some((o) => g.consumed.has(o)) ? 'the running statistics outputs (training_mode) in use' : null),
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
};
