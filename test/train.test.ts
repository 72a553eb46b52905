// End to end: a small CNN (conv-bn-relu-pool-linear) trained by the engine on a generated,
// separable image set, and a leak check over many training steps.
import { describe, expect, it } from 'vitest';
import { syntheticImages } from '../src/data/synthetic.ts';
import { getGpu } from '../src/gpu/index.ts';
import { smallCnn } from '../src/nn/smallcnn.ts';
import { SGD } from '../src/optim/sgd.ts';
import { Rng } from '../src/tensor/index.ts';
import { accuracy, batches, predictLogits, trainEpoch } from '../src/train/classifier.ts';
import { useGpu } from './helpers.ts';

useGpu();

describe('training end to end', () => {
  it('a small CNN learns generated textures to >= 95% training accuracy, loss falling', async () => {
    const rng = new Rng(1);
    const size = 12;
    const data = syntheticImages(256, size, rng);
    const shape = [3, size, size];
    const model = smallCnn(data.classes.length, { rng });
    const opt = new SGD(model.parameters(), { lr: 0.05, momentum: 0.9 });
    const epochLoss: number[] = [];
    for (let epoch = 0; epoch < 6; epoch++) {
      epochLoss.push((await trainEpoch(model, opt, batches(data.images, data.labels, 32, rng), shape)).meanLoss);
    }
    // decreasing on average: each epoch's loss below the first's, the last well below it
    for (const l of epochLoss.slice(1)) expect(l).toBeLessThan(epochLoss[0]);
    expect(epochLoss[5]).toBeLessThan(0.5 * epochLoss[0]);
    const all = batches(data.images, data.labels, 64);
    expect(accuracy(await predictLogits(model, all, shape), all)).toBeGreaterThanOrEqual(0.95);
    model.release();
  });

  it('200 training steps leave the live-buffer count flat', async () => {
    const rng = new Rng(2);
    const size = 8;
    const data = syntheticImages(8, size, rng);
    const model = smallCnn(data.classes.length, { rng, width: 4 });
    const opt = new SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 1e-4 });
    const one = batches(data.images, data.labels, 8);
    const pool = getGpu().pool;
    await trainEpoch(model, opt, one, [3, size, size]); // creates the momentum buffers
    const live = pool.stats().liveBuffers;
    const steps = Array.from({ length: 200 }, () => one[0]);
    await trainEpoch(model, opt, steps, [3, size, size]);
    expect(pool.stats().liveBuffers).toBe(live);
    model.release();
  });

  it('options.steps runs at most the first steps of an array of batches', async () => {
    const rng = new Rng(3);
    const size = 8;
    const data = syntheticImages(12, size, rng);
    const model = smallCnn(data.classes.length, { rng, width: 4 });
    const opt = new SGD(model.parameters(), { lr: 0.01 });
    const three = batches(data.images, data.labels, 4);
    const result = await trainEpoch(model, opt, three, [3, size, size], { steps: 2 });
    expect(result.steps).toBe(2);
    expect(result.losses).toHaveLength(2);
    expect((await trainEpoch(model, opt, three, [3, size, size], { steps: 4 })).steps).toBe(3);
    model.release();
  });
});
