// What steers a run besides its rates: the monitored metric best.onnx keeps, early stopping with
// a patience, a finished run resumed (nothing to do) or extended with a new cycle over the added
// epochs, class weights in the loss, the class-balanced sampler, the rates each layer group
// gets per phase, logged once, and a last training batch of one image left out.
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Batch } from '../src/data/dataset.ts';
import { ImageLoader } from '../src/data/loader.ts';
import { balancedWeights, weightedDraws } from '../src/data/sampler.ts';
import { syntheticImages } from '../src/data/synthetic.ts';
import { imbalanceWarning } from '../src/cli/data.ts';
import { classWeights } from '../src/cli/train.ts';
import { Flatten, Linear, Sequential } from '../src/nn/layers.ts';
import { smallCnn } from '../src/nn/smallcnn.ts';
import { Rng } from '../src/tensor/index.ts';
import { loadTrainingState, readWeights } from '../src/train/checkpoint.ts';
import { batches, predictLogits, trainEpoch } from '../src/train/classifier.ts';
import { lrFind } from '../src/train/lr-find.ts';
import { makeSchedule } from '../src/train/schedule.ts';
import { inverseFrequencyWeights } from '../src/train/setup.ts';
import { epochSteps, type FitOptions, fit, memoryData, RunFolderError, STATE_FILE, TooFewImagesError } from '../src/train/trainer.ts';
import { SGD } from '../src/optim/sgd.ts';
import { relError, useGpu } from './helpers.ts';

useGpu();

const SIZE = 10;
const STEPS = 6; // 96 images in batches of 16
const tmp = () => mkdtempSync(join(tmpdir(), 'gpunet-fit-control-'));

function setup(modelSeed = 1) {
  const rng = new Rng(9);
  const data = memoryData(syntheticImages(96, SIZE, rng), syntheticImages(32, SIZE, rng), 16);
  return { split: smallCnn(4, { rng: new Rng(modelSeed) }).split(), data };
}

const OPTS: FitOptions = { epochs: 2, freezeEpochs: 0, lr: 0.05, lrMult: 0.1, schedule: 'onecycle', momentum: 0.9, weightDecay: 1e-4, labelSmoothing: 0, seed: 7, log: () => {} };

/** fit with the exports it makes recorded as epoch numbers (best.onnx and last.onnx). */
async function fitRecording(o: Partial<FitOptions> & { out: string }, modelSeed = 1) {
  const { split, data } = setup(modelSeed);
  const bestAt: number[] = [];
  const lines: string[] = [];
  let epochsDone = 0;
  const res = await fit(split, data, {
    ...OPTS,
    ...o,
    log: (l) => {
      lines.push(l);
      if (/^epoch \d+\//.test(l)) epochsDone = Number(/^epoch (\d+)/.exec(l)![1]);
    },
    exportModel: async (path) => void (path.endsWith('best.onnx') && bestAt.push(epochsDone)),
  });
  const weights = await readWeights(split.model);
  split.model.release();
  return { res, bestAt, lines, weights };
}

describe('best.onnx follows --monitor; early stopping', () => {
  it('valid loss: best.onnx is rewritten exactly at the epochs that lower the best valid loss', async () => {
    const { res, bestAt } = await fitRecording({ epochs: 4, monitor: 'validLoss', out: tmp() });
    expect(res.status).toBe('done');
    let best = Infinity;
    const improving = res.history.filter((r) => r.validLoss < best && (best = r.validLoss) === r.validLoss).map((r) => r.epoch);
    expect(bestAt).toEqual(improving);
    expect(res.best!.epoch).toBe(improving[improving.length - 1]);
    expect(res.best!.validLoss).toBe(Math.min(...res.history.map((r) => r.validLoss)));
  });

  it('patience: a run that stops improving stops after that many epochs; resumed, it says it has finished; more epochs start a new cycle', async () => {
    const out = tmp();
    // a rate so small that the accuracy cannot change: epoch 1 stays the best
    const flat = { epochs: 10, lr: 1e-9, patience: 2, out };
    const first = await fitRecording(flat);
    expect(first.res.status).toBe('done');
    expect(first.res.stoppedEarly).toEqual({ epoch: 3, patience: 2 });
    expect(first.res.history.map((r) => r.accuracy)).toEqual(Array(3).fill(first.res.history[0].accuracy));
    expect(first.bestAt).toEqual([1]);
    expect(loadTrainingState(join(out, STATE_FILE)).epoch).toBe(3);

    const again = await fitRecording({ ...flat, resume: true });
    expect(again.res.status).toBe('finished');
    expect(again.res.stoppedEarly).toEqual({ epoch: 3, patience: 2 });
    expect(again.lines.filter((l) => /resuming/.test(l))).toEqual([]);
    expect(again.res.best!.epoch).toBe(1);

    // more epochs: a new cycle from epoch 4, whose patience counts from its own start
    const more = await fitRecording({ ...flat, epochs: 12, resume: true });
    expect(more.lines[0]).toBe('continuing after epoch 3 with a new onecycle cycle over epochs 4-12');
    // ... trained as that cycle (not as the tail of the first, planned over epochs 1-10)
    expect(more.lines[1]).toMatch(/^phase unfrozen, epochs 4-12 \(onecycle\): peak lr /);
    expect(more.res.status).toBe('done');
    expect(more.res.stoppedEarly).toEqual({ epoch: 5, patience: 2 });
    const cycles = [{ from: 0, to: 10, stoppedAt: 3, patience: 2 }, { from: 3, to: 12, stoppedAt: 5, patience: 2 }];
    expect(more.res.cycles).toEqual(cycles);
    expect(loadTrainingState(join(out, STATE_FILE)).config.cycles).toEqual(cycles);
    // a larger patience does not reopen a cycle that patience ended: it has finished
    const patient = await fitRecording({ ...flat, epochs: 12, patience: 5, resume: true });
    expect(patient.res.status).toBe('finished');
    expect(patient.res.stoppedEarly).toEqual({ epoch: 5, patience: 2 });
  });
});

describe('resuming a finished run', () => {
  it('without new epochs: finished, nothing trained; with more: a new cycle over the added epochs, resumable exactly', async () => {
    const out = tmp();
    const done = await fitRecording({ out });
    expect(done.res.status).toBe('done');
    const same = await fitRecording({ out, resume: true }, 5);
    expect(same.res.status).toBe('finished');
    expect(same.res.history).toHaveLength(2);
    expect(same.lines).toEqual([]);

    // fewer epochs than the run has: refused
    await expect(fitRecording({ out, epochs: 1, resume: true })).rejects.toThrow(new RunFolderError('mismatch', out, { key: 'epochs', saved: 2, now: 1 }));

    // extended to 4: epochs 3-4 run a one-cycle of their own (2 epochs of 6 steps)
    const copy = tmp();
    copyFileSync(join(out, STATE_FILE), join(copy, STATE_FILE));
    const extended = await fitRecording({ out, epochs: 4, resume: true }, 5);
    expect(extended.res.status).toBe('done');
    expect(extended.res.history.map((r) => r.epoch)).toEqual([1, 2, 3, 4]);
    const cycle = makeSchedule('onecycle', 2 * STEPS);
    expect(extended.res.history[2].lr).toBeCloseTo(OPTS.lr * cycle.lrFactor(STEPS - 1), 12);
    expect(extended.res.history[3].lr).toBeCloseTo(OPTS.lr * cycle.lrFactor(2 * STEPS - 1), 12);
    const phaseLines = extended.lines.filter((l) => l.startsWith('phase '));
    expect(phaseLines).toHaveLength(1);
    expect(phaseLines[0]).toMatch(/^phase unfrozen, epochs 3-4 \(onecycle\): peak lr /);

    // the same extension stopped in epoch 3 (Ctrl-C) and resumed: the same weights
    let steps = 0;
    const stopped = await fitRecording({ out: copy, epochs: 4, resume: true, shouldStop: () => ++steps >= 3 }, 5);
    expect(stopped.res.status).toBe('interrupted');
    expect(stopped.res.stoppedAt).toEqual({ epoch: 2, step: 3, stepsPerEpoch: STEPS });
    // before the extension has finished, it cannot be extended again
    await expect(fitRecording({ out: copy, epochs: 6, resume: true })).rejects.toThrow(new RunFolderError('unfinished', copy, { key: 'epochs', saved: 2, now: 6 }));
    const resumed = await fitRecording({ out: copy, epochs: 4, resume: true }, 6);
    expect(resumed.res.status).toBe('done');
    for (const [name, w] of extended.weights) expect(relError(resumed.weights.get(name)!, w), name).toBeLessThan(1e-6);
  });
});

describe('Adam and AdamW', () => {
  it('their moments and step counts are saved: a run stopped mid-epoch and resumed ends with the uninterrupted weights', async () => {
    for (const optimizer of ['adam', 'adamw'] as const) {
      const o = { epochs: 2, freezeEpochs: 1, lr: 1e-3, optimizer, weightDecay: 1e-2 };
      const straight = await fitRecording({ ...o, out: tmp() });
      const out = tmp();
      let steps = 0;
      const stopped = await fitRecording({ ...o, out, shouldStop: () => ++steps >= 8 });
      expect(stopped.res.stoppedAt).toEqual({ epoch: 1, step: 2, stepsPerEpoch: STEPS });
      const state = loadTrainingState(join(out, STATE_FILE));
      expect(Object.keys(state.optimizer.buffers).sort()).toEqual(['expAvg', 'expAvgSq']);
      // the head trained all 8 steps, the backbone's convolutions only the 2 unfrozen ones
      expect(Math.max(...state.optimizer.steps)).toBe(8);
      expect(Math.min(...state.optimizer.steps)).toBe(2);
      await expect(fitRecording({ ...o, optimizer: 'sgd', out, resume: true })).rejects.toThrow(new RunFolderError('mismatch', out, { key: 'optimizer', saved: optimizer, now: 'sgd' }));
      const resumed = await fitRecording({ ...o, out, resume: true }, 3);
      expect(resumed.res.status).toBe('done');
      for (const [name, w] of straight.weights) expect(relError(resumed.weights.get(name)!, w), `${optimizer} ${name}`).toBeLessThan(1e-6);
    }
  });
});

describe('class imbalance', () => {
  it('class weights scale each sample\'s loss as torch\'s weight= does', async () => {
    const rng = new Rng(4);
    const set = syntheticImages(24, 6, rng);
    const model = new Sequential(new Flatten(), new Linear(3 * 6 * 6, 4, { rng })); // no batchnorm: train and eval agree
    const [batch] = batches(set.images, set.labels, 24);
    const logits = (await predictLogits(model, [batch], [3, 6, 6]))[0];
    const weights = [0.5, 2, 1, 3];
    // float64: sum_i w[y_i] * (logsumexp(z_i) - z_i[y_i]) / sum_i w[y_i]
    let num = 0;
    let den = 0;
    batch.labels.forEach((y, i) => {
      const row = Array.from(logits.subarray(4 * i, 4 * i + 4));
      const m = Math.max(...row);
      const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
      num += weights[y] * (lse - row[y]);
      den += weights[y];
    });
    const opt = new SGD(model.parameters(), { lr: 0.1 });
    const { losses } = await trainEpoch(model, opt, [batch], [3, 6, 6], { classWeights: weights });
    expect(Math.abs(losses[0] - num / den) / (num / den)).toBeLessThan(1e-5);
    model.release();

    // and a resumed run must keep them
    const out = tmp();
    await fitRecording({ out, epochs: 1, classWeights: [1, 1, 2, 2] });
    await expect(fitRecording({ out, epochs: 1, classWeights: [1, 1, 1, 1], resume: true })).rejects.toThrow(
      new RunFolderError('mismatch', out, { key: 'classWeights', saved: [1, 1, 2, 2], now: [1, 1, 1, 1] }),
    );
  });

  it('inverse-frequency weights and the imbalance warning', () => {
    const labels = [...Array(30).fill(0), ...Array(10).fill(1), ...Array(5).fill(2)];
    expect(inverseFrequencyWeights(labels, 3)).toEqual([45 / 90, 45 / 30, 45 / 15]);
    const sample = (l: number, i: number) => ({ path: `${l}/${i}.png`, label: l });
    const split = (counts: number[]) => ({ classes: ['ants', 'bees', 'wasps'].slice(0, counts.length), train: counts.flatMap((c, l) => Array.from({ length: c }, (_, i) => sample(l, i))), valid: [], test: [], skipped: [], duplicates: [] });
    expect(imbalanceWarning(split([30, 10, 11]))).toBeNull(); // 3x exactly is not more than 3x
    expect(imbalanceWarning(split([31, 10, 12]))).toBe(
      'warning: the classes are imbalanced: ants has 31 training images, bees 10 (3.1x); consider --class-weights auto or --sampler balanced, and watch macro-F1 (--monitor macro-f1)',
    );
  });

  it('--class-weights FILE: JSON by class name or one number per line in class order; bad files are one line', () => {
    const sample = (l: number) => ({ path: `${l}.png`, label: l });
    const data = { classes: ['ants', 'bees'], train: [sample(0), sample(0), sample(0), sample(1)], valid: [], test: [], skipped: [], duplicates: [] };
    const dir = tmp();
    const file = (name: string, text: string) => (writeFileSync(join(dir, name), text), join(dir, name));
    expect(classWeights('auto', data)).toEqual([4 / 6, 4 / 2]);
    expect(classWeights(file('w.json', '{"bees": 3, "ants": "0.5"}'), data)).toEqual([0.5, 3]);
    expect(classWeights(file('w.txt', '1\n2.5\n'), data)).toEqual([1, 2.5]);
    expect(classWeights(undefined, data)).toBeUndefined();
    const short = file('short.txt', '1\n');
    expect(() => classWeights(short, data)).toThrow(`--class-weights ${short}: 1 weights for 2 classes (ants, bees)`);
    const missing = file('missing.json', '{"ants": 1}');
    expect(() => classWeights(missing, data)).toThrow(`--class-weights ${missing}: the weight of class 'bees' is null, not a number >= 0`);
    const negative = file('negative.json', '[1, -2]');
    expect(() => classWeights(negative, data)).toThrow(`--class-weights ${negative}: the weight of class 'bees' is -2, not a number >= 0`);
    const zeros = file('zeros.txt', '0\n0\n');
    expect(() => classWeights(zeros, data)).toThrow(`--class-weights ${zeros}: every weight is 0`);
  });

  it('the balanced sampler draws every class about equally often, differently each epoch, the same on every run', () => {
    const labels = [...Array(90).fill(0), ...Array(10).fill(1)];
    const draws = weightedDraws(balancedWeights(labels), 20_000, new Rng(3));
    const minority = draws.filter((i) => labels[i] === 1).length / draws.length;
    expect(Math.abs(minority - 0.5)).toBeLessThan(0.02);
    const samples = labels.map((label, i) => ({ path: `img${i}.png`, label }));
    const loader = new ImageLoader(samples, { size: 8, batchSize: 10, augment: null, mean: [0, 0, 0], std: [1, 1, 1], shuffle: true, seed: 5, workers: 0, sampleWeights: balancedWeights(labels) });
    const [e0, e1] = [loader.order(0), loader.order(1)];
    expect(e0).toHaveLength(100);
    expect(e0).not.toEqual(e1);
    expect(new ImageLoader(samples, { size: 8, batchSize: 10, augment: null, mean: [0, 0, 0], std: [1, 1, 1], shuffle: true, seed: 5, workers: 0, sampleWeights: balancedWeights(labels) }).order(0)).toEqual(e0);
    const minorityPerEpoch = [e0, e1].map((o) => o.filter((i) => labels[i] === 1).length);
    for (const m of minorityPerEpoch) expect(m).toBeGreaterThan(30); // 10 of 100 when shuffled
  });
});

describe('the rates of each phase', () => {
  it('are logged once per phase: the frozen phase names the frozen groups, the unfrozen one every group\'s rate', async () => {
    const { lines } = await fitRecording({ epochs: 3, freezeEpochs: 1, out: tmp() });
    const phases = lines.filter((l) => l.startsWith('phase '));
    // smallCnn's layer groups: the backbone in two halves (of the Sequential's children), the head
    expect(phases).toEqual([
      'phase frozen, epoch 1 (onecycle): peak lr 0…1 batchnorm only 5.00e-3, 4…5 batchnorm only 1.58e-2, 9 5.00e-2',
      'phase unfrozen, epochs 2-3 (onecycle): peak lr 0…1 5.00e-3, 4…5 1.58e-2, 9 5.00e-2',
    ]);
    expect(lines.indexOf(phases[1])).toBe(lines.findIndex((l) => l.startsWith('epoch 1/3')) + 1);
  });
});

describe('a last training batch of one image', () => {
  // 2 px images: the small CNN's second batchnorm sees a 1x1 map, as a ResNet's last one does at 32 px
  const tiny = (n: number, batchSize = 4) => {
    const rng = new Rng(4);
    return { split: smallCnn(4, { rng: new Rng(2) }).split(), data: memoryData(syntheticImages(n, 2, rng), syntheticImages(4, 2, rng), batchSize) };
  };

  it('is what batchnorm refuses in training', async () => {
    const { split, data } = tiny(9);
    const lone = batches(new Float32Array((data.train(0, 1, 0) as Batch[])[0].images.subarray(0, 12)), [0], 1);
    await expect(trainEpoch(split.model, new SGD(split.model.parameters(), { lr: 0.1 }), lone, data.imageShape)).rejects.toThrow(/more than 1 value per channel/);
    split.model.release();
  });

  it('is left out (9 images in batches of 4: 2 steps); the schedule spans the steps taken; a run stopped mid-epoch resumes exactly', async () => {
    expect(epochSteps(9, 4)).toBe(2);
    expect(epochSteps(10, 4)).toBe(3); // a last batch of 2 trains
    expect(epochSteps(3, 8)).toBe(1); // a set smaller than a batch is one batch
    const o = { ...OPTS, epochs: 2, lr: 0.1 };
    const run = async (extra: Partial<FitOptions>) => {
      const { split, data } = tiny(9);
      expect((data.train(1, o.seed, 0) as Batch[]).map((b) => b.labels.length)).toEqual([4, 4]);
      const res = await fit(split, data, { ...o, ...extra });
      const weights = await readWeights(split.model);
      split.model.release();
      return { res, weights };
    };
    const straight = await run({ out: tmp() });
    expect(straight.res.status).toBe('done');
    // the last step ran at the one-cycle's last rate over 2 x 2 steps (3 steps an epoch would have ended at a higher one)
    expect(straight.res.history[1].lr).toBeCloseTo(o.lr * makeSchedule('onecycle', 4).lrFactor(3), 12);
    expect(makeSchedule('onecycle', 6).lrFactor(3)).toBeGreaterThan(2 * makeSchedule('onecycle', 4).lrFactor(3));
    const out = tmp();
    let steps = 0;
    const stopped = await run({ out, shouldStop: () => ++steps >= 3 });
    expect(stopped.res.stoppedAt).toEqual({ epoch: 1, step: 1, stepsPerEpoch: 2 });
    expect(loadTrainingState(join(out, STATE_FILE)).globalStep).toBe(3);
    // a state saved when that batch was trained (3 steps an epoch: global step 1 x 3 + 1) is refused in one line
    const old = join(tmp(), STATE_FILE);
    writeFileSync(old, Buffer.from(readFileSync(join(out, STATE_FILE), 'latin1').replace('"globalStep":3', '"globalStep":4'), 'latin1'));
    expect(() => loadTrainingState(old)).toThrow(`${old}: saved by an earlier gpunet, which trained a last batch of one image each epoch (9 images in batches of 4); that batch is now left out, so its steps cannot resume exactly; delete it or choose another run folder`);
    const resumed = await run({ out, resume: true });
    expect(resumed.res.status).toBe('done');
    for (const [name, w] of straight.weights) expect(relError(resumed.weights.get(name)!, w), name).toBeLessThan(1e-6);
  });

  it('cached features (a backbone frozen for the whole run) leave it out too', async () => {
    const { split, data } = tiny(9);
    const out = tmp();
    const res = await fit(split, data, { ...OPTS, epochs: 2, freezeEpochs: 2, optimizer: 'adam', lr: 1e-3, out });
    expect(res.status).toBe('done');
    expect(Math.max(...loadTrainingState(join(out, STATE_FILE)).optimizer.steps)).toBe(4); // Adam's step count: 2 x 2
    split.model.release();
  });

  it('lr-find skips it too; a training set with no batch left is one line', async () => {
    const { split, data } = tiny(9);
    const res = await lrFind(split, data, { phase: 'unfrozen', momentum: 0.9, weightDecay: 0, seed: 1, steps: 6, endLr: 1 });
    expect(res.lrs.length).toBeGreaterThan(1);
    split.model.release();
    const one = tiny(1);
    await expect(fit(one.split, one.data, OPTS)).rejects.toThrow(new TooFewImagesError(1, 4));
    await expect(lrFind(one.split, one.data, { phase: 'unfrozen', momentum: 0.9, weightDecay: 0, seed: 1 })).rejects.toThrow(/^1 training image in batches of 4: a training batch needs at least 2 images \(batchnorm\); add training images$/);
    one.split.model.release();
  });
});
