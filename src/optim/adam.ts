// Adam and AdamW, following torch.optim.Adam and torch.optim.AdamW exactly (amsgrad and maximize
// off): bias-corrected first and second moments, eps outside the square root; Adam's weight decay
// is L2 (added to the gradient), AdamW's is decoupled (the parameter shrinks by lr * weightDecay
// before the step). One kernel launch updates many parameters and both their moments in place
// (shaders/adam.wgsl holds the rule); each parameter counts its own steps, as torch's state does, so
// a parameter frozen for a while starts its bias correction when it first gets a gradient.
// Read first: the plain float64 rule in src/reference/adam.ts.
import { OpError, Tensor } from '../tensor/index.ts';
import { BaseOptimizer, launchParameters, type ParamArray, type ParamGroup, type ParamStep } from './optimizer.ts';

export interface AdamOptions {
  lr: number;
  /** coefficients of the running averages of the gradient and of its square; [0.9, 0.999] as torch */
  betas?: [number, number];
  /** added to the denominator; 1e-8 as torch */
  eps?: number;
  /** Adam: L2 penalty (default 0); AdamW: decoupled decay (default 1e-2), as torch */
  weightDecay?: number;
}

export type AdamParamGroup = ParamGroup<AdamOptions>;

class AdamBase extends BaseOptimizer<AdamOptions> {
  constructor(kind: 'Adam' | 'AdamW', params: Tensor[] | AdamParamGroup[], defaults: AdamOptions, private readonly decoupled: boolean) {
    super(kind, params, defaults, ['expAvg', 'expAvgSq']);
  }

  /** Throws on the settings torch.optim.Adam(W) rejects. */
  protected check(g: AdamParamGroup & AdamOptions, where: string): void {
    const bad = (msg: string) => new OpError(this.kind, `${where}: ${msg}`);
    const [b1, b2] = g.betas ?? [0.9, 0.999];
    if (!(g.lr >= 0)) throw bad(`invalid learning rate ${g.lr}`);
    if (!((g.eps ?? 1e-8) >= 0)) throw bad(`invalid epsilon ${g.eps}`);
    if (!(b1 >= 0 && b1 < 1)) throw bad(`invalid beta parameter at index 0: ${b1}`);
    if (!(b2 >= 0 && b2 < 1)) throw bad(`invalid beta parameter at index 1: ${b2}`);
    if (!((g.weightDecay ?? 0) >= 0)) throw bad(`invalid weightDecay ${g.weightDecay}`);
  }

  /** The group's parameters in few launches (launchParameters), one set per step count: the
   *  bias corrections follow each parameter's own. */
  protected updateGroup(items: ParamStep[], g: AdamParamGroup & AdamOptions): void {
    const [beta1, beta2] = g.betas ?? [0.9, 0.999];
    const weightDecay = g.weightDecay ?? 0;
    for (const step of new Set(items.map((it) => it.step))) {
      // torch.zeros_like on the first step
      const params = items.filter((it) => it.step === step).map(({ param, grad }) => [param, grad, this.buffer('expAvg', param, true).buf, this.buffer('expAvgSq', param, true).buf]);
      launchParameters('adam', ARRAYS, params, {
        decay: this.decoupled ? 1 - g.lr * weightDecay : 1,
        l2: this.decoupled ? 0 : weightDecay,
        beta1, oneMinusBeta1: 1 - beta1, beta2, oneMinusBeta2: 1 - beta2,
        stepSize: g.lr / (1 - beta1 ** step),
        correction2: Math.sqrt(1 - beta2 ** step),
        eps: g.eps ?? 1e-8,
      }, ADAM_STEP);
    }
  }
}

const ARRAYS: ParamArray[] = [{ name: 'param', access: 'write' }, { name: 'grad', access: 'read' }, { name: 'm', access: 'write' }, { name: 'v', access: 'write' }];
const ADAM_STEP = (k: number) => `let s = adam_step(param${k}[i], grad${k}[i], m${k}[i], v${k}[i]); m${k}[i] = s.m; v${k}[i] = s.v; param${k}[i] = s.w;`;

/** `given` with torch's defaults where it leaves a setting undefined. */
function withTorchDefaults(given: AdamOptions, weightDecay: number): AdamOptions {
  return { lr: given.lr, betas: given.betas ?? [0.9, 0.999], eps: given.eps ?? 1e-8, weightDecay: given.weightDecay ?? weightDecay };
}

/** torch.optim.Adam: weight decay as an L2 term in the gradient. */
export class Adam extends AdamBase {
  constructor(params: Tensor[] | AdamParamGroup[], defaults: AdamOptions) {
    super('Adam', params, withTorchDefaults(defaults, 0), false);
  }
}

/** torch.optim.AdamW: decoupled weight decay (default 1e-2). */
export class AdamW extends AdamBase {
  constructor(params: Tensor[] | AdamParamGroup[], defaults: AdamOptions) {
    super('AdamW', params, withTorchDefaults(defaults, 1e-2), true);
  }
}
