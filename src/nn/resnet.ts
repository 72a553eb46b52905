// ResNet18 and ResNet34 exactly as torchvision builds them (torchvision.models.resnet), with the
// same state-dict names, so weights map one to one:
//   conv1 7x7/2 - bn1 - relu - maxpool 3x3/2 - layer1..layer4 (BasicBlocks) - avgpool - fc
// A BasicBlock is relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), the shortcut being a 1x1
// strided conv + bn ('downsample') where the shape changes.
import { add, relu } from '../ops/elementwise.ts';
import { defaultRng, type Rng, Tensor } from '../tensor/index.ts';
import { BatchNorm2d, Conv2d, Flatten, GlobalAvgPool2d, type InitOptions, Linear, MaxPool2d, ReLU, Sequential } from './layers.ts';
import { Module, runLayers } from './module.ts';

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

export class BasicBlock extends Module {
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

  /** Swaps the head for a fresh `classes`-way linear layer (transfer learning). */
  replaceHead(classes: number, opts: InitOptions = {}): void {
    this.replaceChild('fc', new Linear(512, classes, opts));
  }

  forward(x: Tensor): Tensor {
    return runLayers(this.children().map(([, m]) => m), x);
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
