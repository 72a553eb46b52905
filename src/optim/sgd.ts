// Stochastic gradient descent with momentum, weight decay and Nesterov momentum, following
// torch.optim.SGD's update rule exactly (shaders/sgd.wgsl holds the rule): one kernel launch per
// parameter updates the parameter and its momentum buffer in place. Groups, the step loop and the
// state are optimizer.ts's.
// Read first: the plain float64 rule in src/reference/sgd.ts; the kernel is in shaders/sgd.wgsl.
import { getGpu, stridedWorkgroups } from '../gpu/index.ts';
import { OpError, shapeStr, Tensor } from '../tensor/index.ts';
import { BaseOptimizer, type ParamGroup as Group } from './optimizer.ts';

export interface SGDOptions {
  lr: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

export type ParamGroup = Group<SGDOptions>;

export class SGD extends BaseOptimizer<SGDOptions> {
  constructor(params: Tensor[] | ParamGroup[], defaults: SGDOptions) {
    super('SGD', params, defaults, ['momentum']);
  }

  /** Throws on the settings torch.optim.SGD rejects. */
  protected check(g: ParamGroup & SGDOptions, where: string): void {
    const bad = (msg: string) => new OpError('SGD', `${where}: ${msg}`);
    if (!(g.lr >= 0)) throw bad(`invalid learning rate ${g.lr}`);
    if (!((g.momentum ?? 0) >= 0)) throw bad(`invalid momentum ${g.momentum}`);
    if (!Number.isFinite(g.dampening ?? 0)) throw bad(`invalid dampening ${g.dampening}`);
    if (!((g.weightDecay ?? 0) >= 0)) throw bad(`invalid weightDecay ${g.weightDecay}`);
    if (g.nesterov && (!((g.momentum ?? 0) > 0) || (g.dampening ?? 0) !== 0)) {
      throw bad('Nesterov momentum requires a momentum and zero dampening');
    }
  }

  protected update(p: Tensor, grad: Tensor, g: ParamGroup & SGDOptions): void {
    const n = p.size;
    const momentum = g.momentum ?? 0;
    const withMomentum = momentum !== 0;
    // the buffer holds nothing before the first step with momentum: the kernel then sets it to d
    const { buf, fresh: firstStep } = withMomentum ? this.buffer('momentum', p, false) : { buf: null, fresh: false };
    const vec = n % 4 === 0;
    getGpu().dispatch({
      kernel: {
        shader: 'sgd',
        entry: withMomentum ? 'sgdMomentum' : 'sgd',
        bindings: withMomentum ? ['write', 'read', 'write'] : ['write', 'read'],
        defines: { T: vec ? 'vec4<f32>' : 'f32' },
      },
      buffers: withMomentum ? [p.buffer, grad.buffer, buf!.buffer] : [p.buffer, grad.buffer],
      params: {
        n: vec ? n / 4 : n, firstStep, nesterov: g.nesterov ?? false,
        lr: g.lr, weightDecay: g.weightDecay ?? 0, momentum, dampeningComplement: 1 - (g.dampening ?? 0),
      },
      workgroups: [stridedWorkgroups(vec ? n / 4 : n, 256)],
      label: `sgd ${p.name ?? `#${p.id}`} ${shapeStr(p.shape)}`,
    });
  }
}
