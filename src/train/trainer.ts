// fit(): fastai's fine_tune on the engine, with the bookkeeping of a real run.
//   phase 'frozen'    (the first freezeEpochs) only the head and the backbone's batchnorm layers
//                     train — batchnorm in train mode, its scale and shift trainable, as fastai's
//                     freeze() does (train_bn=True)
//   phase 'unfrozen'  (the rest) everything trains, with discriminative rates per layer group
//   phase 'head'      (freezeEpochs >= epochs) the backbone is a fixed function (Keras'
//                     trainable=False, batchnorm in eval mode): its features are computed once,
//                     without augmentation, and each epoch trains only the head on them
// Each phase runs its own schedule cycle over its steps (fastai fits each phase with its own
// one-cycle), with SGD, Adam or AdamW. A finished run given more epochs continues with a new cycle over the added epochs
// alone, in the phase it ended in (fastai's second fit_one_cycle). Weight decay skips batchnorm
// parameters and biases (their own parameter groups); class weights scale each sample's loss
// (torch's weight=; the validation loss stays unweighted).
// After each epoch: validation (loss, accuracy, macro-F1), the history files, last.onnx and
// best.onnx (the best epoch by the monitored metric, through `exportModel`) and the training-state
// file, all written atomically, the state last, so the state on disk never describes more than what
// the other files hold. With a patience, the run stops once the monitored metric has not improved
// for that many epochs of the current cycle (Keras' EarlyStopping; best.onnx holds the best
// epoch's weights, as restore_best_weights=True leaves the model).
// The data order and augmentation of epoch e depend only on (seed, e), so a run resumed from any
// step — an epoch boundary or a Ctrl-C mid-epoch — replays exactly the batches it would have seen.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type Batch, trainingBatchCount } from '../data/dataset.ts';
import type { ImageSet } from '../data/synthetic.ts';
import { mixBatch, type MixOptions, mixSeed } from '../data/mix.ts';
import { ensureDir, sweepStaleTemps, type WriteChunk } from '../io/files.ts';
import { ProgressBar } from '../report/progress.ts';
import type { Module } from '../nn/module.ts';
import { Adam, AdamW, type Optimizer, type ParamGroup, SGD } from '../optim/index.ts';
import { Rng, type Tensor } from '../tensor/index.ts';
import { classificationMetrics } from './metrics.ts';
import { captureState, loadTrainingState, RunError, saveTrainingState, StateFileError } from './checkpoint.ts';
import { batches, crossEntropy, predictLogits, trainEpoch } from './classifier.ts';
import { computeFeatures, featureBatches, type FeatureSet, trainingFeatureBatches } from './features.ts';
import { type EpochRecord, formatEpoch, writeHistory } from './history.ts';
import { applySchedule, discriminativeLrs, makeSchedule, type Schedule, type ScheduleName } from './schedule.ts';
import type { ModelSplit } from '../nn/split.ts';

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
   * (seed, epoch) only, starting at batch `from` (a resumed epoch skips the batches done):
   * trainingBatchCount(trainSize, batchSize) of them (a last batch of one image left out).
   */
  train(epoch: number, seed: number, from: number): Batch[] | AsyncIterable<Batch>;
  /** validation batches: no augmentation, a fixed order */
  valid(): Batch[] | AsyncIterable<Batch>;
  /** the training images without augmentation (feature caching) */
  trainPlain(): Batch[] | AsyncIterable<Batch>;
  /** the training-sample indices of epoch `epoch` in the order train() serves them (cached
   *  features follow it, so a weighted sampler applies to them too); default: a seeded shuffle */
  trainOrder?(epoch: number): number[];
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
    train: (epoch, seed, from) => batches(train.images, train.labels, batchSize, new Rng(epochSeed(seed, epoch))).slice(from, trainingBatchCount(train.labels.length, batchSize)),
    valid: () => batches(valid.images, valid.labels, batchSize),
    trainPlain: () => batches(train.images, train.labels, batchSize),
  };
}

/** A training set with no batch left to train on: one image, in batches of more (a batch of one
 *  image leaves batchnorm one value per channel). */
export class TooFewImagesError extends RunError {
  constructor(
    readonly trainSize: number,
    readonly batchSize: number,
  ) {
    super(`${trainSize} training image in batches of ${batchSize}: a training batch needs at least 2 images (batchnorm); add training images`);
    this.name = 'TooFewImagesError';
  }
}

/** The training steps of an epoch of `trainSize` images (trainingBatchCount), which the trainer's
 *  schedule, progress and resume and the lr finder count with; none left is a TooFewImagesError. */
export function epochSteps(trainSize: number, batchSize: number): number {
  const steps = trainingBatchCount(trainSize, batchSize);
  if (steps === 0) throw new TooFewImagesError(trainSize, batchSize);
  return steps;
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
  /** SGD's momentum, Adam's beta1 (one-cycle cycles it 0.95 -> 0.85 -> 0.95 instead) */
  momentum: number;
  /** default sgd */
  optimizer?: OptimizerName;
  weightDecay: number;
  labelSmoothing: number;
  /** a loss weight per class (torch's weight=); none: all 1 */
  classWeights?: readonly number[];
  /** mixup / cutmix of the training images (soft targets; not applied to cached features) */
  mix?: MixOptions;
  /** the validation metric best.onnx and early stopping follow (default accuracy) */
  monitor?: Monitor;
  /** stop once the monitored metric has not improved for this many epochs of the cycle */
  patience?: number;
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
  /** called once the run folder is accepted (a new run, or one to resume), before any training */
  onStart?: () => void;
  /** replaces the state file's write(2) (tests simulate a failing disk) */
  stateWriter?: WriteChunk;
}

export interface FitResult {
  history: EpochRecord[];
  bestAccuracy: number;
  /** the best epoch by the monitored metric (null before the first epoch) */
  best: EpochRecord | null;
  /** 'done'; 'finished' (resumed a run that had nothing left to do); 'interrupted' (shouldStop:
   *  state saved); 'nonfinite' (nothing saved for the bad epoch) */
  status: 'done' | 'finished' | 'interrupted' | 'nonfinite';
  /** for 'done' and 'finished': set when patience ended the run (after epoch `epoch`) */
  stoppedEarly?: { epoch: number; patience: number };
  /** the schedule cycles of the run: epochs [from, to) each (more than one: extended runs) */
  cycles: Cycle[];
  /** for 'interrupted': epochs done and steps done in the next (0: stopped at an epoch's end) */
  stoppedAt?: { epoch: number; step: number; stepsPerEpoch: number };
  /** for 'nonfinite': the one-line reason, naming the step and rate */
  message?: string;
}

/** The metrics best.onnx and early stopping can follow, and which way is better. */
export const MONITORS = { validLoss: 'min', accuracy: 'max', macroF1: 'max' } as const;
export type Monitor = keyof typeof MONITORS;

/** Is record a strictly better than b by the monitor (anything beats nothing)? */
function better(a: EpochRecord, b: EpochRecord | null, monitor: Monitor): boolean {
  if (!b) return true;
  return MONITORS[monitor] === 'min' ? a[monitor] < b[monitor] : a[monitor] > b[monitor];
}

/** The best epoch of a history by the monitor, the earliest of equals. */
export function bestEpoch(history: readonly EpochRecord[], monitor: Monitor): EpochRecord | null {
  let best: EpochRecord | null = null;
  for (const r of history) if (better(r, best, monitor)) best = r;
  return best;
}

/** One schedule cycle: epochs [from, to) (0-based), planned when it began. */
export interface Cycle {
  from: number;
  to: number;
  /** set when patience ended the cycle, after this many epochs of the run */
  stoppedAt?: number;
  /** the patience that ended it */
  patience?: number;
}

/** Has patience ended the cycle: `patience` epochs of it done since the last improvement? */
function patienceSpent(history: readonly EpochRecord[], cycle: Cycle, monitor: Monitor, patience: number | undefined): boolean {
  if (patience === undefined || history.length <= cycle.from) return false;
  const best = bestEpoch(history, monitor)!;
  return history.length - Math.max(best.epoch, cycle.from) >= patience;
}

/**
 * A run folder that cannot be used as asked: 'no-state' (resume without a state file), 'exists'
 * (a new run over a saved one), 'mismatch' (resume with a setting other than the saved run's),
 * 'unfinished' (more epochs for a run that has not finished the ones it has).
 */
export class RunFolderError extends RunError {
  constructor(
    readonly kind: 'no-state' | 'exists' | 'mismatch' | 'unfinished',
    readonly folder: string,
    readonly setting?: { key: string; saved: unknown; now: unknown },
  ) {
    super(
      kind === 'no-state'
        ? `${folder}: no ${STATE_FILE} to resume from`
        : kind === 'exists'
          ? `${folder} holds a run already`
          : kind === 'unfinished'
            ? `${folder}: the run has done ${setting!.saved} of its epochs; it can be given more only once it has finished`
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

/** The phases of the first cycle (fine_tune's frozen then unfrozen), then one per later cycle, in
 *  the phase the previous one ended in. */
function plan(cycles: readonly Cycle[], freezeEpochs: number): PhasePlan[] {
  const epochs = cycles[0].to;
  const phases: PhasePlan[] =
    freezeEpochs >= epochs ? [{ phase: 'head', firstEpoch: 0, epochs }]
    : freezeEpochs <= 0 ? [{ phase: 'unfrozen', firstEpoch: 0, epochs }]
    : [
        { phase: 'frozen', firstEpoch: 0, epochs: freezeEpochs },
        { phase: 'unfrozen', firstEpoch: freezeEpochs, epochs: epochs - freezeEpochs },
      ];
  for (const c of cycles.slice(1)) {
    const ended = phaseAt(phases, c.from - 1);
    phases.push({ phase: ended.phase, firstEpoch: c.from, epochs: c.to - c.from });
  }
  return phases;
}

/** The phase epoch `e` (0-based) trains in: the latest planned over it (a cycle that patience
 *  ended early is planned past the start of the next one). */
function phaseAt(phases: readonly PhasePlan[], e: number): PhasePlan {
  for (let i = phases.length - 1; i >= 0; i--) if (e >= phases[i].firstEpoch && e < phases[i].firstEpoch + phases[i].epochs) return phases[i];
  throw new Error(`no phase planned for epoch ${e + 1}`);
}

/** The cycles a state file records, checked (a hostile file must not mislead the run). */
function savedCycles(config: Record<string, unknown>, epochs: number, source: string): Cycle[] {
  const c = config.cycles;
  if (c === undefined) return [{ from: 0, to: epochs }]; // (states before cycles)
  const ok =
    Array.isArray(c) && c.length >= 1 && c[0]?.from === 0 && c[c.length - 1]?.to === epochs &&
    c.every(
      (x, i) =>
        Number.isInteger(x?.from) && Number.isInteger(x?.to) && x.from < x.to && (i === 0 || (x.from > c[i - 1].from && x.from <= (c[i - 1].stoppedAt ?? c[i - 1].to))) &&
        (x.stoppedAt === undefined || (Number.isInteger(x.stoppedAt) && x.stoppedAt > x.from && x.stoppedAt < x.to && Number.isInteger(x.patience) && x.patience >= 1)),
    );
  if (!ok) throw new StateFileError(source, `not a gpunet training state (config.cycles ${JSON.stringify(c)})`);
  return c as Cycle[];
}

/** 'conv1…layer2': the first and last top-level modules of a layer group's parameters. */
function groupLabel(names: readonly string[], all: readonly string[][]): string {
  const top = (n: string) => n.split('.')[0];
  const [a, b] = [top(names[0]), top(names[names.length - 1])];
  const label = a === b ? a : `${a}…${b}`;
  const same = all.filter((g) => g.length && top(g[0]) === a && top(g[g.length - 1]) === b);
  return same.length > 1 ? `${label} (part ${same.indexOf(names as string[]) + 1} of ${same.length})` : label;
}

/** Batchnorm parameters and biases (1-D) get no weight decay. */
export function isNoDecay(name: string, t: Tensor, split: ModelSplit): boolean {
  return split.batchNormParams.has(name) || t.ndim <= 1;
}

export const OPTIMIZERS = ['sgd', 'adam', 'adamw'] as const;
export type OptimizerName = (typeof OPTIMIZERS)[number];

/** torch.optim.SGD, Adam (L2 decay) or AdamW (decoupled decay) over the groups; `momentum` is SGD's
 *  momentum or Adam's beta1 (beta2 0.999, eps 1e-8, as torch). */
export function makeOptimizer(name: OptimizerName, groups: ParamGroup[], lr: number, momentum: number): Optimizer {
  if (name === 'sgd') return new SGD(groups, { lr, momentum });
  const adam = { lr, betas: [momentum, 0.999] as [number, number] };
  return name === 'adam' ? new Adam(groups, adam) : new AdamW(groups, adam);
}

/**
 * Optimizer parameter groups: per layer group (stem first, head last), one with weight decay and one
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

/** What each layer group trains at in a phase: its peak rate (or frozen), for the log. */
function phaseRates(split: ModelSplit, phase: Phase, baseLrs: readonly number[]): string {
  const last = split.groups.length - 1;
  return split.groups
    .map((names, i) => {
      const label = split.groupLabels?.[i] ?? groupLabel(names, split.groups);
      const lr = baseLrs[2 * i].toExponential(2);
      if (phase === 'unfrozen' || i === last) return `${label} ${lr}`;
      if (phase === 'frozen' && names.some((n) => split.batchNormParams.has(n))) return `${label} batchnorm only ${lr}`;
      return `${label} frozen`;
    })
    .join(', ');
}

/** Trains `split.model` on `data` (see the file comment). */
export async function fit(split: ModelSplit, data: TrainData, o: FitOptions): Promise<FitResult> {
  const log = o.log ?? ((line: string) => console.log(line));
  if (!(Number.isInteger(o.epochs) && o.epochs >= 1)) throw new Error(`epochs must be a positive integer, got ${o.epochs}`);
  const monitor = o.monitor ?? 'accuracy';
  const stepsPerEpoch = epochSteps(data.trainSize, data.batchSize);
  const imagesPerEpoch = Math.min(data.trainSize, stepsPerEpoch * data.batchSize); // (a last batch of one left out)
  const { groups, baseLrs } = paramGroups(split, o.lr, o.lrMult, o.weightDecay);
  const optimizer = o.optimizer ?? 'sgd';
  const mixing = !!(o.mix?.mixup || o.mix?.cutmix);
  const opt = makeOptimizer(optimizer, groups, o.lr, o.momentum);
  const headGroup = groups.length - 2; // the head's decayed group: its rate is the one reported
  const config: Record<string, unknown> = {
    epochs: o.epochs, freezeEpochs: o.freezeEpochs, lr: o.lr, lrMult: o.lrMult, schedule: o.schedule, momentum: o.momentum,
    weightDecay: o.weightDecay, labelSmoothing: o.labelSmoothing, seed: o.seed, batchSize: data.batchSize, trainSize: data.trainSize,
    classes: data.classes, monitor, classWeights: o.classWeights ?? null, optimizer, mix: mixing ? o.mix : null, ...o.config,
  };
  let cycles: Cycle[] = [{ from: 0, to: o.epochs }];
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
    const savedEpochs = s.config.epochs as number;
    cycles = savedCycles(s.config, savedEpochs, statePath);
    for (const [key, now] of Object.entries(config)) {
      if (key === 'epochs' || JSON.stringify(s.config[key]) === JSON.stringify(now)) continue;
      const defaults: Record<string, unknown> = { classWeights: null, monitor: 'accuracy', optimizer: 'sgd', mix: null };
      // (a setting the caller's config adds that the saved run predates, or a trainer setting at its default)
      if (s.config[key] === undefined && ((o.config !== undefined && key in o.config) || (key in defaults && defaults[key] === now))) continue;
      throw new RunFolderError('mismatch', o.out!, { key, saved: s.config[key], now });
    }
    const last = cycles[cycles.length - 1];
    const finished = s.epoch >= savedEpochs || last.stoppedAt === s.epoch; // all its epochs, or stopped by its patience
    if (o.epochs > savedEpochs && finished) {
      cycles = [...cycles, { from: s.epoch, to: o.epochs }]; // a new cycle over the added epochs
    } else if (o.epochs !== savedEpochs) {
      throw new RunFolderError(o.epochs > savedEpochs ? 'unfinished' : 'mismatch', o.out!, { key: 'epochs', saved: o.epochs > savedEpochs ? s.epoch : savedEpochs, now: o.epochs });
    } else if (finished) {
      const early = last.stoppedAt !== undefined ? { epoch: s.epoch, patience: last.patience! } : undefined;
      return { history: s.history, bestAccuracy: s.bestAccuracy, best: bestEpoch(s.history, monitor), status: 'finished', stoppedEarly: early, cycles };
    }
    split.model.loadStateDict(s.weights, { source: statePath });
    try {
      opt.loadState(s.optimizer);
    } catch (e) {
      throw new StateFileError(statePath, `its ${optimizer} state does not fit the model (${(e as Error).message})`);
    }
    ({ epoch, stepInEpoch, partialLosses, partialSeconds, bestAccuracy, history } = s);
    const cycle = cycles[cycles.length - 1];
    log(
      cycle.from === epoch && stepInEpoch === 0 && cycles.length > 1
        ? `continuing after epoch ${epoch} with a new ${o.schedule} cycle over epochs ${epoch + 1}-${o.epochs}`
        : `resuming at epoch ${epoch + 1}${stepInEpoch ? `, step ${stepInEpoch}/${stepsPerEpoch}` : ''}`,
    );
  } else if (statePath && existsSync(statePath)) {
    throw new RunFolderError('exists', o.out!);
  }
  config.epochs = o.epochs;
  config.cycles = cycles;
  o.onStart?.();
  const phases = plan(cycles, o.freezeEpochs);
  const schedules = new Map<PhasePlan, Schedule>(phases.map((p) => [p, makeSchedule(o.schedule, p.epochs * stepsPerEpoch)]));
  const cycle = cycles[cycles.length - 1];
  let best = bestEpoch(history, monitor);

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

  // A frozen backbone for the rest of the run: the features of the plain images, once.
  let cached: { train: FeatureSet; valid: FeatureSet } | null = null;
  if (epoch < o.epochs && phaseAt(phases, epoch).phase === 'head') {
    const t0 = Date.now();
    const bar = o.progress ? new ProgressBar('features', data.trainSize + data.validSize, 'img') : null;
    let done = 0;
    const onBatch = (n: number) => bar?.update((done += n));
    const train = await computeFeatures(split, data.trainPlain(), data.imageShape, onBatch);
    const valid = await computeFeatures(split, data.valid(), data.imageShape, onBatch);
    cached = { train, valid };
    log(`cached the backbone's features of ${train.labels.length} + ${valid.labels.length} images (${train.dim} each) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    if (mixing) log('note: mixup and cutmix mix images, not the cached features of a frozen backbone: they are off for these epochs');
  }
  /** Epoch `e`'s batches from batch `from` on, mixed (mixup, cutmix) when asked: each batch by its own seed. */
  async function* mixed(source: Batch[] | AsyncIterable<Batch>, e: number, from: number): AsyncGenerator<Batch> {
    let k = from;
    for await (const b of source) yield mixBatch(b, data.classes.length, data.imageShape[1], o.mix!, new Rng(mixSeed(o.seed, e, k++)));
  }
  /** The cached features' batches of an epoch, in the data's order when it has one for every image. */
  const cachedBatches = (set: FeatureSet, e: number) => {
    const order = data.trainOrder?.(e);
    return trainingFeatureBatches(set, data.batchSize, order && set.labels.length === data.trainSize ? order : new Rng(epochSeed(o.seed, e)));
  };

  let announced: PhasePlan | null = null;
  for (; epoch < o.epochs; epoch++) {
    const p = phaseAt(phases, epoch);
    const schedule = schedules.get(p)!;
    if (announced !== p) {
      const span = p.epochs === 1 ? `epoch ${p.firstEpoch + 1}` : `epochs ${p.firstEpoch + 1}-${p.firstEpoch + p.epochs}`;
      log(`phase ${p.phase}, ${span} (${o.schedule}): peak lr ${phaseRates(split, p.phase, baseLrs)}`);
      announced = p;
    }
    setTrainable(split, p.phase);
    const model: Module = cached ? split.head : split.model;
    const from = stepInEpoch;
    const images = cached ? null : data.train(epoch, o.seed, from);
    const source = cached ? cachedBatches(cached.train, epoch).slice(from) : mixing ? mixed(images!, epoch, from) : images!;
    const shape = cached ? cached.train.shape : data.imageShape;
    const lrs: number[] = [];
    const bar = o.progress ? new ProgressBar(`epoch ${epoch + 1}/${o.epochs}`, imagesPerEpoch, 'img') : null;
    const t0 = Date.now();
    // the bar's loss: the mean of the losses read so far this epoch (one is read every few steps), as Keras' bar shows
    let [lossSum, lossesRead] = [0, 0];
    const result = await trainEpoch(model, opt, source, shape, {
      steps: stepsPerEpoch - from,
      labelSmoothing: o.labelSmoothing,
      classWeights: o.classWeights,
      stopOnNonFinite: true,
      beforeStep: (s) => {
        applySchedule(opt, schedule, baseLrs, o.momentum, (epoch - p.firstEpoch) * stepsPerEpoch + from + s);
        lrs.push(opt.groups[headGroup].lr);
      },
      onStep: (done, loss) => {
        if (loss !== undefined) [lossSum, lossesRead] = [lossSum + loss, lossesRead + 1];
        bar?.update(Math.min(imagesPerEpoch, (from + done) * data.batchSize), lossesRead ? { loss: lossSum / lossesRead } : {});
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
      return { history, bestAccuracy, best, status: 'nonfinite', message, cycles };
    }
    if (losses.length === 0 && !result.stopped) throw new RunError(`epoch ${epoch + 1}: none of the ${data.trainSize} training images could be decoded (each is listed above): fix or remove them; ${kept}`);
    stepInEpoch = from + result.steps;
    partialSeconds += (Date.now() - t0) / 1000;
    // (a loader that drops undecodable files may end an epoch a batch early: that is not a stop)
    if (result.stopped && stepInEpoch < stepsPerEpoch) {
      partialLosses = losses;
      await saveState(epoch, stepInEpoch);
      if (o.out && o.exportModel) await o.exportModel(join(o.out, 'last.onnx'));
      return { history, bestAccuracy, best, status: 'interrupted', stoppedAt: { epoch, step: stepInEpoch, stepsPerEpoch }, cycles };
    }

    const tValid = Date.now();
    const validData = cached ? featureBatches(cached.valid, data.batchSize) : await collect(data.valid());
    const logits = concatLogits(await predictLogits(model, validData, shape));
    const labels = validData.flatMap((b) => b.labels);
    if (labels.length === 0) throw new RunError(`epoch ${epoch + 1}: none of the ${data.validSize} validation images could be decoded (each is listed above): fix or remove them; ${kept}`);
    // weights that became NaN or infinite without a non-finite loss (the last step's update)
    if (!logits.every(Number.isFinite)) {
      const message = `the weights became non-finite in epoch ${epoch + 1} (its last loss ${losses[losses.length - 1]} with lr ${lrs[lrs.length - 1]?.toExponential(2)}): stopped; ${kept}`;
      return { history, bestAccuracy, best, status: 'nonfinite', message, cycles };
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
    const improved = better(record, best, monitor);
    if (improved) best = record;
    bestAccuracy = Math.max(bestAccuracy, record.accuracy);
    stepInEpoch = 0;
    partialLosses = [];
    partialSeconds = 0;
    const stopEarly = patienceSpent(history, cycle, monitor, o.patience) && epoch + 1 < o.epochs;
    if (stopEarly) Object.assign(cycle, { stoppedAt: epoch + 1, patience: o.patience }); // (saved: a resumed run knows it has finished)
    if (o.out) {
      if (o.exportModel) {
        await o.exportModel(join(o.out, 'last.onnx'));
        if (improved) await o.exportModel(join(o.out, 'best.onnx'));
      }
      await writeHistory(o.out, history);
      await saveState(epoch + 1, 0);
    }
    if (stopEarly) {
      return { history, bestAccuracy, best, status: 'done', stoppedEarly: { epoch: epoch + 1, patience: o.patience! }, cycles };
    }
    if (result.stopped) return { history, bestAccuracy, best, status: 'interrupted', stoppedAt: { epoch: epoch + 1, step: 0, stepsPerEpoch }, cycles };
  }
  return { history, bestAccuracy, best, status: 'done', cycles };
}
