// Inference over image files with a classifier: decode, batch, forward without a tape, logits out.
// predict and eval run through here; so do the interpretation tools built on them.
import { ImageError, loadImage, loadTtaViews, type Preprocessing } from '../data/image.ts';
import { getGpu, isGpuLimit } from '../gpu/index.ts';
import type { Module } from '../nn/module.ts';
import type { Classifier } from '../onnx/classifier.ts';
import { OnnxError } from '../onnx/read.ts';
import { noGrad, Tensor, tidy } from '../tensor/index.ts';
import { classificationMetrics, type Metrics } from './metrics.ts';

export interface FileLogits {
  file: string;
  /** one row of logits, [classes]; with TTA the log of the views' mean probabilities */
  logits: Float32Array;
  /** with TTA: the logits of the plain view alone (what the model gives without TTA) */
  plain?: Float32Array;
}

/**
 * The largest batch of at most `requested` inputs of `itemShape` the model can run on this adapter:
 * the forward is tried dry (shapes and launches checked, nothing allocated or run), the batch
 * halved while a GPU limit refuses it. A single input that does not fit is that limit's error.
 */
export function fittingBatchSize(model: Module, itemShape: readonly number[], requested: number): number {
  const gpu = getGpu();
  for (let n = requested; ; n = Math.ceil(n / 2)) {
    try {
      gpu.dryRun(() => noGrad(() => tidy(() => void model.forward(Tensor.empty([n, ...itemShape])))));
      return n;
    } catch (e) {
      if (n === 1 || !isGpuLimit(e)) throw e;
    }
  }
}

/** The log of the mean of the rows' softmax probabilities: test-time augmentation's average. */
function meanProbabilityLogits(rows: Float32Array[]): Float32Array {
  const mean = new Float64Array(rows[0].length);
  for (const r of rows) softmaxRow(r).forEach((p, i) => (mean[i] += p / rows.length));
  return Float32Array.from(mean, (p) => Math.log(Math.max(p, Number.MIN_VALUE)));
}

/**
 * Logits of every file, `batchSize` images per forward pass (decoding the next batch while the
 * GPU works on this one). With `tta`, each file's TTA_VIEWS (image.ts) are classified and their
 * probabilities averaged (fastai's tta without the training augmentation), the plain view's logits
 * kept beside. Files that cannot be decoded are returned in `failed`, not thrown.
 */
export async function classifyFiles(
  c: Pick<Classifier, 'classes' | 'source'> & { model: Module },
  files: string[],
  p: Preprocessing,
  batchSize: number,
  onProgress?: (done: number) => void,
  o: { tta?: boolean } = {},
): Promise<{ results: FileLogits[]; failed: ImageError[] }> {
  c.model.eval();
  const results: FileLogits[] = [];
  const failed: ImageError[] = [];
  const k = c.classes.length;
  const views = (f: string) => (o.tta ? loadTtaViews(f, p) : loadImage(f, p).then((x) => [x]));
  const decode = (start: number) => Promise.allSettled(files.slice(start, start + batchSize).map(views));
  const plane = 3 * p.size * p.size;
  /** logits [n, classes] of n inputs */
  const forward = (inputs: Float32Array[], names: string[]): Promise<Float32Array> => {
    const x = new Float32Array(inputs.length * plane);
    inputs.forEach((v, i) => x.set(v, i * plane));
    return noGrad(() =>
      tidy(() => {
        const y = c.model.forward(Tensor.from(x, [inputs.length, 3, p.size, p.size]));
        if (y.shape.length !== 2 || y.shape[0] !== inputs.length || y.shape[1] !== k) {
          throw new OnnxError(c.source, `outputs [${y.shape.join(',')}] for ${inputs.length} images, expected [${inputs.length},${k}] (one logit per class)`);
        }
        return y.toArray();
      }),
    ).then((logits) => {
      const bad = logits.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) {
        throw new OnnxError(c.source, `the model outputs ${logits[bad]} for ${names[Math.floor(bad / k)]}: its weights are broken (a diverged run?) or the preprocessing overflows; train again or re-export the checkpoint`);
      }
      return logits;
    });
  };
  let next = files.length ? decode(0) : null;
  for (let start = 0; start < files.length; start += batchSize) {
    const decoded = await next!;
    next = start + batchSize < files.length ? decode(start + batchSize) : null;
    const ok: { file: string; views: Float32Array[] }[] = [];
    decoded.forEach((r, i) => {
      if (r.status === 'fulfilled') ok.push({ file: files[start + i], views: r.value });
      else if (r.reason instanceof ImageError) failed.push(r.reason);
      else throw r.reason;
    });
    // every view of the batch's files, batchSize to a forward pass
    const inputs = ok.flatMap((f) => f.views);
    const names = ok.flatMap((f) => f.views.map(() => f.file));
    const rows: Float32Array[] = [];
    for (let i = 0; i < inputs.length; i += batchSize) {
      const logits = await forward(inputs.slice(i, i + batchSize), names.slice(i, i + batchSize));
      for (let r = 0; r < logits.length / k; r++) rows.push(logits.slice(r * k, (r + 1) * k));
    }
    let row = 0;
    for (const f of ok) {
      const own = rows.slice(row, (row += f.views.length));
      results.push(o.tta ? { file: f.file, logits: meanProbabilityLogits(own), plain: own[0] } : { file: f.file, logits: own[0] });
    }
    onProgress?.(Math.min(files.length, start + batchSize));
  }
  return { results, failed };
}

export interface LabelledFile {
  file: string;
  /** class index of the classifier */
  label: number;
}

export interface Evaluation {
  metrics: Metrics;
  /** with TTA: the metrics of the plain view alone, for the gain */
  plainMetrics?: Metrics;
  /** the files read, in order, with their logits and labels */
  results: (FileLogits & { label: number })[];
  failed: ImageError[];
}

/** Scores a classifier on labelled files: accuracy, per-class precision/recall/F1, confusion, top-k. */
export async function evaluateFiles(
  c: Classifier,
  samples: LabelledFile[],
  p: Preprocessing,
  batchSize: number,
  o: { classNames?: string[]; topK?: number[]; onProgress?: (done: number) => void; tta?: boolean } = {},
): Promise<Evaluation> {
  const labelOf = new Map(samples.map((s) => [s.file, s.label]));
  const { results, failed } = await classifyFiles(c, samples.map((s) => s.file), p, batchSize, o.onProgress, { tta: o.tta });
  const k = c.classes.length;
  const labelled = results.map((r) => ({ ...r, label: labelOf.get(r.file)! }));
  const metricsOf = (rows: Float32Array[]) => {
    const logits = new Float32Array(rows.length * k);
    rows.forEach((r, i) => logits.set(r, i * k));
    return classificationMetrics(logits, labelled.map((r) => r.label), k, { classNames: o.classNames ?? c.classes, topK: o.topK ?? [5] });
  };
  const metrics = metricsOf(results.map((r) => r.logits));
  return { metrics, plainMetrics: o.tta ? metricsOf(results.map((r) => r.plain!)) : undefined, results: labelled, failed };
}

/** softmax of one row of logits, in float64 */
export function softmaxRow(logits: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const e = Float64Array.from(logits, (v) => Math.exp(v - max));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

/** Indices of the k largest values, largest first (ties to the lower index). */
export function topIndices(values: ArrayLike<number>, k: number): number[] {
  const idx = Array.from({ length: values.length }, (_, i) => i);
  idx.sort((a, b) => values[b] - values[a] || a - b);
  return idx.slice(0, Math.min(k, values.length));
}
