// Stochastic gradient descent with momentum, weight decay and Nesterov momentum, following
// torch.optim.SGD's update rule exactly (shaders/sgd.wgsl holds the rule): one kernel launch per
// parameter updates the parameter and its momentum buffer in place.
// Read first: the plain float64 rule in src/reference/sgd.ts; the kernel is in shaders/sgd.wgsl.
import { getGpu, stridedWorkgroups } from '../gpu/index.ts';
import { keep, noGrad, OpError, shapeStr, Tensor } from '../tensor/index.ts';

export interface SGDOptions {
  lr: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

export interface ParamGroup extends Partial<SGDOptions> {
  params: Tensor[];
  name?: string;
}

/** Momentum buffers by parameter index (groups in order, parameters in order), for checkpoints. */
export interface SGDState {
  momentumBuffers: (Float32Array | null)[];
}

type Group = ParamGroup & SGDOptions;

/** Throws on the settings torch.optim.SGD rejects. */
function checkGroup(g: Group, where: string): void {
  const bad = (msg: string) => new OpError('SGD', `${where}${g.name ? ` '${g.name}'` : ''}: ${msg}`);
  if (!(g.lr >= 0)) throw bad(`invalid learning rate ${g.lr}`);
  if (!((g.momentum ?? 0) >= 0)) throw bad(`invalid momentum ${g.momentum}`);
  if (!Number.isFinite(g.dampening ?? 0)) throw bad(`invalid dampening ${g.dampening}`);
  if (!((g.weightDecay ?? 0) >= 0)) throw bad(`invalid weightDecay ${g.weightDecay}`);
  if (g.nesterov && (!((g.momentum ?? 0) > 0) || (g.dampening ?? 0) !== 0)) {
    throw bad('Nesterov momentum requires a momentum and zero dampening');
  }
}

export class SGD {
  /** settings per group (defaults filled in); mutable, e.g. a schedule sets group.lr */
  readonly groups: Group[];
  private readonly momentumBuffers = new Map<Tensor, Tensor>();

  constructor(params: Tensor[] | ParamGroup[], defaults: SGDOptions) {
    const groups: ParamGroup[] = params.every((p) => p instanceof Tensor) ? [{ params: params as Tensor[] }] : (params as ParamGroup[]);
    // a group's own settings override the defaults; settings it leaves undefined do not
    this.groups = groups.map((g) => ({
      ...defaults,
      ...Object.fromEntries(Object.entries(g).filter(([, v]) => v !== undefined)),
      params: [...g.params],
    }));
    const seen = new Set<Tensor>();
    this.groups.forEach((g, i) => {
      checkGroup(g, `group ${i}`);
      for (const p of g.params) {
        if (!(p instanceof Tensor)) throw new OpError('SGD', `group ${i} holds a ${typeof p}, not a tensor`);
        if (seen.has(p)) throw new OpError('SGD', `${p.describe()} appears in more than one parameter group`);
        seen.add(p);
      }
    });
  }

  private get params(): Tensor[] {
    return this.groups.flatMap((g) => g.params);
  }

  /** Updates every parameter that has a gradient (one kernel launch each), outside the tape. */
  step(): void {
    noGrad(() => {
      this.groups.forEach((g, gi) => {
        checkGroup(g, `group ${gi}`);
        for (const p of g.params) if (p.requiresGrad && p.grad) this.update(p, p.grad, g);
      });
    });
  }

  private update(p: Tensor, grad: Tensor, g: Group): void {
    if (grad.size !== p.size) throw new OpError('SGD', `gradient ${shapeStr(grad.shape)} for ${p.describe()}`);
    const n = p.size;
    if (n === 0) return;
    const momentum = g.momentum ?? 0;
    let buf = this.momentumBuffers.get(p);
    const firstStep = momentum !== 0 && !buf;
    if (firstStep) {
      // optimizer state outlives the training step's scope
      buf = keep(Tensor.empty(p.shape, 'momentum'));
      this.momentumBuffers.set(p, buf);
    }
    const vec = n % 4 === 0;
    const withMomentum = momentum !== 0;
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

  /** Releases every parameter's gradient and sets it to null (torch's set_to_none=True). */
  zeroGrad(): void {
    for (const p of this.params) {
      p.grad?.release();
      p.grad = null;
    }
  }

  /** The momentum buffers, read back (null for a parameter without one yet). */
  async state(): Promise<SGDState> {
    const params = this.params;
    const momentumBuffers: (Float32Array | null)[] = [];
    for (const p of params) momentumBuffers.push((await this.momentumBuffers.get(p)?.toArray()) ?? null);
    return { momentumBuffers };
  }

  /** Restores momentum buffers saved by state() for the same parameters in the same order. */
  loadState(state: SGDState): void {
    const params = this.params;
    const bufs = state.momentumBuffers;
    if (bufs?.length !== params.length) throw new OpError('SGD.loadState', `${bufs?.length} momentum buffers for ${params.length} parameters`);
    params.forEach((p, i) => {
      const data = bufs[i];
      if (data && data.length !== p.size) throw new OpError('SGD.loadState', `a momentum buffer of ${data.length} values for ${p.describe()}`);
    });
    params.forEach((p, i) => {
      this.momentumBuffers.get(p)?.release();
      this.momentumBuffers.delete(p);
      const data = bufs[i];
      if (data) this.momentumBuffers.set(p, keep(Tensor.from(data, p.shape)));
    });
  }
}
