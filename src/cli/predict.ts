// `gpunet predict`: classifies image files with a checkpoint and prints the top-k classes of each,
// as the seeds' predict.py does. Also home of what predict and eval share: the checkpoint and
// preprocessing options, class-name files.
import { readFileSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { getGpu, initGpu } from '../gpu/index.ts';
import { ImageError, listImages, loadImage, thumbnailPng, TTA_VIEWS, type Preprocessing } from '../data/image.ts';
import { writeFileAtomic } from '../io/files.ts';
import type { Classifier } from '../onnx/classifier.ts';
import { type FileError, readRegularFile } from '../io/files.ts';
import { printable } from '../io/printable.ts';
import { loadClassifier } from '../onnx/load.ts';
import { classifyFiles, fittingBatchSize, softmaxRow, topIndices } from '../train/inference.ts';
import { gradCams } from '../train/interpret.ts';
import { argmaxRows, formatTable } from '../train/metrics.ts';
import { camPng } from '../report/images.ts';
import { savePng, topKChart } from '../report/plot.ts';
import { ProgressBar } from '../report/progress.ts';
import { defineCommand } from './command.ts';
import { UsageError } from './errors.ts';
import { flag, grouped, int, str, strings } from './options.ts';
import { PROFILE, reportProfile } from './profile.ts';
import { DEVICE, PREPROCESSING, type PreprocessingValues } from './shared-options.ts';

// ---- shared with eval ---------------------------------------------------------------------------

/** The checkpoint, its preprocessing overrides and the inference settings. */
export const INFERENCE_OPTIONS = {
  checkpoint: str({ metavar: 'FILE', required: true, help: "an ONNX checkpoint (gpunet's own, or a foreign classifier with the preprocessing options)" }),
  categoryNames: str({ metavar: 'FILE', help: 'display names: JSON {"class": "name"} or ["name", ...], or text, one per line' }),
  batchSize: int({ min: 1, max: 1024, default: 8, help: 'images per forward pass' }),
  ...grouped('preprocessing (a foreign ONNX file needs all four, or the three besides --size when its graph input declares one)', PREPROCESSING),
  ...grouped('device', DEVICE),
};

/** The preprocessing flags on top of the checkpoint's (null for a foreign file): all four are
 *  needed where the checkpoint does not say, but for the size when its graph input declares one. */
export function resolvePreprocessing(v: PreprocessingValues, base: Preprocessing | null, source: string, declaredSize?: number): Preprocessing {
  const flags = { mean: v.means ?? base?.mean, std: v.stds ?? base?.std, size: v.size ?? base?.size ?? declaredSize, resize: v.resize ?? base?.resize };
  const example = { means: '0,0,0', stds: '1,1,1', size: '224', resize: 'fill' };
  const missing = Object.entries({ means: flags.mean, stds: flags.std, size: flags.size, resize: flags.resize })
    .filter(([, x]) => x === undefined)
    .map(([k]) => k as keyof typeof example);
  if (missing.length) {
    const pass = (f: (k: keyof typeof example) => string) => missing.map(f).join(' ');
    throw new UsageError(`${source} does not record its preprocessing: pass ${pass((k) => `--${k}`)} (e.g. ${pass((k) => `--${k} ${example[k]}`)}), or record them with gpunet import`);
  }
  return flags as Preprocessing;
}

/** The contents of a names file: a list (a text file, one name per line, or a JSON list) or a
 *  JSON object, its values as the file holds them. `flag` names the option in errors. */
export function readNamesFile(flag: string, file: string): unknown[] | Record<string, unknown> {
  let text: string;
  try {
    text = readRegularFile(file).toString('utf8');
  } catch (e) {
    throw new UsageError(`${flag} ${file}: ${(e as FileError).reason}`);
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
  if (Array.isArray(data)) return data;
  if (data && typeof data === 'object') return data as Record<string, unknown>;
  throw new UsageError(`${flag} ${file}: expected a JSON object or list`);
}

/** One entry of a names file as a class name: a string or a number, or Keras'
 *  imagenet_class_index.json pair ["n01440764", "tench"] (the name is its last item). Anything
 *  else (an object, null, a nested list) is refused, naming the entry. */
export function className(flag: string, file: string, key: string | number, value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (Array.isArray(value) && value.length > 0 && value.every((x) => typeof x === 'string')) return value[value.length - 1];
  const what = value === null ? 'null' : Array.isArray(value) ? `the list ${JSON.stringify(value).slice(0, 40)}` : typeof value === 'object' ? `an object ${JSON.stringify(value).slice(0, 40)}` : `${typeof value} ${String(value)}`;
  throw new UsageError(
    `${flag} ${file}: entry ${typeof key === 'number' ? key : `'${key}'`} is ${what}, not a class name (expected strings, or Keras' ["n01440764", "tench"] pairs)`,
  );
}

/** Display names for `classes` from a category-names file: a JSON object keyed by class name
 *  (the seeds' cat_to_name.json keys its folder names) or else by class index, or a list in class
 *  index order. */
export function readCategoryNames(file: string, classes: string[]): string[] {
  const data = readNamesFile('--category-names', file);
  if (!Array.isArray(data)) {
    const byIndex = !classes.every((c) => c in data) && classes.every((_, i) => String(i) in data);
    return classes.map((c, i) => {
      const key = byIndex ? String(i) : c;
      return key in data ? className('--category-names', file, key, data[key]) : c;
    });
  }
  if (data.length !== classes.length) {
    throw new UsageError(`--category-names ${file}: ${data.length} names for a checkpoint of ${classes.length} classes`);
  }
  return data.map((x, i) => className('--category-names', file, i, x));
}

/** Loads the checkpoint named by --checkpoint after opening the GPU, planned for --size. */
export async function openCheckpoint(v: { checkpoint: string; device?: string; size?: number }): Promise<Classifier> {
  await initGpu(v.device);
  return loadClassifier(v.checkpoint, { size: v.size });
}

/** The line reporting a file left out (its name escaped: it is the user's string). */
export function skipLine(command: string, path: string, reason: string): string {
  return `gpunet ${command}: skipped ${printable(path)}: ${printable(reason)}`;
}

/** Reports undecodable files once each on stderr. */
export function reportSkipped(command: string, failed: ImageError[]): void {
  for (const e of failed) console.error(skipLine(command, e.file, e.reason));
}

/** --batch-size, or (with a note) the largest batch the adapter can run at this image size. */
export function fittedBatchSize(command: string, c: Classifier, p: Preprocessing, requested: number): number {
  const n = fittingBatchSize(c.model, [3, p.size, p.size], requested);
  if (n < requested) console.error(`gpunet ${command}: note: batches of ${requested} images of ${p.size} px exceed this adapter's limits: running ${n} at a time`);
  return n;
}

/** `FILE.png` options are checked before any work. */
export function pngPath(flagName: string, path: string | undefined): void {
  if (path !== undefined && extname(path).toLowerCase() !== '.png') throw new UsageError(`${flagName} must name a .png file, got '${path}'`);
}

// ---- the command --------------------------------------------------------------------------------

/** `topk.png` for image i of n: topk.png for a single image, else topk-01.png, topk-02.png, ... */
function numberedPath(path: string, i: number, n: number): string {
  if (n === 1) return path;
  const ext = extname(path);
  return `${path.slice(0, path.length - ext.length)}-${String(i + 1).padStart(String(n).length, '0')}${ext}`;
}

/** A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180). */
export function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The paths of --input - : one per line of standard input. */
function stdinPaths(): string[] {
  return readFileSync(0, 'utf8').split(/\r?\n/).filter((l) => l.trim() !== '');
}

/** Says where a PNG was written: on stdout after the table, on stderr when stdout holds JSON lines. */
function wrote(json: boolean, what: string): void {
  (json ? console.error : console.log)(`wrote ${what}`);
}

export const predictCommand = defineCommand({
  name: 'predict',
  summary: 'classify images with a checkpoint: top-k classes as a table, JSON lines, CSV or bar charts; Grad-CAM',
  synopsis: '--input PATH|DIR|GLOB|-... --checkpoint model.onnx [options]',
  description: `Classifies images and prints the top-k classes of each with their probabilities. Files that cannot
be decoded are reported and skipped; the exit status is non-zero only if no image could be classified.`,
  positionals: { name: 'PATH...' },
  options: {
    input: strings({
      metavar: 'PATH|DIR|GLOB|-',
      required: true,
      help: "an image, a folder (searched recursively) or a glob such as 'photos/**/*.jpg'; - reads paths from standard input, one per line; repeat it or list several after it",
    }),
    topK: int({ min: 1, max: 1000, default: 5, help: 'how many classes to show per image' }),
    json: flag({ help: 'one JSON object per image and line instead of the table' }),
    csv: str({ metavar: 'FILE.csv', help: 'also a CSV file: one row per image, its file and the top-k classes with their probabilities' }),
    plot: str({ metavar: 'FILE.png', help: 'a bar chart of the top-k probabilities beside the image (several images: FILE-1.png, FILE-2.png, ...)' }),
    tta: flag({ help: "test-time augmentation: the probabilities averaged over the image, its mirror and 4 corner crops (fastai's tta); says how many top classes it changed" }),
    cam: str({ metavar: 'FILE.png', help: "Grad-CAM: a heatmap of where the evidence for the predicted class lies, over the image (numbered as --plot's)" }),
    ...INFERENCE_OPTIONS,
    ...PROFILE,
  },
  async run(v, { positionals }) {
    // `--input a.jpg b.jpg` (a shell-expanded glob) leaves b.jpg as a positional
    const given = [...v.input, ...positionals];
    const inputs = given.flatMap((x) => (x === '-' ? stdinPaths() : [x]));
    if (inputs.length === 0) throw new UsageError('--input -: no paths on standard input');
    pngPath('--plot', v.plot);
    pngPath('--cam', v.cam);
    if (v.csv !== undefined && extname(v.csv).toLowerCase() !== '.csv') throw new UsageError(`--csv must name a .csv file, got '${v.csv}'`);
    const files = listImages(inputs);
    const c = await openCheckpoint(v);
    const p = resolvePreprocessing(v, c.preprocessing, c.source, c.declaredSize);
    const names = v.categoryNames ? readCategoryNames(v.categoryNames, c.classes) : c.classes;

    const batchSize = fittedBatchSize('predict', c, p, Math.max(1, Math.min(v.batchSize, files.length)));
    const bar = files.length > batchSize ? new ProgressBar('predict', files.length, 'images') : null;
    const profiling = v.profile !== undefined;
    if (profiling) getGpu().startProfiling();
    const { results, failed } = await classifyFiles(c, files, p, batchSize, (d) => bar?.update(d), { tta: v.tta });
    const timed = profiling ? await getGpu().stopProfiling() : null;
    reportSkipped('predict', failed);

    const tops = results.map((r) => {
      const probs = softmaxRow(r.logits);
      return { file: r.file, top: topIndices(probs, v.topK).map((i) => ({ index: i, name: names[i], prob: probs[i] })) };
    });
    if (v.json) {
      for (const t of tops) {
        console.log(JSON.stringify({ file: t.file, predictions: t.top.map((x) => ({ class: x.name, index: x.index, probability: x.prob })) }));
      }
    } else if (tops.length) {
      const rows = tops.flatMap((t) => t.top.map((x, r) => [r === 0 ? printable(t.file) : '', String(r + 1), printable(x.name), `${(100 * x.prob).toFixed(2)}%`]));
      console.log(formatTable(['file', 'rank', 'class', 'probability'], rows, 'lrlr'));
    }
    if (v.tta && results.length) {
      const changed = results.filter((r) => argmaxRows(r.logits, c.classes.length)[0] !== argmaxRows(r.plain!, c.classes.length)[0]).length;
      (v.json ? console.error : console.log)(`TTA (${TTA_VIEWS.length} views: ${TTA_VIEWS.join(', ')}) changed the top class of ${changed} of ${results.length} image${results.length === 1 ? '' : 's'}`);
    }
    if (v.csv) {
      const header = ['file', ...Array.from({ length: Math.min(v.topK, c.classes.length) }, (_, i) => [`class_${i + 1}`, `probability_${i + 1}`]).flat()];
      const lines = [header, ...tops.map((t) => [t.file, ...t.top.flatMap((x) => [x.name, String(x.prob)])])].map((row) => row.map(csvField).join(','));
      writeFileAtomic(v.csv, `${lines.join('\n')}\n`);
      wrote(v.json, `${printable(v.csv)}: ${tops.length} row${tops.length === 1 ? "" : "s"}`);
    }
    if (v.plot) {
      for (const [i, t] of tops.entries()) {
        const path = numberedPath(v.plot, i, tops.length);
        await savePng(topKChart(t.top.map((x) => ({ label: x.name, prob: x.prob })), basename(t.file), await thumbnailPng(t.file, 180)), path);
        wrote(v.json, `${printable(path)}: the top ${t.top.length} classes of ${printable(t.file)}`);
      }
    }
    if (v.cam) {
      const shown = { ...p, mean: [0, 0, 0] as [number, number, number], std: [1, 1, 1] as [number, number, number] };
      for (const [i, t] of tops.entries()) {
        const [cam] = await gradCams(c, [await loadImage(t.file, p)], p.size, [t.top[0].index]);
        const path = numberedPath(v.cam, i, tops.length);
        const title = `${basename(t.file)}: ${t.top[0].name} ${(100 * t.top[0].prob).toFixed(1)}%`;
        writeFileAtomic(path, await camPng(await loadImage(t.file, shown), p.size, cam.map, cam.h, cam.w, title));
        wrote(v.json, `${printable(path)}: Grad-CAM of ${printable(t.top[0].name)} for ${printable(t.file)} (the ${cam.h}x${cam.w} maps of '${printable(cam.layer)}')`);
      }
    }
    if (timed) await reportProfile(v.profile!, timed, Math.ceil(files.length / v.batchSize), v.json);
    if (results.length === 0) {
      console.error(`gpunet predict: no image could be classified (${failed.length} of ${files.length} files unreadable)`);
      return 1;
    }
    return 0;
  },
});
