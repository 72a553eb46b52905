// fit(): fastai's fine_tune on the engine, with the bookkeeping of a real run.
//   phase 'frozen'    (the first freezeEpochs) only the head and the backbone's batchnorm layers
//                     train — batchnorm in train mode, its scale and shift trainable, as fastai's
//                     freeze() does (train_bn=True)
//   phase 'unfrozen'  (the rest) everything trains, with discriminative rates per layer group
//   phase 'head'      (freezeEpochs >= epochs) the backbone is a fixed function (Keras'
//                     trainable=False, batchnorm in eval mode): its features are computed once,
//                     without augmentation, and each epoch trains only the head on them
// Each phase runs its own schedule cycle over its steps (fastai fits each phase with its own
// one-cycle). Weight decay skips batchnorm parameters and biases (their own parameter groups).
// After each epoch: validation (loss, accuracy, macro-F1), the history files, last.onnx and
// best.onnx (through `exportModel`) and the training-state file, all written atomically, the state
// last, so the state on disk never describes more than what the other files hold.
// The data order and augmentation of epoch e depend only on (seed, e), so a run resumed from any
// step — an epoch boundary or a Ctrl-C mid-epoch — replays exactly the batches it would have seen.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Batch } from '../data/dataset.ts';
import type { ImageSet } from '../data/synthetic.ts';
import { ensureDir, sweepStaleTemps, type WriteChunk } from '../io/files.ts';
import { ProgressBar } from '../report/progress.ts';
import type { Module } from '../nn/module.ts';
import { type ParamGroup, SGD } from '../optim/sgd.ts';
import { Rng, type Tensor } from '../tensor/index.ts';
import { classificationMetrics } from './metrics.ts';
import { captureState, loadTrainingState, RunError, saveTrainingState } from './checkpoint.ts';
import { batches, crossEntropy, predictLogits, trainEpoch } from './classifier.ts';
import { computeFeatures, featureBatches, type FeatureSet } from './features.ts';
import { type EpochRecord, formatEpoch, writeHistory } from './history.ts';
import { applySchedule, discriminativeLrs, makeSchedule, type Schedule, type ScheduleName } from './schedule.ts';
import type { ModelSplit } from './transfer.ts';

export const STATE_FILE = 'train-state.bin';

/** What the trainer needs from a data set: seeded, epoch-addressable batches. */
export interface TrainData {
  classes: readonly string[];
  /** [C, H, W] */
  imageShape: readonly number[];
  trainSize: number;
  validSize: number;
  batchSize: number;
  /**
   * Training batches of epoch `epoch` (0-based), shuffled and augmented as a function of
   * (seed, epoch) only, starting at batch `from` (a resumed epoch skips the batches done).
   */
  train(epoch: number, seed: number, from: number): Batch[] | AsyncIterable<Batch>;
  /** validation batches: no augmentation, a fixed order */
  valid(): Batch[] | AsyncIterable<Batch>;
  /** the training images without augmentation (feature caching) */
  trainPlain(): Batch[] | AsyncIterable<Batch>;
}

/** The generator seed of epoch `epoch`'s data order (a hash of the run's seed and the epoch). */
export function epochSeed(seed: number, epoch: number): number {
  let h = Math.imul((seed ^ 0x5bd1e995) >>> 0, 0x9e3779b1) ^ Math.imul(epoch + 1, 0x85ebca77);
  h ^= h >>> 15;
  return Math.imul(h, 0x2c1b3c6d) >>> 0;
}

/** Images in memory (generated sets, tests): shuffled per epoch, no augmentation. */
export function memoryData(train: ImageSet, valid: ImageSet, batchSize: number): TrainData {
  return {
    classes: train.classes,
    imageShape: [3, train.size, train.size],
    trainSize: train.labels.length,
    validSize: valid.labels.length,
    batchSize,
    train: (epoch, seed, from) => batches(train.images, train.labels, batchSize, new Rng(epochSeed(seed, epoch))).slice(from),
    valid: () => batches(valid.images, valid.labels, batchSize),
    trainPlain: () => batches(train.images, train.labels, batchSize),
  };
}

export interface FitOptions {
  /** epochs in all, the frozen ones included */
  epochs: number;
  /** epochs with the backbone frozen first (>= epochs: the whole run, with cached features) */
  freezeEpochs: number;
  /** the head's peak rate */
  lr: number;
  /** the stem's rate is lr * lrMult, groups between geometric (1: one rate for all) */
  lrMult: number;
  schedule: ScheduleName;
  /** SGD momentum (one-cycle cycles it 0.95 -> 0.85 -> 0.95 instead) */
  momentum: number;
  weightDecay: number;
  labelSmoothing: number;
  seed: number;
  /** the run folder: history, checkpoints, training state (none: nothing is written) */
  out?: string;
  /** continue the run in `out` from its training-state file */
  resume?: boolean;
  /** writes the model as a classifier checkpoint (last.onnx, best.onnx); none: no checkpoints */
  exportModel?: (path: string) => Promise<void>;
  /** settings that must match on resume besides the options here (architecture, weights, data) */
  config?: Record<string, unknown>;
  /** one line per epoch and per event (default console.log) */
  log?: (line: string) => void;
  /** a progress bar per epoch on stderr */
  progress?: boolean;
  /** checked after every step: true saves and returns (Ctrl-C) */
  shouldStop?: () => boolean;
  /** replaces the state file's write(2) (tests simulate a failing disk) */
  stateWriter?: WriteChunk;
}

export interface FitResult {
  history: EpochRecord[];
  bestAccuracy: number;
  /** 'done'; 'interrupted' (shouldStop: state saved); 'nonfinite' (nothing saved for the bad epoch) */
  status: 'done' | 'interrupted' | 'nonfinite';
  /** for 'interrupted': epochs done and steps done in the next (0: stopped at an epoch's end) */
  stoppedAt?: { epoch: number; step: number; stepsPerEpoch: number };
  /** for 'nonfinite': the one-line reason, naming the step and rate */
  message?: string;
}

/**
 * A run folder that cannot be used as asked: 'no-state' (resume without a state file), 'exists'
 * (a new run over a saved one), 'mismatch' (resume with a setting other than the saved run's).
 */
export class RunFolderError extends RunError {
  constructor(
    readonly kind: 'no-state' | 'exists' | 'mismatch',
    readonly folder: string,
    readonly setting?: { key: string; saved: unknown; now: unknown },
  ) {
    super(
      kind === 'no-state'
        ? `${folder}: no ${STATE_FILE} to resume from`
        : kind === 'exists'
          ? `${folder} holds a run already`
          : `${folder}: ${setting!.key} was ${JSON.stringify(setting!.saved)} in the saved run, now ${JSON.stringify(setting!.now)}`,
    );
    this.name = 'RunFolderError';
  }
}

export type Phase = 'frozen' | 'unfrozen' | 'head';

interface PhasePlan {
  phase: Phase;
  firstEpoch: number;
  epochs: number;
}

function plan(epochs: number, freezeEpochs: number): PhasePlan[] {
  if (freezeEpochs >= epochs) return [{ phase: 'head', firstEpoch: 0, epochs }];
  if (freezeEpochs <= 0) return [{ phase: 'unfrozen', firstEpoch: 0, epochs }];
  return [
    { phase: 'frozen', firstEpoch: 0, epochs: freezeEpochs },
    { phase: 'unfrozen', firstEpoch: freezeEpochs, epochs: epochs - freezeEpochs },
  ];
}

/** Batchnorm parameters and biases (1-D) get no weight decay. */
export function isNoDecay(name: string, t: Tensor, split: ModelSplit): boolean {
  return split.batchNormParams.has(name) || t.ndim <= 1;
}

/**
 * SGD parameter groups: per layer group (stem first, head last), one with weight decay and one
 * without (batchnorm, biases), each at the layer group's base rate. Returns the groups and each
 * one's base rate.
 */
export function paramGroups(split: ModelSplit, lr: number, lrMult: number, weightDecay: number): { groups: ParamGroup[]; baseLrs: number[] } {
  const byName = new Map(split.model.namedParameters());
  const lrs = discriminativeLrs(lr, lrMult, split.groups.length);
  const groups: ParamGroup[] = [];
  const baseLrs: number[] = [];
  split.groups.forEach((names, i) => {
    const ts = names.map((n): [string, Tensor] => [n, byName.get(n)!]);
    for (const decay of [true, false]) {
      groups.push({
        name: `group${i}.${decay ? 'decay' : 'no_decay'}`,
        params: ts.filter(([n, t]) => isNoDecay(n, t, split) !== decay).map(([, t]) => t),
        lr: lrs[i],
        weightDecay: decay ? weightDecay : 0,
      });
      baseLrs.push(lrs[i]);
    }
  });
  return { groups, baseLrs };
}

/** Which parameters train in a phase (requiresGrad). */
export function setTrainable(split: ModelSplit, phase: Phase): void {
  const head = new Set(split.groups[split.groups.length - 1]);
  for (const [name, t] of split.model.namedParameters()) {
    t.requiresGrad = phase === 'unfrozen' || head.has(name) || (phase === 'frozen' && split.batchNormParams.has(name));
  }
}

function concatLogits(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

async function collect(data: Batch[] | AsyncIterable<Batch>): Promise<Batch[]> {
  if (Array.isArray(data)) return data;
  const out: Batch[] = [];
  for await (const b of data) out.push(b);
  return out;
}

/** Trains `split.model` on `data` (see the file comment). */
export async function fit(split: ModelSplit, data: TrainData, o: FitOptions): Promise<FitResult> {
  const log = o.log ?? ((line: string) => console.log(line));
  if (!(Number.isInteger(o.epochs) && o.epochs >= 1)) throw new Error(`epochs must be a positive integer, got ${o.epochs}`);
  const phases = plan(o.epochs, o.freezeEpochs);
  const stepsPerEpoch = Math.ceil(data.trainSize / data.batchSize);
  const schedules = new Map<Phase, Schedule>(phases.map((p) => [p.phase, makeSchedule(o.schedule, p.epochs * stepsPerEpoch)]));
  const { groups, baseLrs } = paramGroups(split, o.lr, o.lrMult, o.weightDecay);
  const opt = new SGD(groups, { lr: o.lr, momentum: o.momentum });
  const headGroup = groups.length - 2; // the head's decayed group: its rate is the one reported
  const config = {
    epochs: o.epochs, freezeEpochs: o.freezeEpochs, lr: o.lr, lrMult: o.lrMult, schedule: o.schedule, momentum: o.momentum,
    weightDecay: o.weightDecay, labelSmoothing: o.labelSmoothing, seed: o.seed, batchSize: data.batchSize, trainSize: data.trainSize,
    classes: data.classes, ...o.config,
  };
  const statePath = o.out ? join(o.out, STATE_FILE) : null;

  let epoch = 0;
  let stepInEpoch = 0;
  let partialLosses: number[] = [];
  let partialSeconds = 0;
  let bestAccuracy = -1;
  let history: EpochRecord[] = [];
  if (o.out) {
    ensureDir(o.out);
    const swept = sweepStaleTemps(o.out);
    if (swept.removed.length) log(`removed ${swept.removed.length} temporary file(s) of an interrupted run in ${o.out} (${(swept.bytes / 1e6).toFixed(1)} MB)`);
  }
  if (o.resume) {
    if (!statePath || !existsSync(statePath)) throw new RunFolderError('no-state', o.out ?? '(no run folder)');
    const s = loadTrainingState(statePath);
    for (const [key, now] of Object.entries(config)) {
      if (JSON.stringify(s.config[key]) === JSON.stringify(now) || (key === 'data' && s.config.data === undefined)) continue; // (states before data fingerprints)
      throw new RunFolderError('mismatch', o.out!, { key, saved: s.config[key], now });
    }
    split.model.loadStateDict(s.weights, { source: statePath });
    opt.loadState({ buffers: { momentum: s.momentum }, steps: s.momentum.map(() => 0) }); // SGD's steps count nothing
    ({ epoch, stepInEpoch, partialLosses, partialSeconds, bestAccuracy, history } = s);
    log(`resuming at epoch ${epoch + 1}${stepInEpoch ? `, step ${stepInEpoch}/${stepsPerEpoch}` : ''}`);
  } else if (statePath && existsSync(statePath)) {
    throw new RunFolderError('exists', o.out!);
  }

  /** Saves the state after `epochsDone` epochs and `steps` steps of the next. */
  const saveState = async (epochsDone: number, steps: number) => {
    if (!statePath) return;
    const rngState = epochSeed(o.seed, epochsDone);
    const state = await captureState(split.model, opt, {
      epoch: epochsDone, stepInEpoch: steps, globalStep: epochsDone * stepsPerEpoch + steps, partialLosses, partialSeconds,
      seed: o.seed, rngState, bestAccuracy, history, config,
    });
    saveTrainingState(statePath, state, o.stateWriter);
  };

  // A whole-run frozen backbone: the features of the plain images, once.
  let cached: { train: FeatureSet; valid: FeatureSet } | null = null;
  if (phases[0].phase === 'head' && epoch < o.epochs) {
    const t0 = Date.now();
    const bar = o.progress ? new ProgressBar('features', data.trainSize + data.validSize, 'img') : null;
    let done = 0;
    const onBatch = (n: number) => bar?.update((done += n));
    const train = await computeFeatures(split, data.trainPlain(), data.imageShape, onBatch);
    const valid = await computeFeatures(split, data.valid(), data.imageShape, onBatch);
    cached = { train, valid };
    log(`cached the backbone's features of ${train.labels.length} + ${valid.labels.length} images (${train.dim} each) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }

  for (; epoch < o.epochs; epoch++) {
    const p = phases.find((q) => epoch >= q.firstEpoch && epoch < q.firstEpoch + q.epochs)!;
    const schedule = schedules.get(p.phase)!;
    setTrainable(split, p.phase);
    const model: Module = cached ? split.head : split.model;
    const seed = epochSeed(o.seed, epoch);
    const from = stepInEpoch;
    const source = cached ? featureBatches(cached.train, data.batchSize, new Rng(seed)).slice(from) : data.train(epoch, o.seed, from);
    const shape = cached ? [cached.train.dim] : data.imageShape;
    const lrs: number[] = [];
    const bar = o.progress ? new ProgressBar(`epoch ${epoch + 1}/${o.epochs}`, data.trainSize, 'img') : null;
    const t0 = Date.now();
    let runningLoss: number | undefined;
    const result = await trainEpoch(model, opt, source, shape, {
      steps: stepsPerEpoch - from,
      labelSmoothing: o.labelSmoothing,
      stopOnNonFinite: true,
      beforeStep: (s) => {
        applySchedule(opt, schedule, baseLrs, o.momentum, (epoch - p.firstEpoch) * stepsPerEpoch + from + s);
        lrs.push(opt.groups[headGroup].lr);
      },
      onStep: (done, loss) => {
        if (loss !== undefined) runningLoss = loss;
        bar?.update(Math.min(data.trainSize, (from + done) * data.batchSize), runningLoss === undefined ? {} : { loss: runningLoss });
      },
      shouldStop: o.shouldStop,
    });
    const losses = [...partialLosses, ...result.losses];
    const kept = epoch === 0 ? 'nothing was saved' : `the checkpoints of epoch ${epoch} are kept`;
    const bad = result.losses.findIndex((l) => !Number.isFinite(l));
    if (bad >= 0) {
      const message =
        `the loss became ${result.losses[bad]} at step ${epoch * stepsPerEpoch + from + bad + 1} (epoch ${epoch + 1}, step ${from + bad + 1}/${stepsPerEpoch}) ` +
        `with lr ${lrs[bad].toExponential(2)}: stopped; ${kept}`;
      return { history, bestAccuracy, status: 'nonfinite', message };
    }
    if (losses.length === 0 && !result.stopped) throw new RunError(`epoch ${epoch + 1}: none of the ${data.trainSize} training images could be decoded (each is listed above): fix or remove them; ${kept}`);
    stepInEpoch = from + result.steps;
    partialSeconds += (Date.now() - t0) / 1000;
    // (a loader that drops undecodable files may end an epoch a batch early: that is not a stop)
    if (result.stopped && stepInEpoch < stepsPerEpoch) {
      partialLosses = losses;
      await saveState(epoch, stepInEpoch);
      if (o.out && o.exportModel) await o.exportModel(join(o.out, 'last.onnx'));
      return { history, bestAccuracy, status: 'interrupted', stoppedAt: { epoch, step: stepInEpoch, stepsPerEpoch } };
    }

    const tValid = Date.now();
    const validData = cached ? featureBatches(cached.valid, data.batchSize) : await collect(data.valid());
    const logits = concatLogits(await predictLogits(model, validData, shape));
    const labels = validData.flatMap((b) => b.labels);
    if (labels.length === 0) throw new RunError(`epoch ${epoch + 1}: none of the ${data.validSize} validation images could be decoded (each is listed above): fix or remove them; ${kept}`);
    // weights that became NaN or infinite without a non-finite loss (the last step's update)
    if (!logits.every(Number.isFinite)) {
      const message = `the weights became non-finite in epoch ${epoch + 1} (its last loss ${losses[losses.length - 1]} with lr ${lrs[lrs.length - 1]?.toExponential(2)}): stopped; ${kept}`;
      return { history, bestAccuracy, status: 'nonfinite', message };
    }
    const metrics = classificationMetrics(logits, labels, data.classes.length, { topK: [] });
    const record: EpochRecord = {
      epoch: epoch + 1,
      phase: p.phase,
      trainLoss: losses.reduce((a, b) => a + b, 0) / losses.length,
      validLoss: crossEntropy(logits, labels),
      accuracy: metrics.accuracy,
      macroF1: metrics.macroF1,
      lr: lrs[lrs.length - 1] ?? opt.groups[headGroup].lr,
      seconds: partialSeconds + (Date.now() - tValid) / 1000, // training and validation
    };
    history = [...history, record];
    log(formatEpoch(record, o.epochs));
    const improved = record.accuracy > bestAccuracy;
    if (improved) bestAccuracy = record.accuracy;
    stepInEpoch = 0;
    partialLosses = [];
    partialSeconds = 0;
    if (o.out) {
      if (o.exportModel) {
        await o.exportModel(join(o.out, 'last.onnx'));
        if (improved) await o.exportModel(join(o.out, 'best.onnx'));
      }
      await writeHistory(o.out, history);
      await saveState(epoch + 1, 0);
    }
    if (result.stopped) return { history, bestAccuracy, status: 'interrupted', stoppedAt: { epoch: epoch + 1, step: 0, stepsPerEpoch } };
  }
  return { history, bestAccuracy, status: 'done' };
}
