// Resuming: a run stopped after 2 of 4 epochs, or by Ctrl-C in the middle of an epoch, and
// continued with --resume ends with the same weights (within 1e-6) as the run that never stopped;
// and a crash while the training-state file is replaced keeps the previous one.
import { mkdtempSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { syntheticImages } from '../src/data/synthetic.ts';
import { smallCnn } from '../src/nn/smallcnn.ts';
import { Rng } from '../src/tensor/index.ts';
import type { WriteChunk } from '../src/io/files.ts';
import { loadTrainingState, readWeights } from '../src/train/checkpoint.ts';
import { type FitOptions, fit, memoryData, RunFolderError, STATE_FILE } from '../src/train/trainer.ts';
import { relError, useGpu } from './helpers.ts';

useGpu();

const SIZE = 10;
const STEPS_PER_EPOCH = 6; // 96 images in batches of 16
const tmp = () => mkdtempSync(join(tmpdir(), 'gpunet-resume-'));

/** The same data every time; the model from `modelSeed` (a resumed run's initial weights do not matter). */
function setup(modelSeed: number) {
  const rng = new Rng(9);
  const data = memoryData(syntheticImages(96, SIZE, rng), syntheticImages(32, SIZE, rng), 16);
  return { split: smallCnn(4, { rng: new Rng(modelSeed) }).split(), data };
}

const OPTS: FitOptions = {
  epochs: 4, freezeEpochs: 1, lr: 0.05, lrMult: 0.1, schedule: 'onecycle', momentum: 0.9, weightDecay: 1e-3,
  labelSmoothing: 0.1, seed: 7, log: () => {},
};

/** Stops after `n` steps (Ctrl-C arriving during step n). */
const stopAfter = (n: number) => {
  let steps = 0;
  return () => ++steps >= n;
};

async function straight(): Promise<Map<string, Float32Array>> {
  const { split, data } = setup(1);
  const res = await fit(split, data, { ...OPTS, out: tmp() });
  expect(res.status).toBe('done');
  const w = await readWeights(split.model);
  split.model.release();
  return w;
}

async function interrupted(stopAtStep: number): Promise<{ weights: Map<string, Float32Array>; history: number[] }> {
  const out = tmp();
  const first = setup(1);
  const r1 = await fit(first.split, first.data, { ...OPTS, out, shouldStop: stopAfter(stopAtStep) });
  expect(r1.status).toBe('interrupted');
  first.split.model.release();
  const state = loadTrainingState(join(out, STATE_FILE));
  expect(state.epoch * STEPS_PER_EPOCH + state.stepInEpoch).toBe(stopAtStep);
  const second = setup(2); // different initial weights: all must come from the state file
  const r2 = await fit(second.split, second.data, { ...OPTS, out, resume: true });
  expect(r2.status).toBe('done');
  const weights = await readWeights(second.split.model);
  second.split.model.release();
  return { weights, history: r2.history.map((r) => r.trainLoss) };
}

function expectSame(a: Map<string, Float32Array>, b: Map<string, Float32Array>): void {
  expect([...a.keys()]).toEqual([...b.keys()]);
  for (const [name, w] of a) expect(relError(b.get(name)!, w), name).toBeLessThan(1e-6);
}

describe('resume equals an uninterrupted run', () => {
  it('4 epochs straight = 2 epochs, stop, resume 2 = stopped mid-epoch 3 (Ctrl-C), resume', async () => {
    const reference = await straight();
    const atBoundary = await interrupted(2 * STEPS_PER_EPOCH);
    expectSame(atBoundary.weights, reference);
    const midEpoch = await interrupted(2 * STEPS_PER_EPOCH + 3);
    expectSame(midEpoch.weights, reference);
    // the history carries over: 4 epochs either way, same losses
    expect(midEpoch.history).toHaveLength(4);
    expect(relError(midEpoch.history, atBoundary.history)).toBeLessThan(1e-6);
  });

  it('--resume refuses changed settings and a missing state; a new run refuses an existing one', async () => {
    const out = tmp();
    const { split, data } = setup(1);
    await fit(split, data, { ...OPTS, epochs: 1, freezeEpochs: 0, out });
    await expect(fit(split, data, { ...OPTS, epochs: 1, freezeEpochs: 0, out, resume: true, lr: 0.1 })).rejects.toThrow(/lr was 0.05 in the saved run, now 0.1/);
    await expect(fit(split, data, { ...OPTS, epochs: 1, freezeEpochs: 0, out })).rejects.toThrow(/holds a run already$/);
    await expect(fit(split, data, { ...OPTS, out: tmp(), resume: true })).rejects.toThrow(/no train-state.bin/);
    // another data folder with the same classes and counts: the content fingerprint differs
    const other = tmp();
    await fit(split, data, { ...OPTS, epochs: 1, freezeEpochs: 0, out: other, config: { data: { files: 128, sha256: 'aa' } } });
    await expect(fit(split, data, { ...OPTS, epochs: 1, freezeEpochs: 0, out: other, resume: true, config: { data: { files: 128, sha256: 'bb' } } })).rejects.toThrow(
      new RunFolderError('mismatch', other, { key: 'data', saved: { files: 128, sha256: 'aa' }, now: { files: 128, sha256: 'bb' } }),
    );
    split.model.release();
  });
});

/** Writes half the data, then fails, as a crash would. */
const crashingWriter: WriteChunk = (fd, data, offset, length) => {
  writeSync(fd, data, offset, length >> 1);
  throw new Error('simulated crash mid-write');
};

describe('atomic checkpoint', () => {
  it('a crash while fit saves epoch 2 leaves epoch 1 resumable', async () => {
    const out = tmp();
    const { split, data } = setup(1);
    let saves = 0;
    const writer: WriteChunk = (fd, bytes, offset, length) => (++saves === 2 ? crashingWriter(fd, bytes, offset, length) : writeSync(fd, bytes, offset, length));
    await expect(fit(split, data, { ...OPTS, out, stateWriter: writer })).rejects.toThrow(/simulated crash/);
    const state = loadTrainingState(join(out, STATE_FILE));
    expect(state.epoch).toBe(1);
    expect(state.history).toHaveLength(1);
    const res = await fit(split, data, { ...OPTS, out, resume: true });
    expect(res.history).toHaveLength(4);
    split.model.release();
  });
});
