// `gpunet predict`: classifies image files with a checkpoint and prints the top-k classes of each,
// as the seeds' predict.py does. Also home of what predict and eval share: the preprocessing flags,
// class-name files and batched inference over files.
import { readFileSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { parseArgs } from 'node:util';
import { initGpu } from '../gpu/index.ts';
import { ImageError, listImages, loadImage } from '../data/image.ts';
import type { Classifier, Preprocessing } from '../onnx/classifier.ts';
import { loadClassifier } from '../onnx/load.ts';
import { noGrad, Tensor, tidy } from '../tensor/index.ts';
import { formatTable } from '../train/metrics.ts';
import type { Command } from './main.ts';
import { positiveInt } from './args.ts';
import { UsageError } from './errors.ts';
import { savePng, topKChart } from '../report/plot.ts';
import { ProgressBar } from '../report/progress.ts';

// ---- shared with eval ---------------------------------------------------------------------------

/** parseArgs options for the preprocessing overrides and the inference settings. */
export const INFERENCE_OPTIONS = {
  checkpoint: { type: 'string' },
  means: { type: 'string' },
  stds: { type: 'string' },
  size: { type: 'string' },
  resize: { type: 'string' },
  'batch-size': { type: 'string', default: '8' },
  'category-names': { type: 'string' },
  device: { type: 'string' },
} as const;

export const INFERENCE_USAGE = `  --checkpoint FILE       an ONNX checkpoint (gpunet's own, or a foreign classifier with the flags below)
  --means a,b,c           per-channel mean of the normalisation (after scaling pixels to [0,1])
  --stds a,b,c            per-channel std of the normalisation
  --size N                input side in pixels
  --resize crop|fill      crop: shorter side to N/0.875 then center crop; fill: resize to N x N
                          (these four default to the checkpoint's metadata; a foreign ONNX file needs them)
  --category-names FILE   display names: JSON {"class": "name"} or ["name", ...], or text, one per line
  --batch-size 8          images per forward pass
  --device I|NAME         the WebGPU adapter (see gpunet devices)`;

type InferenceValues = { [K in keyof typeof INFERENCE_OPTIONS]?: string };

function triple(flag: string, v: string, positive: boolean): [number, number, number] {
  const xs = v.split(',').map((s) => Number(s.trim()));
  if (xs.length !== 3 || xs.some((x) => !Number.isFinite(x) || (positive && x <= 0))) {
    throw new UsageError(`--${flag} needs 3 comma-separated ${positive ? 'positive ' : ''}numbers (R,G,B), got '${v}'`);
  }
  return xs as [number, number, number];
}

/** The preprocessing flags on top of the checkpoint's (null for a foreign file): all four are
 *  needed where the checkpoint does not say. */
export function resolvePreprocessing(values: InferenceValues, base: Preprocessing | null, source: string): Preprocessing {
  if (values.resize !== undefined && values.resize !== 'crop' && values.resize !== 'fill') {
    throw new UsageError(`--resize must be crop or fill, got '${values.resize}'`);
  }
  const flags = {
    mean: values.means !== undefined ? triple('means', values.means, false) : base?.mean,
    std: values.stds !== undefined ? triple('stds', values.stds, true) : base?.std,
    size: values.size !== undefined ? positiveInt('size', values.size) : base?.size,
    resize: (values.resize as Preprocessing['resize'] | undefined) ?? base?.resize,
  };
  const missing = Object.entries({ means: flags.mean, stds: flags.std, size: flags.size, resize: flags.resize })
    .filter(([, v]) => v === undefined)
    .map(([k]) => `--${k}`);
  if (missing.length) {
    throw new UsageError(`${source} does not record its preprocessing: pass ${missing.join(' ')} (e.g. --means 0,0,0 --stds 1,1,1 --size 224 --resize fill), or record them with gpunet import`);
  }
  return flags as Preprocessing;
}

/** The contents of a names file: a list (a text file, one name per line, or a JSON list) or a
 *  JSON object. `flag` names the option in errors. */
export function readNamesFile(flag: string, file: string): string[] | Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`${flag} ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  if (extname(file).toLowerCase() !== '.json') {
    const lines = text.split(/\r?\n/).map((l) => l.trim());
    while (lines.length && lines[lines.length - 1] === '') lines.pop();
    return lines;
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${flag} ${file}: not valid JSON (${(e as Error).message})`);
  }
  if (Array.isArray(data)) return data.map(String);
  if (data && typeof data === 'object') return data as Record<string, unknown>;
  throw new UsageError(`${flag} ${file}: expected a JSON object or list`);
}

/** Display names for `classes` from a category-names file: a JSON object keyed by class name
 *  (the seeds' cat_to_name.json keys its folder names) or else by class index, or a list in class
 *  index order. */
export function readCategoryNames(file: string, classes: string[]): string[] {
  const data = readNamesFile('--category-names', file);
  if (!Array.isArray(data)) {
    const byIndex = !classes.every((c) => c in data) && classes.every((_, i) => String(i) in data);
    return classes.map((c, i) => String(byIndex ? data[String(i)] : (data[c] ?? c)));
  }
  if (data.length !== classes.length) {
    throw new UsageError(`--category-names ${file}: ${data.length} names for a checkpoint of ${classes.length} classes`);
  }
  return data;
}

export interface FileLogits {
  file: string;
  /** one row of logits, [classes] */
  logits: Float32Array;
}

/**
 * Logits of every file, `batchSize` images per forward pass (decoding the next batch while the
 * GPU works on this one). Files that cannot be decoded are returned in `failed`, not thrown.
 */
export async function classifyFiles(
  c: Classifier,
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
            throw new UsageError(`${c.source}: outputs [${y.shape.join(',')}] for ${ok.length} images, expected [${ok.length},${c.classes.length}] (one logit per class)`);
          }
          return y.toArray();
        }),
      );
      const k = c.classes.length;
      const bad = logits.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) {
        throw new UsageError(`${c.source}: the model outputs ${logits[bad]} for ${ok[Math.floor(bad / k)].file}: its weights are broken (a diverged run?) or the preprocessing overflows; train again or re-export the checkpoint`);
      }
      ok.forEach((o, i) => results.push({ file: o.file, logits: logits.slice(i * k, (i + 1) * k) }));
    }
    onProgress?.(Math.min(files.length, start + batchSize));
  }
  return { results, failed };
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

/** Loads the checkpoint named by --checkpoint after opening the GPU. */
export async function openCheckpoint(values: InferenceValues): Promise<Classifier> {
  if (!values.checkpoint) throw new UsageError('--checkpoint FILE is required');
  await initGpu(values.device);
  return loadClassifier(values.checkpoint);
}

/** Reports undecodable files once each on stderr. */
export function reportSkipped(command: string, failed: ImageError[]): void {
  for (const e of failed) console.error(`gpunet ${command}: skipped ${e.message}`);
}

// ---- the command --------------------------------------------------------------------------------

const usage = `usage: gpunet predict --input PATH|DIR|GLOB... --checkpoint model.onnx [--top-k 5] [--category-names names.json|names.txt]
                     [--means a,b,c] [--stds a,b,c] [--size 224] [--resize crop|fill] [--batch-size 8] [--device I|NAME]
                     [--json] [--plot topk.png]

Classifies images and prints the top-k classes of each with their probabilities.

  --input PATH|DIR|GLOB   an image, a folder (searched recursively) or a glob such as 'photos/**/*.jpg';
                          repeat it or list several after it
  --top-k 5               how many classes to show per image
  --json                  one JSON object per image and line instead of the table
  --plot FILE.png         a bar chart of the top-k probabilities (several images: FILE-1.png, FILE-2.png, ...)
${INFERENCE_USAGE}

Files that cannot be decoded are reported and skipped; the exit status is non-zero only if no image could be classified.`;

/** `topk.png` for image i of n: topk.png for a single image, else topk-01.png, topk-02.png, ... */
function numberedPath(path: string, i: number, n: number): string {
  if (n === 1) return path;
  const ext = extname(path);
  return `${path.slice(0, path.length - ext.length)}-${String(i + 1).padStart(String(n).length, '0')}${ext}`;
}

export const predictCommand: Command = {
  name: 'predict',
  summary: 'classify images with a checkpoint: top-k classes as a table, JSON lines or a bar chart',
  usage,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        ...INFERENCE_OPTIONS,
        input: { type: 'string', multiple: true },
        'top-k': { type: 'string', default: '5' },
        json: { type: 'boolean', default: false },
        plot: { type: 'string' },
      },
    });
    // `--input a.jpg b.jpg` (a shell-expanded glob) leaves b.jpg as a positional
    const inputs = [...(values.input ?? []), ...positionals];
    if (!values.input?.length) throw new UsageError('--input PATH|DIR|GLOB is required');
    const topK = positiveInt('top-k', values['top-k']);
    const batchSize = positiveInt('batch-size', values['batch-size']);
    if (values.plot !== undefined && extname(values.plot).toLowerCase() !== '.png') throw new UsageError(`--plot must name a .png file, got '${values.plot}'`);
    const files = listImages(inputs);
    const c = await openCheckpoint(values);
    const p = resolvePreprocessing(values, c.preprocessing, c.source);
    const names = values['category-names'] ? readCategoryNames(values['category-names'], c.classes) : c.classes;

    const bar = files.length > batchSize ? new ProgressBar('predict', files.length, 'images') : null;
    const { results, failed } = await classifyFiles(c, files, p, batchSize, (d) => bar?.update(d));
    reportSkipped('predict', failed);

    const tops = results.map((r) => {
      const probs = softmaxRow(r.logits);
      return { file: r.file, top: topIndices(probs, topK).map((i) => ({ index: i, name: names[i], prob: probs[i] })) };
    });
    if (values.json) {
      for (const t of tops) {
        console.log(JSON.stringify({ file: t.file, predictions: t.top.map((x) => ({ class: x.name, index: x.index, probability: x.prob })) }));
      }
    } else if (tops.length) {
      const rows = tops.flatMap((t) => t.top.map((x, r) => [r === 0 ? t.file : '', String(r + 1), x.name, `${(100 * x.prob).toFixed(2)}%`]));
      console.log(formatTable(['file', 'rank', 'class', 'probability'], rows, 'lrlr'));
    }
    if (values.plot) {
      for (const [i, t] of tops.entries()) {
        await savePng(topKChart(t.top.map((x) => ({ label: x.name, prob: x.prob })), basename(t.file)), numberedPath(values.plot, i, tops.length));
      }
    }
    if (results.length === 0) {
      console.error(`gpunet predict: no image could be classified (${failed.length} of ${files.length} files unreadable)`);
      return 1;
    }
    return 0;
  },
};
