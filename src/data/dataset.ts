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
