// ResNet18 and ResNet34 exactly as torchvision builds them (torchvision.models.resnet), with the
// same state-dict names, so weights map one to one:
//   conv1 7x7/2 - bn1 - relu - maxpool 3x3/2 - layer1..layer4 (BasicBlocks) - avgpool - fc
// A BasicBlock is relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), the shortcut being a 1x1
// strided conv + bn ('downsample') where the shape changes.
// For inference (batchnorm in eval mode, no gradient wanted) each conv-bn(-add)(-relu) runs as one
// fused kernel (conv2dFused: the batchnorm, the residual add and the ReLU in the conv's epilogue).
import { getGpu } from '../gpu/index.ts';
import { batchNormEvalCoefficients } from '../ops/batchnorm.ts';
import { conv2dFused, type ConvEpilogue } from '../ops/conv2d.ts';
import { add, relu } from '../ops/elementwise.ts';
import { defaultRng, isGradEnabled, type Rng, Tensor } from '../tensor/index.ts';
import { BatchNorm2d, Conv2d, Flatten, GlobalAvgPool2d, type InitOptions, Linear, MaxPool2d, ReLU, Sequential } from './layers.ts';
import { Module, runLayers } from './module.ts';
import { childrenSplit, type FeatureMapSplit, type ModelSplit, underPrefix } from './split.ts';

export type ResNetArch = 'resnet18' | 'resnet34';

export const RESNET_BLOCKS: Record<ResNetArch, readonly number[]> = {
  resnet18: [2, 2, 2, 2],
  resnet34: [3, 4, 6, 3],
};

/** A bias-free conv with torchvision's init: kaiming_normal_(mode='fan_out', nonlinearity='relu'). */
function kaimingConv(inC: number, outC: number, k: number, stride: number, padding: number, rng: Rng): Conv2d {
  return new Conv2d(inC, outC, k, { stride, padding, bias: false, init: 'fan-out', rng });
}

const RELU = new ReLU();

/** conv -> bn pairs may run fused: every bn in eval mode, and no tape needed (no gradient wanted,
 *  or nothing that would take one). */
function canFuse(x: Tensor, pairs: readonly (readonly [Conv2d, BatchNorm2d])[]): boolean {
  const needsGrad = isGradEnabled() && (x.requiresGrad || pairs.some(([c, bn]) => [c.weight, c.bias, bn.weight, bn.bias].some((t) => t?.requiresGrad)));
  return !needsGrad && pairs.every(([, bn]) => !bn.training);
}

/** relu?(bn(conv(x)) + residual?) in one kernel (its dispatches attributed to the conv's layer). */
function convBn(conv: Conv2d, bn: BatchNorm2d, x: Tensor, epilogue: Omit<ConvEpilogue, 'affine'>): Tensor {
  return getGpu().withScope(conv.path, () => {
    const affine = batchNormEvalCoefficients(bn.weight, bn.bias, bn.runningMean, bn.runningVar, bn.eps);
    const y = conv2dFused(x, conv.weight, conv.bias, conv.opts, { ...epilogue, affine });
    affine.release();
    return y;
  });
}

export class BasicBlock extends Module {
  /** run conv-bn(-add)-relu fused when inference allows it (false: every layer's own forward) */
  fuse = true;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly downsample: Sequential | null;

  constructor(inC: number, outC: number, stride: number, rng: Rng) {
    super();
    this.conv1 = this.child('conv1', kaimingConv(inC, outC, 3, stride, 1, rng));
    this.bn1 = this.child('bn1', new BatchNorm2d(outC));
    this.conv2 = this.child('conv2', kaimingConv(outC, outC, 3, 1, 1, rng));
    this.bn2 = this.child('bn2', new BatchNorm2d(outC));
    this.downsample =
      stride !== 1 || inC !== outC ? this.child('downsample', new Sequential(kaimingConv(inC, outC, 1, stride, 0, rng), new BatchNorm2d(outC))) : null;
  }

  forward(x: Tensor): Tensor {
    const down = this.downsample ? ([this.downsample.getChild('0'), this.downsample.getChild('1')] as [Conv2d, BatchNorm2d]) : null;
    if (this.fuse && canFuse(x, [[this.conv1, this.bn1], [this.conv2, this.bn2], ...(down ? [down] : [])])) {
      const h = convBn(this.conv1, this.bn1, x, { relu: true });
      const shortcut = down ? convBn(down[0], down[1], x, {}) : x;
      const y = convBn(this.conv2, this.bn2, h, { residual: shortcut, relu: true });
      h.discard();
      if (shortcut !== x) shortcut.discard();
      return y;
    }
    const main = runLayers([this.conv1, this.bn1, RELU, this.conv2, this.bn2], x);
    const shortcut = this.downsample ? this.downsample.forward(x) : x;
    const sum = add(main, shortcut);
    main.discard();
    if (shortcut !== x) shortcut.discard();
    const y = relu(sum);
    sum.discard();
    return y;
  }
}

export interface ResNetOptions extends InitOptions {
  /** outputs of the final linear layer (default 1000, ImageNet's) */
  numClasses?: number;
}

export class ResNet extends Module {
  /** run the stem's conv1-bn1-relu fused when inference allows it (the blocks have their own switch) */
  fuse = true;

  constructor(readonly arch: ResNetArch, opts: ResNetOptions = {}) {
    super();
    const rng = opts.rng ?? defaultRng();
    const blocks = RESNET_BLOCKS[arch];
    this.child('conv1', kaimingConv(3, 64, 7, 2, 3, rng));
    this.child('bn1', new BatchNorm2d(64));
    this.child('relu', new ReLU());
    this.child('maxpool', new MaxPool2d(3, { stride: 2, padding: 1 }));
    let inC = 64;
    blocks.forEach((n, i) => {
      const outC = 64 * 2 ** i;
      const layer = new Sequential(...Array.from({ length: n }, (_, b) => new BasicBlock(b === 0 ? inC : outC, outC, b === 0 && i > 0 ? 2 : 1, rng)));
      this.child(`layer${i + 1}`, layer);
      inC = outC;
    });
    this.child('avgpool', new GlobalAvgPool2d());
    this.child('flatten', new Flatten());
    this.child('fc', new Linear(512, opts.numClasses ?? 1000, { rng }));
  }

  get numClasses(): number {
    return (this.getChild('fc') as Linear).outFeatures;
  }

  /** Backbone conv1..avgpool, head fc; groups as fastai's resnet split: [stem, layer1, layer2],
   *  [layer3, layer4], [fc]. */
  split(): ModelSplit {
    const late = ['layer3', 'layer4'];
    return childrenSplit(this, 'fc', (names) => [names.filter((n) => !underPrefix(n, late)), names.filter((n) => underPrefix(n, late))], this.normParameterNames());
  }

  /** Cut before avgpool: the body ends at layer4's maps, the tail pools and classifies them. */
  featureMaps(): FeatureMapSplit {
    const children = this.children();
    const at = children.findIndex(([n]) => n === 'avgpool');
    const [body, tail] = [children.slice(0, at).map(([, m]) => m), children.slice(at).map(([, m]) => m)];
    return { layer: children[at - 1][0], body: (x) => runLayers(body, x), tail: (a) => runLayers(tail, a) };
  }

  /** Swaps the head for a fresh `classes`-way linear layer (transfer learning). */
  replaceHead(classes: number, opts: InitOptions = {}): void {
    this.replaceChild('fc', new Linear(512, classes, opts));
  }

  forward(x: Tensor): Tensor {
    const layers = this.children().map(([, m]) => m);
    const [conv1, bn1] = layers as [Conv2d, BatchNorm2d];
    if (this.fuse && canFuse(x, [[conv1, bn1]])) {
      // the stem's conv1 - bn1 - relu as one kernel, then maxpool onwards
      const stem = convBn(conv1, bn1, x, { relu: true });
      const y = runLayers(layers.slice(3), stem);
      stem.discard();
      return y;
    }
    return runLayers(layers, x);
  }
}

/** torchvision.models.resnet18: `resnet18({ numClasses: 10 })` */
export function resnet18(opts: ResNetOptions = {}): ResNet {
  return new ResNet('resnet18', opts);
}

/** torchvision.models.resnet34 */
export function resnet34(opts: ResNetOptions = {}): ResNet {
  return new ResNet('resnet34', opts);
}
