// The layers a ResNet and the small demo CNN are made of, each a thin Module over one op.
// Constructors take torch.nn's required arguments positionally and the optional ones as an options
// object (`new Conv2d(3, 64, 7, { stride: 2, padding: 3, bias: false })`). Initialisation follows
// torch.nn's defaults, so a fresh layer here is distributed like a fresh PyTorch one; its values
// come from `rng`, by default the global generator (manualSeed makes a script reproducible).
import { batchNorm2d } from '../ops/batchnorm.ts';
import { conv2d, type Conv2dOptions } from '../ops/conv2d.ts';
import { dropout } from '../ops/dropout.ts';
import { leakyRelu, relu } from '../ops/elementwise.ts';
import { linear } from '../ops/matmul.ts';
import { avgPool2d, globalAvgPool2d, maxPool2d, type AvgPool2dOptions, type Pool2dOptions } from '../ops/pool.ts';
import { defaultRng, type Rng, Tensor } from '../tensor/index.ts';
import { Module, runLayers } from './module.ts';
import { childrenSplit, halves, type ModelSplit } from './split.ts';

const pair = (v: number | [number, number]): [number, number] => (typeof v === 'number' ? [v, v] : v);

/** torch's default for conv and linear: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fanIn), 1/sqrt(fanIn)),
 *  and the same bound for the bias. */
function defaultInit(shape: number[], fanIn: number, rng: Rng): Tensor {
  const bound = 1 / Math.sqrt(fanIn);
  return Tensor.uniform(shape, rng, -bound, bound);
}

/** Where a layer's initial values come from. */
export interface InitOptions {
  /** the generator (default: the global one, seeded by manualSeed) */
  rng?: Rng;
}

export interface Conv2dConfig extends Conv2dOptions, InitOptions {
  /** a learnable per-channel bias (default true) */
  bias?: boolean;
  /** 'fan-out': torchvision's ResNet init, kaiming_normal_(mode='fan_out', nonlinearity='relu') */
  init?: 'default' | 'fan-out';
}

export class Conv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly opts: Conv2dOptions;

  constructor(readonly inChannels: number, readonly outChannels: number, kernelSize: number | [number, number], cfg: Conv2dConfig = {}) {
    super();
    const rng = cfg.rng ?? defaultRng();
    const [kh, kw] = pair(kernelSize);
    const groups = cfg.groups ?? 1;
    const fanIn = (inChannels / groups) * kh * kw;
    this.opts = { stride: cfg.stride ?? 1, padding: cfg.padding ?? 0, dilation: cfg.dilation ?? 1, groups };
    const shape = [outChannels, inChannels / groups, kh, kw];
    this.weight = this.param(
      'weight',
      cfg.init === 'fan-out' ? Tensor.randn(shape, rng, Math.sqrt(2 / (outChannels * kh * kw))) : defaultInit(shape, fanIn, rng),
    );
    this.bias = cfg.bias === false ? null : this.param('bias', defaultInit([outChannels], fanIn, rng));
  }

  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, this.opts);
  }
}

export interface BatchNorm2dOptions {
  /** added to the variance (default 1e-5) */
  eps?: number;
  /** weight of each batch's statistics in the running ones (default 0.1) */
  momentum?: number;
}

export class BatchNorm2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  readonly runningMean: Tensor;
  readonly runningVar: Tensor;
  readonly eps: number;
  readonly momentum: number;

  constructor(readonly channels: number, opts: BatchNorm2dOptions = {}) {
    super();
    this.eps = opts.eps ?? 1e-5;
    this.momentum = opts.momentum ?? 0.1;
    this.weight = this.param('weight', Tensor.ones([channels]));
    this.bias = this.param('bias', Tensor.zeros([channels]));
    this.runningMean = this.buffer('running_mean', Tensor.zeros([channels]));
    this.runningVar = this.buffer('running_var', Tensor.ones([channels]));
  }

  protected override ownNormParameters(): string[] {
    return ['weight', 'bias'];
  }

  forward(x: Tensor): Tensor {
    return batchNorm2d(x, this.weight, this.bias, this.runningMean, this.runningVar, {
      training: this.training,
      momentum: this.momentum,
      eps: this.eps,
    });
  }
}

export interface LinearOptions extends InitOptions {
  /** a learnable bias (default true) */
  bias?: boolean;
}

export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(readonly inFeatures: number, readonly outFeatures: number, opts: LinearOptions = {}) {
    super();
    const rng = opts.rng ?? defaultRng();
    this.weight = this.param('weight', defaultInit([outFeatures, inFeatures], inFeatures, rng));
    this.bias = opts.bias === false ? null : this.param('bias', defaultInit([outFeatures], inFeatures, rng));
  }

  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}

export class ReLU extends Module {
  forward(x: Tensor): Tensor {
    return relu(x);
  }
}

export class LeakyReLU extends Module {
  readonly negativeSlope: number;
  constructor(opts: { negativeSlope?: number } = {}) {
    super();
    this.negativeSlope = opts.negativeSlope ?? 0.01;
  }
  forward(x: Tensor): Tensor {
    return leakyRelu(x, this.negativeSlope);
  }
}

export class MaxPool2d extends Module {
  readonly opts: Pool2dOptions;
  /** `stride` defaults to the kernel size, as torch's */
  constructor(kernelSize: number | [number, number], opts: Omit<Pool2dOptions, 'kernel'> = {}) {
    super();
    this.opts = { ...opts, kernel: kernelSize };
  }
  forward(x: Tensor): Tensor {
    return maxPool2d(x, this.opts);
  }
}

export class AvgPool2d extends Module {
  readonly opts: AvgPool2dOptions;
  /** `stride` defaults to the kernel size, as torch's */
  constructor(kernelSize: number | [number, number], opts: Omit<AvgPool2dOptions, 'kernel'> = {}) {
    super();
    this.opts = { ...opts, kernel: kernelSize };
  }
  forward(x: Tensor): Tensor {
    return avgPool2d(x, this.opts);
  }
}

/** torch's AdaptiveAvgPool2d(1): [N,C,H,W] -> [N,C,1,1] */
export class GlobalAvgPool2d extends Module {
  forward(x: Tensor): Tensor {
    return globalAvgPool2d(x);
  }
}

/** [N, ...] -> [N, rest] */
export class Flatten extends Module {
  forward(x: Tensor): Tensor {
    return x.flatten();
  }
}

export class Dropout extends Module {
  private calls = 0;
  /** probability of zeroing an element in training (default 0.5) */
  readonly p: number;
  /** the first call's mask seed; each call takes the next */
  readonly seed: number;
  constructor(opts: { p?: number; seed?: number } = {}) {
    super();
    this.p = opts.p ?? 0.5;
    this.seed = opts.seed ?? 0;
  }
  forward(x: Tensor): Tensor {
    return dropout(x, this.p, this.training, this.seed + this.calls++);
  }
}

/** Children named '0', '1', ... run in order, as torch.nn.Sequential. */
export class Sequential extends Module {
  constructor(...layers: Module[]) {
    super();
    layers.forEach((m, i) => this.child(String(i), m));
  }

  /** The last child is the head; the backbone's parameters form two groups (first and second half). */
  split(): ModelSplit {
    const children = this.children();
    return childrenSplit(this, children[children.length - 1][0], halves, this.normParameterNames());
  }

  forward(x: Tensor): Tensor {
    return runLayers(this.children().map(([, m]) => m), x);
  }
}
