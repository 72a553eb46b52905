// A small CNN for demos and end-to-end tests: two conv-bn-relu blocks, max and global pooling, a
// linear head. About 1.5k parameters at 8/16 channels.
import { BatchNorm2d, Conv2d, Flatten, GlobalAvgPool2d, type InitOptions, Linear, MaxPool2d, ReLU, Sequential } from './layers.ts';

export interface SmallCnnOptions extends InitOptions {
  /** channels of the first block (the second has twice as many); default 8 */
  width?: number;
}

export function smallCnn(classes: number, opts: SmallCnnOptions = {}): Sequential {
  const { width = 8, rng } = opts;
  return new Sequential(
    new Conv2d(3, width, 3, { padding: 1, bias: false, rng }),
    new BatchNorm2d(width),
    new ReLU(),
    new MaxPool2d(2),
    new Conv2d(width, 2 * width, 3, { padding: 1, bias: false, rng }),
    new BatchNorm2d(2 * width),
    new ReLU(),
    new GlobalAvgPool2d(),
    new Flatten(),
    new Linear(2 * width, classes, { rng }),
  );
}
