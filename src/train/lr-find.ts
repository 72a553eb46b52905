// The learning-rate finder (fastai's lr_find, after Leslie Smith): a short run whose rate grows
// exponentially from startLr to endLr, one rate per step, recording the loss (smoothed by an
// exponential moving average, debiased), stopping once it exceeds 4x its minimum. Two suggestions
// from the curve, as fastai computes them (ignoring the first 10% and the last 5 points):
//   valley  the longest stretch of decreasing loss, 1/2 of the way along it (fastai's default)
//   steep   where the loss falls fastest per unit of log rate
import type { Batch } from '../data/dataset.ts';
import { mixBatch, type MixOptions, mixSeed } from '../data/mix.ts';
import { Rng } from '../tensor/index.ts';
import { RunError } from './checkpoint.ts';
import { trainEpoch } from './classifier.ts';
import { computeFeatures, trainingFeatureBatches } from './features.ts';
import { epochSeed, epochSteps, makeOptimizer, type OptimizerName, paramGroups, setTrainable, type TrainData } from './trainer.ts';
import type { ModelSplit } from '../nn/split.ts';

export interface LrFindOptions {
  startLr?: number;
  endLr?: number;
  steps?: number;
  /** 'frozen': head and batchnorm train (a fine-tune's first phase); 'unfrozen': all;
   *  'head': cached features of a fixed backbone, only the head */
  phase: 'frozen' | 'unfrozen' | 'head';
  /** SGD's momentum or Adam's beta1 */
  momentum: number;
  /** default sgd */
  optimizer?: OptimizerName;
  /** mixup / cutmix of the images, as training does */
  mix?: MixOptions;
  weightDecay: number;
  labelSmoothing?: number;
  seed: number;
  onStep?: (done: number, total: number, loss?: number) => void;
}

export interface LrFindResult {
  lrs: number[];
  /** smoothed losses, one per rate */
  losses: number[];
  valley: number;
  steep: number;
}

const BETA = 0.98;
const STOP_FACTOR = 4;

/** The rate of step i of n, exponentially from start to end. */
export function lrAt(i: number, n: number, start: number, end: number): number {
  return start * (end / start) ** (i / Math.max(1, n - 1));
}

/** Debiased exponential moving averages of `raw`, cut where one exceeds 4x the minimum so far or is not finite. */
export function smoothLosses(raw: number[]): number[] {
  const out: number[] = [];
  let avg = 0;
  let best = Infinity;
  for (const [i, l] of raw.entries()) {
    avg = BETA * avg + (1 - BETA) * l;
    const s = avg / (1 - BETA ** (i + 1));
    if (!Number.isFinite(s) || s > STOP_FACTOR * best) break;
    best = Math.min(best, s);
    out.push(s);
  }
  return out;
}

/** fastai's valley and steep suggestions from a recorded curve of a run planned for `planned`
 *  steps: both ignore its first tenth (planned, not recorded: a curve cut short by the loss
 *  blowing up is mostly its noisy start) and its last 5 points. */
export function suggestLrs(lrs: number[], losses: number[], planned = lrs.length): { valley: number; steep: number } {
  const skip = Math.floor(planned / 10);
  let [x, y] = [lrs.slice(skip, -5), losses.slice(skip, -5)];
  if (x.length < 3) {
    // a short curve: as much of the start skipped as leaves 3 points
    const from = Math.max(0, Math.min(skip, lrs.length - 3));
    [x, y] = [lrs.slice(from), losses.slice(from)];
  }
  const n = y.length;
  // valley: the longest decreasing subsequence's span
  const lds = new Array<number>(n).fill(1);
  let maxStart = 0;
  let maxEnd = 0;
  for (let i = 1; i < n; i++) {
    for (let j = 0; j < i; j++) {
      if (y[i] < y[j] && lds[i] < lds[j] + 1) lds[i] = lds[j] + 1;
      if (lds[maxEnd] < lds[i]) {
        maxEnd = i;
        maxStart = maxEnd - lds[maxEnd];
      }
    }
  }
  const sections = (maxEnd - maxStart) / 3;
  const valley = x[Math.min(n - 1, Math.max(0, maxStart + Math.floor(sections) + Math.floor(sections / 2)))];
  let steepest = 0;
  let best = Infinity;
  for (let i = 0; i + 1 < n; i++) {
    const g = (y[i + 1] - y[i]) / (Math.log(x[i + 1]) - Math.log(x[i]));
    if (g < best) [best, steepest] = [g, i];
  }
  return { valley, steep: x[steepest] };
}

/** Runs the finder on the model as it is (its weights change: use a fresh model afterwards). */
export async function lrFind(split: ModelSplit, data: TrainData, o: LrFindOptions): Promise<LrFindResult> {
  const steps = o.steps ?? 100;
  epochSteps(data.trainSize, data.batchSize); // (a training set with no batch to train on stops here, not in an endless loop)
  const [start, end] = [o.startLr ?? 1e-7, o.endLr ?? 10];
  const { groups } = paramGroups(split, start, 1, o.weightDecay);
  const opt = makeOptimizer(o.optimizer ?? 'sgd', groups, start, o.momentum);
  setTrainable(split, o.phase);
  let model = split.model;
  let shape = data.imageShape;
  let source: AsyncIterable<Batch>;
  if (o.phase === 'head') {
    const set = await computeFeatures(split, data.trainPlain(), data.imageShape);
    epochSteps(set.labels.length, data.batchSize);
    model = split.head;
    shape = set.shape;
    source = (async function* () {
      for (let e = 0; ; e++) yield* trainingFeatureBatches(set, data.batchSize, new Rng(epochSeed(o.seed, e)));
    })();
  } else {
    source = (async function* () {
      for (let e = 0; ; e++) {
        let k = 0;
        for await (const b of data.train(e, o.seed, 0)) yield o.mix ? mixBatch(b, data.classes.length, data.imageShape[1], o.mix, new Rng(mixSeed(o.seed, e, k++))) : b;
      }
    })();
  }
  let minSeen = Infinity;
  let stop = false;
  const limited = (async function* () {
    let i = 0;
    for await (const b of source) {
      if (i++ >= steps) return;
      yield b;
    }
  })();
  const { losses: raw } = await trainEpoch(model, opt, limited, shape, {
    steps,
    labelSmoothing: o.labelSmoothing,
    beforeStep: (s) => {
      for (const g of opt.groups) g.lr = lrAt(s, steps, start, end);
    },
    // the losses read at the GPU waits (every few steps) decide when to stop; the full log is cut exactly afterwards
    onStep: (done, loss) => {
      o.onStep?.(done, steps, loss);
      if (loss === undefined) return;
      if (!Number.isFinite(loss) || loss > STOP_FACTOR * minSeen) stop = true;
      minSeen = Math.min(minSeen, loss);
    },
    shouldStop: () => stop,
  });
  await limited.return(undefined);
  const losses = smoothLosses(raw);
  const lrs = losses.map((_, i) => lrAt(i, steps, start, end));
  if (losses.length < 2) throw new RunError(`the loss diverged within ${raw.length} steps from lr ${start}: try a lower start rate`);
  return { lrs, losses, ...suggestLrs(lrs, losses, steps) };
}
