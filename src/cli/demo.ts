// `gpunet demo`: trains the small CNN on generated texture images and prints its accuracy: the
// whole engine (conv, batchnorm, pooling, linear, fused cross-entropy, SGD, autograd) end to end.
import { parseArgs } from 'node:util';
import { initGpu } from '../gpu/index.ts';
import { smallCnn } from '../nn/smallcnn.ts';
import { SGD } from '../optim/sgd.ts';
import { Rng } from '../tensor/index.ts';
import { syntheticImages } from '../data/synthetic.ts';
import { accuracy, batches, predictLogits, trainEpoch } from '../train/classifier.ts';
import type { Command } from './main.ts';
import { positiveNumber } from './args.ts';
import { ProgressBar } from '../report/progress.ts';

const usage = `usage: gpunet demo [--epochs 6] [--train 512] [--valid 256] [--size 16] [--batch-size 32] [--lr 0.05] [--seed 42] [--device I|NAME]

Trains a small CNN (conv-bn-relu-pool x2, linear) from scratch on generated texture images of
4 classes and prints the loss and validation accuracy per epoch.`;

export const demoCommand: Command = {
  name: 'demo',
  summary: 'train a small CNN on generated images and print its accuracy',
  usage,
  async run(args) {
    const { values } = parseArgs({
      args,
      options: {
        epochs: { type: 'string', default: '6' },
        train: { type: 'string', default: '512' },
        valid: { type: 'string', default: '256' },
        size: { type: 'string', default: '16' },
        'batch-size': { type: 'string', default: '32' },
        lr: { type: 'string', default: '0.05' },
        seed: { type: 'string', default: '42' },
        device: { type: 'string' },
      },
    });
    const num = (k: keyof typeof values) => positiveNumber(k, values[k] as string);
    const gpu = await initGpu(values.device);
    console.log(`adapter: ${gpu.adapter.name}`);
    const seed = num('seed');
    const size = num('size');
    const rng = new Rng(seed);
    const train = syntheticImages(num('train'), size, rng);
    const valid = syntheticImages(num('valid'), size, rng);
    const shape = [3, size, size];
    const model = smallCnn(train.classes.length, rng);
    const opt = new SGD(model.parameters(), { lr: num('lr'), momentum: 0.9, weightDecay: 1e-4 });
    const validBatches = batches(valid.images, valid.labels, 64);
    const epochs = num('epochs');
    const t0 = Date.now();
    for (let epoch = 1; epoch <= epochs; epoch++) {
      const data = batches(train.images, train.labels, num('batch-size'), rng);
      const bar = new ProgressBar(`epoch ${epoch}/${epochs}`, data.length, 'steps');
      const { meanLoss } = await trainEpoch(model, opt, data, shape, (s) => bar.update(s));
      const acc = accuracy(await predictLogits(model, validBatches, shape), validBatches);
      console.log(`epoch ${epoch}: train loss ${meanLoss.toFixed(4)}, valid accuracy ${(100 * acc).toFixed(1)}%`);
    }
    const trainBatches = batches(train.images, train.labels, 64);
    const trainAcc = accuracy(await predictLogits(model, trainBatches, shape), trainBatches);
    const validAcc = accuracy(await predictLogits(model, validBatches, shape), validBatches);
    console.log(
      `done in ${((Date.now() - t0) / 1000).toFixed(1)} s: train accuracy ${(100 * trainAcc).toFixed(1)}%, ` +
        `valid accuracy ${(100 * validAcc).toFixed(1)}% (${train.classes.join(', ')})`,
    );
    return 0;
  },
};
