// mixup and cutmix (src/data/mix.ts): the Beta draws, what a mixed batch holds (images and soft
// targets that agree with each other), the loss on soft targets, and a mixed run resumed exactly.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { betaSample, mixBatch, mixSeed } from '../src/data/mix.ts';
import { syntheticImages } from '../src/data/synthetic.ts';
import { Flatten, Linear, Sequential } from '../src/nn/layers.ts';
import { smallCnn } from '../src/nn/smallcnn.ts';
import { SGD } from '../src/optim/sgd.ts';
import { Rng } from '../src/tensor/index.ts';
import { readWeights } from '../src/train/checkpoint.ts';
import { batches, predictLogits, trainEpoch } from '../src/train/classifier.ts';
import { type FitOptions, fit, memoryData } from '../src/train/trainer.ts';
import { relError, useGpu } from './helpers.ts';

useGpu();

const SIZE = 6;
const ITEM = 3 * SIZE * SIZE;

function batch(n: number, seed: number) {
  const set = syntheticImages(n, SIZE, new Rng(seed));
  return batches(set.images, set.labels, n)[0];
}

describe('Beta(a, a)', () => {
  it('has the mean 1/2 and the variance 1 / (4 (2a + 1)) of Beta(a, a), for a below and above 1', () => {
    for (const a of [0.4, 2]) {
      const rng = new Rng(11);
      const xs = Array.from({ length: 20_000 }, () => betaSample(a, a, rng));
      const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
      const variance = xs.reduce((s, x) => s + (x - mean) ** 2, 0) / xs.length;
      expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...xs)).toBeLessThanOrEqual(1);
      expect(Math.abs(mean - 0.5)).toBeLessThan(0.01);
      expect(Math.abs(variance - 1 / (4 * (2 * a + 1)))).toBeLessThan(0.005);
    }
  });
});

describe('mixBatch', () => {
  it('mixup: every image is lam x_i + (1 - lam) x_j of two batch images, and its target says so', () => {
    const b = batch(8, 1);
    const m = mixBatch(b, 4, SIZE, { mixup: 0.4 }, new Rng(mixSeed(7, 0, 3)));
    expect(m.labels).toEqual(b.labels);
    expect(m.targets).toHaveLength(8 * 4);
    for (let i = 0; i < 8; i++) {
      const t = m.targets!.subarray(4 * i, 4 * i + 4);
      expect(t.reduce((s, v) => s + v, 0)).toBeCloseTo(1, 6);
      // some j with mixed_i = lam x_i + (1 - lam) x_j; lam is the same for the whole batch
      const xi = b.images.subarray(i * ITEM, (i + 1) * ITEM);
      const mi = m.images.subarray(i * ITEM, (i + 1) * ITEM);
      const found = [...Array(8).keys()].some((j) => {
        const xj = b.images.subarray(j * ITEM, (j + 1) * ITEM);
        // lam from the first pixel where x_i and x_j differ
        const k = xi.findIndex((v, q) => Math.abs(v - xj[q]) > 1e-3);
        if (k < 0) return mi.every((v, q) => Math.abs(v - xi[q]) < 1e-5);
        const lam = (mi[k] - xj[k]) / (xi[k] - xj[k]);
        if (!mi.every((v, q) => Math.abs(v - (lam * xi[q] + (1 - lam) * xj[q])) < 1e-4)) return false;
        const expected = new Float32Array(4);
        expected[b.labels[i]] += lam;
        expected[b.labels[j]] += 1 - lam;
        return relError(t, expected) < 1e-4;
      });
      expect(found, `image ${i}`).toBe(true);
    }
  });

  it("cutmix: every image is itself outside one box (the same for the batch) and another image inside it; the box's share is in the target", () => {
    const b = batch(6, 2);
    const m = mixBatch(b, 4, SIZE, { cutmix: 1 }, new Rng(mixSeed(7, 1, 0)));
    const plane = SIZE * SIZE;
    const px = (img: Float32Array, i: number, p: number) => [0, 1, 2].map((c) => img[i * ITEM + c * plane + p]);
    // the box: the bounding box of every pixel that changed in any image
    const changed = [...Array(plane).keys()].filter((p) => [...Array(6).keys()].some((i) => px(m.images, i, p).some((v, c) => v !== px(b.images, i, p)[c])));
    expect(changed.length).toBeGreaterThan(0);
    const [r0, r1] = [Math.min(...changed.map((p) => Math.floor(p / SIZE))), Math.max(...changed.map((p) => Math.floor(p / SIZE)))];
    const [c0, c1] = [Math.min(...changed.map((p) => p % SIZE)), Math.max(...changed.map((p) => p % SIZE))];
    const inBox = (p: number) => Math.floor(p / SIZE) >= r0 && Math.floor(p / SIZE) <= r1 && p % SIZE >= c0 && p % SIZE <= c1;
    const lam = 1 - ((r1 - r0 + 1) * (c1 - c0 + 1)) / plane;
    for (let i = 0; i < 6; i++) {
      const partner = [...Array(6).keys()].find((j) => [...Array(plane).keys()].every((p) => px(m.images, i, p).every((v, c) => v === px(inBox(p) ? b.images : b.images, inBox(p) ? j : i, p)[c])));
      expect(partner, `image ${i}`).toBeDefined();
      const expected = new Float32Array(4);
      expected[b.labels[i]] += lam;
      expected[b.labels[partner!]] += 1 - lam;
      expect(relError(m.targets!.subarray(4 * i, 4 * i + 4), expected), `image ${i}`).toBeLessThan(1e-5);
    }
  });

  it('the same seed mixes the same way; nothing to mix leaves the batch as it is', () => {
    const b = batch(5, 3);
    const a1 = mixBatch(b, 4, SIZE, { mixup: 0.4, cutmix: 1 }, new Rng(9));
    const a2 = mixBatch(b, 4, SIZE, { mixup: 0.4, cutmix: 1 }, new Rng(9));
    expect(a1.images).toEqual(a2.images);
    expect(a1.targets).toEqual(a2.targets);
    expect(mixBatch(b, 4, SIZE, {}, new Rng(9))).toBe(b);
    expect(mixSeed(1, 0, 0)).not.toBe(mixSeed(1, 0, 1));
  });
});

describe('training on soft targets', () => {
  it('the loss is the mean over rows of -sum_c t_c log softmax(z)_c', async () => {
    const rng = new Rng(4);
    const model = new Sequential(new Flatten(), new Linear(ITEM, 4, { rng }));
    const m = mixBatch(batch(12, 5), 4, SIZE, { mixup: 0.4 }, new Rng(1));
    const logits = (await predictLogits(model, [m], [3, SIZE, SIZE]))[0];
    let sum = 0;
    for (let i = 0; i < 12; i++) {
      const row = Array.from(logits.subarray(4 * i, 4 * i + 4));
      const mx = Math.max(...row);
      const lse = mx + Math.log(row.reduce((s, v) => s + Math.exp(v - mx), 0));
      row.forEach((z, c) => (sum += m.targets![4 * i + c] * (lse - z)));
    }
    const { losses } = await trainEpoch(model, new SGD(model.parameters(), { lr: 0.1 }), [m], [3, SIZE, SIZE]);
    expect(Math.abs(losses[0] - sum / 12) / (sum / 12)).toBeLessThan(1e-5);
    model.release();
  });

  it('a run with mixup and cutmix stopped mid-epoch and resumed ends with the uninterrupted weights', async () => {
    const setup = (s: number) => {
      const r = new Rng(9);
      return { split: smallCnn(4, { rng: new Rng(s) }).split(), data: memoryData(syntheticImages(64, 8, r), syntheticImages(16, 8, r), 16) };
    };
    const o: FitOptions = { epochs: 2, freezeEpochs: 0, lr: 0.05, lrMult: 0.1, schedule: 'onecycle', momentum: 0.9, weightDecay: 1e-4, labelSmoothing: 0.1, seed: 3, log: () => {}, mix: { mixup: 0.4, cutmix: 1 } };
    const a = setup(1);
    expect((await fit(a.split, a.data, { ...o, out: mkdtempSync(join(tmpdir(), 'gpunet-mix-')) })).status).toBe('done');
    const straight = await readWeights(a.split.model);
    a.split.model.release();
    const out = mkdtempSync(join(tmpdir(), 'gpunet-mix-'));
    const b = setup(1);
    let steps = 0;
    expect((await fit(b.split, b.data, { ...o, out, shouldStop: () => ++steps >= 6 })).status).toBe('interrupted');
    b.split.model.release();
    const c = setup(2);
    expect((await fit(c.split, c.data, { ...o, out, resume: true })).status).toBe('done');
    const resumed = await readWeights(c.split.model);
    c.split.model.release();
    for (const [name, w] of straight) expect(relError(resumed.get(name)!, w), name).toBeLessThan(1e-6);
  });
});
