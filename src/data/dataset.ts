// The contract between the data pipeline (src/data) and training (src/train): labelled image
// files, split, and a loader that yields decoded, augmented, normalised batches.

export interface Sample {
  path: string;
  /** class index into DataSplit.classes */
  label: number;
}

export interface SkippedFile {
  path: string;
  reason: string;
}

export interface DataSplit {
  classes: string[];
  train: Sample[];
  valid: Sample[];
  test: Sample[];
  /** files left out (not decodable, not regular files, second names of a file), listed once, at the start */
  skipped: SkippedFile[];
  /** groups of files with the same content in different splits (an image trained on and validated
   *  on): reported, not removed */
  duplicates: string[][];
}

export interface Batch {
  /** [B, 3, size, size], normalised */
  images: Float32Array;
  labels: number[];
  paths: string[];
  /** soft targets [B, classes], probabilities per class (mixup, cutmix); absent: the labels */
  targets?: Float32Array;
}

/**
 * Training batches per epoch of `samples` at `batchSize`: the full batches, and the last short one
 * unless it holds a single image, which is left out (training batchnorm on one image leaves it one
 * value per channel at a 1x1 map: PyTorch and the engine refuse it). A different image sits out
 * each epoch (the order is reshuffled), and at most one: fastai's drop_last would leave out up to
 * batchSize - 1, a large share of a tiny data set. 0 when nothing remains (one image, batches of
 * more). The loader, the trainer's steps, schedule and progress, resume and lr-find all count
 * with this.
 */
export function trainingBatchCount(samples: number, batchSize: number): number {
  const rest = samples % batchSize;
  return Math.floor(samples / batchSize) + (rest > 1 ? 1 : 0);
}
