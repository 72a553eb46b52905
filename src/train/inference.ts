// Inference over image files with a classifier: decode, batch, forward without a tape, logits out.
// predict and eval run through here; so do the interpretation tools built on them.
import { ImageError, loadImage } from '../data/image.ts';
import { getGpu, isGpuLimit } from '../gpu/index.ts';
import type { Module } from '../nn/module.ts';
import type { Classifier, Preprocessing } from '../onnx/classifier.ts';
import { OnnxError } from '../onnx/read.ts';
import { noGrad, Tensor, tidy } from '../tensor/index.ts';
import { classificationMetrics, type Metrics } from './metrics.ts';

export interface FileLogits {
  file: string;
  /** one row of logits, [classes] */
  logits: Float32Array;
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

/**
 * Logits of every file, `batchSize` images per forward pass (decoding the next batch while the
 * GPU works on this one). Files that cannot be decoded are returned in `failed`, not thrown.
 */
export async function classifyFiles(
  c: Pick<Classifier, 'classes' | 'source'> & { model: Module },
  files: string[],
  p: Preprocessing,
  batchSize: number,
  onProgress?: (done: number) => void,
): Promise<{ results: FileLogits[]; failed: ImageError[] }> {
  c.model.eval();
  const results: FileLogits[] = [];
  const failed: ImageError[] = [];
  const decode = (start: number) =>
    Promise.allSettled(files.slice(start, start + batchSize).map((f) => loadImage(f, p)));
  const plane = 3 * p.size * p.size;
  let next = files.length ? decode(0) : null;
  for (let start = 0; start < files.length; start += batchSize) {
    const decoded = await next!;
    next = start + batchSize < files.length ? decode(start + batchSize) : null;
    const ok: { file: string; x: Float32Array }[] = [];
    decoded.forEach((r, i) => {
      if (r.status === 'fulfilled') ok.push({ file: files[start + i], x: r.value });
      else if (r.reason instanceof ImageError) failed.push(r.reason);
      else throw r.reason;
    });
    if (ok.length) {
      const x = new Float32Array(ok.length * plane);
      ok.forEach((o, i) => x.set(o.x, i * plane));
      const logits = await noGrad(() =>
        tidy(() => {
          const y = c.model.forward(Tensor.from(x, [ok.length, 3, p.size, p.size]));
          if (y.shape.length !== 2 || y.shape[0] !== ok.length || y.shape[1] !== c.classes.length) {
            throw new OnnxError(c.source, `outputs [${y.shape.join(',')}] for ${ok.length} images, expected [${ok.length},${c.classes.length}] (one logit per class)`);
          }
          return y.toArray();
        }),
      );
      const k = c.classes.length;
      const bad = logits.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) {
        throw new OnnxError(c.source, `the model outputs ${logits[bad]} for ${ok[Math.floor(bad / k)].file}: its weights are broken (a diverged run?) or the preprocessing overflows; train again or re-export the checkpoint`);
      }
      ok.forEach((o, i) => results.push({ file: o.file, logits: logits.slice(i * k, (i + 1) * k) }));
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
  o: { classNames?: string[]; topK?: number[]; onProgress?: (done: number) => void } = {},
): Promise<Evaluation> {
  const labelOf = new Map(samples.map((s) => [s.file, s.label]));
  const { results, failed } = await classifyFiles(c, samples.map((s) => s.file), p, batchSize, o.onProgress);
  const k = c.classes.length;
  const logits = new Float32Array(results.length * k);
  results.forEach((r, i) => logits.set(r.logits, i * k));
  const labelled = results.map((r) => ({ ...r, label: labelOf.get(r.file)! }));
  const metrics = classificationMetrics(logits, labelled.map((r) => r.label), k, { classNames: o.classNames ?? c.classes, topK: o.topK ?? [5] });
  return { metrics, results: labelled, failed };
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
