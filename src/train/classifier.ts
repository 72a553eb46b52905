// The core of classifier training, shared by the trainer, the demo and the tests: one pass over
// batches with an optimizer, and evaluation. Per-step losses stay on the GPU (copied into a small log
// buffer) and are read back once per epoch, so a step never waits for the GPU; the CPU waits for
// the GPU every few steps only, and those waits read the latest loss (progress, NaN stop) for free.
import type { Batch } from '../data/dataset.ts';
import { getGpu } from '../gpu/index.ts';
import { softmaxCrossEntropy } from '../ops/softmax.ts';
import type { Module } from '../nn/module.ts';
import type { Optimizer } from '../optim/index.ts';
import { keep, noGrad, type Rng, Tensor, tidy } from '../tensor/index.ts';
import { argmaxRows } from './metrics.ts';

export type { Batch } from '../data/dataset.ts';

/** steps recorded between waits for the GPU (each wait busy-polls a core in Dawn's Node binding) */
const SYNC_EVERY = 4;

/** Splits an image array [n, ...item] into batches: in the given order of indices, shuffled by an
 *  rng, or as they are. Paths are '#index'. */
export function batches(images: Float32Array, labels: readonly number[], batchSize: number, orderOrRng?: Rng | readonly number[]): Batch[] {
  const n = labels.length;
  const item = images.length / n;
  const order = Array.isArray(orderOrRng) ? orderOrRng : [...Array(n).keys()];
  if (orderOrRng && !Array.isArray(orderOrRng)) (orderOrRng as Rng).shuffle(order);
  const out: Batch[] = [];
  for (let s = 0; s < n; s += batchSize) {
    const idx = order.slice(s, s + batchSize);
    const x = new Float32Array(idx.length * item);
    idx.forEach((j, k) => x.set(images.subarray(j * item, (j + 1) * item), k * item));
    out.push({ images: x, labels: idx.map((j) => labels[j]), paths: idx.map((j) => `#${j}`) });
  }
  return out;
}

export interface TrainEpochOptions {
  /** batches to run: required for an async source (which must yield exactly that many); for an
   *  array, at most its first `steps` batches (a shorter array runs whole) */
  steps?: number;
  /** called before step `step` (0-based) is recorded: set the learning rate here */
  beforeStep?: (step: number) => void;
  /** called after each step with the number done; `loss` is the latest loss read at a GPU wait */
  onStep?: (done: number, loss?: number) => void;
  /** checked after each step: true ends the epoch early (Ctrl-C) */
  shouldStop?: () => boolean;
  /** stop at the first GPU wait that reads a NaN or infinite loss */
  stopOnNonFinite?: boolean;
  labelSmoothing?: number;
  /** a loss weight per class (torch's weight=) */
  classWeights?: readonly number[];
  /** leave the modules' train/eval modes as they are (a frozen backbone's batchnorm in eval mode) */
  keepMode?: boolean;
}

export interface EpochResult {
  /** the loss of every step done */
  losses: number[];
  meanLoss: number;
  /** steps done (fewer than asked when stopped) */
  steps: number;
  /** shouldStop or a non-finite loss ended the epoch (possibly at its last step) */
  stopped: boolean;
}

/** One epoch (or what remains of one) of an optimizer on cross-entropy. `imageShape` is [C, H, W] (or [F]). */
export async function trainEpoch(
  model: Module,
  opt: Optimizer,
  data: Batch[] | AsyncIterable<Batch>,
  imageShape: readonly number[],
  options: TrainEpochOptions | ((step: number) => void) = {},
): Promise<EpochResult> {
  const o: TrainEpochOptions = typeof options === 'function' ? { onStep: options } : options;
  if (Array.isArray(data) && o.steps !== undefined) data = data.slice(0, o.steps);
  const total = Array.isArray(data) ? data.length : o.steps;
  if (total === undefined) throw new Error('trainEpoch: an async batch source needs options.steps');
  if (!o.keepMode) model.train();
  const log = keep(Tensor.zeros([Math.max(1, total)]));
  const gpu = getGpu();
  let step = 0;
  let stopped = false;
  for await (const b of data) {
    if (step >= total) throw new Error(`trainEpoch: the batch source yields more than ${total} batches`);
    o.beforeStep?.(step);
    tidy(() => {
      const x = Tensor.from(b.images, [b.labels.length, ...imageShape]);
      const logits = model.forward(x);
      const target = b.targets ? Tensor.from(b.targets, [b.labels.length, b.targets.length / b.labels.length]) : b.labels;
      const loss = softmaxCrossEntropy(logits, target, { labelSmoothing: o.labelSmoothing, weight: o.classWeights });
      loss.backward();
      opt.step();
      opt.zeroGrad();
      gpu.copy(loss.buffer, 0, log.buffer, step * 4, 4);
    });
    gpu.flush(); // one submit per step
    step++;
    // Let the CPU run at most a few steps ahead of the GPU: bounded queue, honest progress rates.
    // Reading the step's loss waits exactly as long as a sync.
    let latest: number | undefined;
    if (step % SYNC_EVERY === 0) latest = new Float32Array(await gpu.read(log.buffer, (step - 1) * 4, 4))[0];
    o.onStep?.(step, latest);
    if (o.shouldStop?.() || (o.stopOnNonFinite && latest !== undefined && !Number.isFinite(latest))) {
      stopped = true;
      break;
    }
  }
  const losses = Array.from(await log.toArray()).slice(0, step);
  log.release();
  return { losses, meanLoss: losses.reduce((a, b) => a + b, 0) / Math.max(1, losses.length), steps: step, stopped };
}

/** Logits of every batch in eval mode, without a tape. */
export async function predictLogits(model: Module, data: Batch[] | AsyncIterable<Batch>, imageShape: readonly number[]): Promise<Float32Array[]> {
  model.eval();
  const out: Float32Array[] = [];
  for await (const b of data) {
    out.push(await noGrad(() => tidy(() => model.forward(Tensor.from(b.images, [b.labels.length, ...imageShape])).toArray())));
  }
  return out;
}

/** Fraction of rows whose largest logit is the label. */
export function accuracy(logits: Float32Array[], data: Batch[]): number {
  let right = 0;
  let total = 0;
  data.forEach((b, i) => {
    argmaxRows(logits[i], logits[i].length / b.labels.length).forEach((best, r) => {
      if (best === b.labels[r]) right++;
      total++;
    });
  });
  return right / Math.max(1, total);
}

/** Mean cross-entropy of logits [n, classes] against labels, in float64 (validation loss). */
export function crossEntropy(logits: Float32Array, labels: readonly number[]): number {
  const classes = logits.length / Math.max(1, labels.length);
  let sum = 0;
  labels.forEach((label, r) => {
    const row = logits.subarray(r * classes, (r + 1) * classes);
    let max = -Infinity;
    for (const v of row) max = Math.max(max, v);
    let s = 0;
    for (const v of row) s += Math.exp(v - max);
    sum += max + Math.log(s) - row[label];
  });
  return sum / Math.max(1, labels.length);
}
