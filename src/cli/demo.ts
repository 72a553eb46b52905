// `gpunet demo`: trains the small CNN on generated texture images and prints its accuracy: the
// whole engine (conv, batchnorm, pooling, linear, fused cross-entropy, SGD, autograd) end to end.
import { initGpu } from '../gpu/index.ts';
import { smallCnn } from '../nn/smallcnn.ts';
import { SGD } from '../optim/sgd.ts';
import { Rng } from '../tensor/index.ts';
import { syntheticImages } from '../data/synthetic.ts';
import { accuracy, batches, predictLogits, trainEpoch } from '../train/classifier.ts';
import { ProgressBar } from '../report/progress.ts';
import { defineCommand } from './command.ts';
import { int, num } from './options.ts';
import { DEVICE, seedOption } from './shared-options.ts';

export const demoCommand = defineCommand({
  name: 'demo',
  summary: 'train a small CNN on generated images and print its accuracy',
  synopsis: '[options]',
  description: `Trains a small CNN (conv-bn-relu-pool x2, linear) from scratch on generated texture images of
4 classes and prints the loss and validation accuracy per epoch.`,
  options: {
    epochs: int({ min: 1, max: 1000, default: 6, help: 'passes over the training images' }),
    train: int({ min: 1, max: 100_000, default: 512, help: 'training images generated' }),
    valid: int({ min: 1, max: 100_000, default: 256, help: 'validation images generated' }),
    size: int({ min: 4, max: 256, default: 16, help: 'image side in pixels' }),
    batchSize: int({ min: 1, max: 4096, default: 32, help: 'images per step' }),
    lr: num({ above: 0, default: 0.05, aliases: ['learning_rate'], help: 'SGD learning rate (momentum 0.9, weight decay 1e-4)' }),
    seed: seedOption('the images, the initialisation and the order'),
    ...DEVICE,
  },
  async run(v) {
    const gpu = await initGpu(v.device);
    console.log(`adapter: ${gpu.adapter.name}`);
    const rng = new Rng(v.seed);
    const train = syntheticImages(v.train, v.size, rng);
    const valid = syntheticImages(v.valid, v.size, rng);
    const shape = [3, v.size, v.size];
    const model = smallCnn(train.classes.length, { rng });
    const opt = new SGD(model.parameters(), { lr: v.lr, momentum: 0.9, weightDecay: 1e-4 });
    const validBatches = batches(valid.images, valid.labels, 64);
    const t0 = Date.now();
    for (let epoch = 1; epoch <= v.epochs; epoch++) {
      const data = batches(train.images, train.labels, v.batchSize, rng);
      const bar = new ProgressBar(`epoch ${epoch}/${v.epochs}`, data.length, 'steps');
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
});
