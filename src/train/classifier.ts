// The core of classifier training, shared by the demo and the tests: one pass over batches with
// SGD, and evaluation. Per-step losses stay on the GPU (copied into a small log buffer) and are
// read back once per epoch, so a step never waits for the GPU.
import { getGpu } from '../gpu/index.ts';
import { softmaxCrossEntropy } from '../ops/softmax.ts';
import type { Module } from '../nn/module.ts';
import type { SGD } from '../optim/sgd.ts';
import { keep, noGrad, type Rng, Tensor, tidy } from '../tensor/index.ts';

/** steps recorded between waits for the GPU (each wait busy-polls a core in Dawn's Node binding) */
const SYNC_EVERY = 4;

export interface Batch {
  /** [B, C, H, W] */
  images: Float32Array;
  labels: number[];
}

/** Splits an image array [n, ...item] into batches, shuffled when an rng is given. */
export function batches(images: Float32Array, labels: readonly number[], batchSize: number, rng?: Rng): Batch[] {
  const n = labels.length;
  const item = images.length / n;
  const order = [...Array(n).keys()];
  rng?.shuffle(order);
  const out: Batch[] = [];
  for (let s = 0; s < n; s += batchSize) {
    const idx = order.slice(s, s + batchSize);
    const x = new Float32Array(idx.length * item);
    idx.forEach((j, k) => x.set(images.subarray(j * item, (j + 1) * item), k * item));
    out.push({ images: x, labels: idx.map((j) => labels[j]) });
  }
  return out;
}

export interface EpochResult {
  losses: number[];
  meanLoss: number;
}

/** One epoch of SGD on cross-entropy. `imageShape` is [C, H, W]. */
export async function trainEpoch(
  model: Module,
  opt: SGD,
  data: Batch[],
  imageShape: readonly number[],
  onStep?: (step: number) => void,
): Promise<EpochResult> {
  model.train();
  const log = keep(Tensor.zeros([Math.max(1, data.length)]));
  const gpu = getGpu();
  for (const [step, b] of data.entries()) {
    tidy(() => {
      const x = Tensor.from(b.images, [b.labels.length, ...imageShape]);
      const loss = softmaxCrossEntropy(model.forward(x), b.labels);
      loss.backward();
      opt.step();
      opt.zeroGrad();
      gpu.copy(loss.buffer, 0, log.buffer, step * 4, 4);
    });
    gpu.flush(); // one submit per step
    // Let the CPU run at most a few steps ahead of the GPU: bounded queue, honest progress rates.
    if ((step + 1) % SYNC_EVERY === 0) await gpu.sync();
    onStep?.(step + 1);
  }
  const losses = Array.from(await log.toArray()).slice(0, data.length);
  log.release();
  return { losses, meanLoss: losses.reduce((a, b) => a + b, 0) / Math.max(1, losses.length) };
}

/** Logits of every batch in eval mode, without a tape. */
export async function predictLogits(model: Module, data: Batch[], imageShape: readonly number[]): Promise<Float32Array[]> {
  model.eval();
  const out: Float32Array[] = [];
  for (const b of data) {
    out.push(await noGrad(() => tidy(() => model.forward(Tensor.from(b.images, [b.labels.length, ...imageShape])).toArray())));
  }
  return out;
}

/** Fraction of rows whose largest logit is the label. */
export function accuracy(logits: Float32Array[], data: Batch[]): number {
  let right = 0;
  let total = 0;
  data.forEach((b, i) => {
    const classes = logits[i].length / b.labels.length;
    b.labels.forEach((label, r) => {
      const row = logits[i].subarray(r * classes, (r + 1) * classes);
      let best = 0;
      for (let c = 1; c < classes; c++) if (row[c] > row[best]) best = c;
      if (best === label) right++;
      total++;
    });
  });
  return right / Math.max(1, total);
}
