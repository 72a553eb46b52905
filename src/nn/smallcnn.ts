// A small CNN for demos and end-to-end tests: two conv-bn-relu blocks, max and global pooling, a
// linear head. About 1.5k parameters at 8/16 channels.
import type { Rng } from '../tensor/index.ts';
import { BatchNorm2d, Conv2d, Flatten, GlobalAvgPool2d, Linear, MaxPool2d, ReLU, Sequential } from './layers.ts';

export function smallCnn(classes: number, rng: Rng, width = 8): Sequential {
  return new Sequential(
    new Conv2d(3, width, 3, { padding: 1, bias: false }, rng),
    new BatchNorm2d(width),
    new ReLU(),
    new MaxPool2d({ kernel: 2 }),
    new Conv2d(width, 2 * width, 3, { padding: 1, bias: false }, rng),
    new BatchNorm2d(2 * width),
    new ReLU(),
    new GlobalAvgPool2d(),
    new Flatten(),
    new Linear(2 * width, classes, rng),
  );
}
