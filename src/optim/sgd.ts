// Stochastic gradient descent with momentum, weight decay and Nesterov momentum, following
// torch.optim.SGD's update rule exactly (shaders/sgd.wgsl holds the rule): one kernel launch
// updates many parameters of a group and their momentum buffers in place (ResNet18's 62 in 13 with
// momentum on lavapipe's 16 storage bindings per shader stage, in 4 where an adapter offers 48). Groups, the step loop and the
// state are optimizer.ts's.
// Read first: the plain float64 rule in src/reference/sgd.ts; the kernel is in shaders/sgd.wgsl.
import { getGpu, stridedWorkgroups, type Access } from '../gpu/index.ts';
import { OpError, shapeStr, Tensor } from '../tensor/index.ts';
import { BaseOptimizer, type ParamGroup as Group, type ParamStep } from './optimizer.ts';

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

  /** The group's parameters in launches of up to perLaunch(): one for those whose lengths are
   *  multiples of 4 (vec4s) and one for the rest, each split further by whether the momentum
   *  buffer is new (the first step sets it to d). */
  protected updateGroup(items: ParamStep[], g: ParamGroup & SGDOptions): void {
    const momentum = g.momentum ?? 0;
    const withMomentum = momentum !== 0;
    const batches = new Map<string, { param: Tensor; grad: Tensor; buf: Tensor | null }[]>();
    for (const { param, grad } of items) {
      // the buffer holds nothing before the first step with momentum: the kernel then sets it to d
      const { buf, fresh } = withMomentum ? this.buffer('momentum', param, false) : { buf: null, fresh: false };
      const key = `${param.size % 4 === 0} ${fresh}`;
      batches.set(key, [...(batches.get(key) ?? []), { param, grad, buf }]);
    }
    const per = perLaunch(withMomentum ? 3 : 2);
    for (const [key, batch] of batches) {
      const [vec, firstStep] = key.split(' ').map((v) => v === 'true');
      for (let start = 0; start < batch.length; start += per) {
        const chunk = batch.slice(start, start + per);
        const lengths = chunk.map(({ param }) => (vec ? param.size / 4 : param.size));
        const code = launchCode(chunk.length, withMomentum);
        getGpu().dispatch({
          kernel: { shader: 'sgd', entry: 'sgd', bindings: code.bindings, defines: { T: vec ? 'vec4<f32>' : 'f32', ...code.defines } },
          buffers: chunk.flatMap(({ param, grad, buf }) => (buf ? [param.buffer, grad.buffer, buf.buffer] : [param.buffer, grad.buffer])),
          params: {
            ...Object.fromEntries(lengths.map((n, k) => [`n${k}`, n])),
            firstStep, nesterov: g.nesterov ?? false,
            lr: g.lr, weightDecay: g.weightDecay ?? 0, momentum, dampeningComplement: 1 - (g.dampening ?? 0),
          },
          workgroups: [stridedWorkgroups(lengths.reduce((a, b) => a + b, 0), 256)],
          label: chunk.length === 1 ? `sgd ${chunk[0].param.name ?? `#${chunk[0].param.id}`} ${shapeStr(chunk[0].param.shape)}` : `sgd ${chunk.length} parameters`,
          work: { bytes: 4 * (withMomentum ? 5 : 3) * chunk.reduce((a, { param }) => a + param.size, 0) },
        });
      }
    }
  }
}

/** Parameters one launch updates: as many as the adapter's storage bindings per shader stage
 *  hold at `bindings` each, at most 16 (the shader's code grows with them). */
function perLaunch(bindings: number): number {
  return Math.max(1, Math.min(16, Math.floor(getGpu().limits.maxStorageBuffersPerShaderStage / bindings)));
}

/** shaders/sgd.wgsl's generated parts for `count` parameters: their lengths in Params, their
 *  bindings, and each one's grid-strided loop. */
function launchCode(count: number, withMomentum: boolean) {
  const ks = Array.from({ length: count }, (_, k) => k);
  const per = withMomentum ? 3 : 2;
  const binding = (k: number, j: number, access: string, name: string) => `@group(0) @binding(${1 + per * k + j}) var<storage, ${access}> ${name}${k}: array<T>;`;
  const loop = (k: number) =>
    withMomentum
      ? `for (var i = first; i < p.n${k}; i += stride) { let s = sgd_momentum(param${k}[i], grad${k}[i], buf${k}[i]); buf${k}[i] = s.b; param${k}[i] = s.w; }`
      : `for (var i = first; i < p.n${k}; i += stride) { param${k}[i] = sgd_plain(param${k}[i], grad${k}[i]); }`;
  return {
    bindings: ks.flatMap((): Access[] => (withMomentum ? ['write', 'read', 'write'] : ['write', 'read'])),
    defines: {
      SIZES: ks.map((k) => `n${k}: u32,`).join(' '),
      BINDINGS: ks
        .map((k) => [binding(k, 0, 'read_write', 'param'), binding(k, 1, 'read', 'grad'), ...(withMomentum ? [binding(k, 2, 'read_write', 'buf')] : [])].join('\n'))
        .join('\n'),
      LOOPS: ks.map(loop).join('\n  '),
    },
  };
}
