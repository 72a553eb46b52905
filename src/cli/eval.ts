// `gpunet eval`: scores a checkpoint on labelled images (class folders, a train/valid/test folder's
// split, the exact split a training run used, or a labels.tsv listing file and class index) and
// reports accuracy, top-5, per-class precision/recall/F1, macro-F1, the confusion matrix (table and
// heatmap) and the most-confused pairs.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { ImageError, listImages, loadImage, TTA_VIEWS, type Preprocessing } from '../data/image.ts';
import { ensureDir, type FileError, readRegularFile, writeFileAtomic } from '../io/files.ts';
import { printable } from '../io/printable.ts';
import { readSplitFile, SPLIT_FILE } from '../data/split-file.ts';
import type { Classifier } from '../onnx/classifier.ts';
import { evaluateFiles, type Evaluation, type LabelledFile } from '../train/inference.ts';
import { gradCams, topLosses } from '../train/interpret.ts';
import { heatmapOverlay, imageGridPng, resizeChw } from '../report/images.ts';
import { argmaxRows, formatConfusion, formatMostConfused, formatReport } from '../train/metrics.ts';
import { confusionHeatmap, savePng } from '../report/plot.ts';
import { ProgressBar } from '../report/progress.ts';
import { defineCommand } from './command.ts';
import { UsageError } from './errors.ts';
import { choice, flag, int, str } from './options.ts';
import { fittedBatchSize, INFERENCE_OPTIONS, openCheckpoint, pngPath, readCategoryNames, reportSkipped, resolvePreprocessing } from './predict.ts';

/** The confusion table is printed up to this many classes (the heatmap and JSON hold any size). */
const MAX_TABLE_CLASSES = 30;

type Sample = LabelledFile;

function abbreviatedList(names: string[], max = 12): string {
  return names.length <= max ? names.join(', ') : `${names.slice(0, max).join(', ')}, ... (${names.length} classes)`;
}

/** Class folders of `dir`, each matched to a class by its checkpoint name (or its display name). */
function samplesFromFolders(dir: string, classes: string[], names: string[]): Sample[] {
  let entries: string[];
  try {
    entries = readdirSync(dir).sort();
  } catch {
    throw new UsageError(`--data ${dir}: no such folder`);
  }
  const folders = entries.filter((e) => !e.startsWith('.') && statSync(join(dir, e)).isDirectory());
  if (folders.length === 0) throw new UsageError(`--data ${dir}: no class folders in it (or pass --labels FILE.tsv)`);
  const samples: Sample[] = [];
  for (const folder of folders) {
    let label = classes.indexOf(folder);
    if (label < 0) label = names.indexOf(folder);
    if (label < 0) throw new UsageError(`--data ${dir}: folder '${folder}' is not one of the checkpoint's classes: ${abbreviatedList(names)}`);
    let files: string[];
    try {
      files = listImages([join(dir, folder)]);
    } catch (e) {
      if (e instanceof ImageError) continue; // an empty class folder holds no samples
      throw e;
    }
    for (const file of files) samples.push({ file, label });
  }
  return samples;
}

/** labels.tsv: 'file<TAB>class index' per line, more columns ignored, a header line allowed. */
function samplesFromTsv(tsv: string, dataDir: string | undefined, classes: number): Sample[] {
  let text: string;
  try {
    text = readRegularFile(tsv).toString('utf8');
  } catch (e) {
    throw new UsageError(`--labels ${tsv}: ${(e as FileError).reason}`);
  }
  const base = dataDir ?? dirname(tsv);
  const samples: Sample[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (!line.trim()) return;
    const [file, index] = line.split('\t');
    const label = Number(index);
    if (index === undefined || index.trim() === '' || !Number.isInteger(label)) {
      if (i === 0) return; // a header
      throw new UsageError(`--labels ${tsv}:${i + 1}: expected 'file<TAB>class index', got '${line}'`);
    }
    if (label < 0 || label >= classes) throw new UsageError(`--labels ${tsv}:${i + 1}: class index ${label} is outside the checkpoint's ${classes} classes`);
    const path = join(base, file);
    const within = relative(resolve(base), resolve(path));
    if (within === '' || within === '..' || within.startsWith('../')) {
      throw new UsageError(`--labels ${tsv}:${i + 1}: '${file}' lies outside ${base}: eval reads only the images under its data folder (name them relative to it)`);
    }
    samples.push({ file: path, label });
  });
  if (samples.length === 0) throw new UsageError(`--labels ${tsv}: no labelled files in it`);
  return samples;
}

const VALID_NAMES = ['valid', 'val'];

/** A folder of train/ and valid/ (or val/) or test/ folders, rather than of class folders. */
function splitFolder(dir: string, classes: string[], names: string[], split: 'valid' | 'test' | undefined): { folder: string; split: string } | null {
  const has = (n: string) => {
    try {
      return statSync(join(dir, n)).isDirectory();
    } catch {
      return false;
    }
  };
  const valid = VALID_NAMES.find(has);
  const isSplit = split !== undefined || (has('train') && !classes.includes('train') && !names.includes('train') && (valid !== undefined || has('test')));
  if (!isSplit) return null;
  const which = split ?? (has('test') ? 'test' : 'valid');
  const folder = which === 'test' ? 'test' : valid;
  if (folder === undefined || !has(folder)) throw new UsageError(`--data ${dir}: no ${which === 'test' ? 'test/' : 'valid/ (or val/)'} folder to evaluate (--split ${which})`);
  return { folder: join(dir, folder), split: which };
}

/** The samples of a run's recorded split, as classes of the checkpoint. */
function samplesFromRun(run: string, split: 'valid' | 'test', classes: string[]): Sample[] {
  const recorded = readSplitFile(join(run, SPLIT_FILE));
  const samples = recorded[split];
  if (samples.length === 0) throw new UsageError(`--run ${run}: the run's ${split} split is empty${split === 'test' ? ' (its data had no test/ folder)' : ''}`);
  const index = recorded.classes.map((name) => classes.indexOf(name));
  const missing = recorded.classes.filter((_, i) => index[i] < 0);
  if (missing.length) throw new UsageError(`--run ${run}: the checkpoint has no class ${missing.map((m) => `'${m}'`).join(', ')} of the run's split`);
  return samples.map((s) => ({ file: s.path, label: index[s.label] }));
}

/** OUT/top-losses.png: the most confidently wrong images, each captioned with its prediction, actual class and loss. */
async function writeTopLosses(c: Classifier, p: Preprocessing, results: Evaluation['results'], n: number, names: string[], out: string, cam: boolean): Promise<void> {
  const worst = topLosses(results, n);
  const path = join(out, 'top-losses.png');
  if (worst.length === 0) {
    console.log(`top losses: no image is misclassified, so ${printable(path)} was not written`);
    return;
  }
  const shown = { ...p, mean: [0, 0, 0] as [number, number, number], std: [1, 1, 1] as [number, number, number] };
  const images = await Promise.all(worst.map((w) => loadImage(w.file, shown)));
  const cams = cam ? await gradCams(c, await Promise.all(worst.map((w) => loadImage(w.file, p))), p.size, worst.map((w) => w.predicted)) : null;
  const size = Math.max(p.size, 96);
  const tiles = worst.map((w, i) => ({
    image: resizeChw(cams ? heatmapOverlay(images[i], p.size, cams[i].map, cams[i].h, cams[i].w) : images[i], p.size, size),
    lines: [
      { text: `${printable(names[w.predicted])} ${(100 * w.probability).toFixed(0)}%`, bold: true, color: '#b00020' },
      { text: `actual: ${printable(names[w.actual])}` },
      { text: `loss ${w.loss.toFixed(2)}  ${printable(basename(w.file))}` },
    ],
  }));
  ensureDir(out);
  writeFileAtomic(path, await imageGridPng(tiles, size));
  console.log(`wrote ${printable(path)}: the ${worst.length} most confidently wrong of ${results.length} images${cam ? ', under the Grad-CAM of the predicted class' : ''} (predicted, actual, loss)`);
}

export const evalCommand = defineCommand({
  name: 'eval',
  summary: 'evaluate a checkpoint on labelled images: accuracy, per-class F1, confusion matrix',
  synopsis: '--data DIR --checkpoint model.onnx [options] | --run runs/NAME [options]',
  description: `Evaluates a classifier on labelled images: accuracy, top-5 accuracy (5 classes or more), per-class
precision / recall / F1, macro-F1, the confusion matrix and the most-confused pairs.`,
  options: {
    data: str({
      metavar: 'DIR',
      aliases: ['data_dir'],
      help: "class folders named after the checkpoint's classes, or a folder split into train/, valid/ (or val/) and test/ (then --split picks one)",
    }),
    run: str({ metavar: 'DIR', help: "a training run's folder: its best.onnx on exactly the images of its split (split.json), random or not" }),
    split: choice(['valid', 'test'] as const, { defaultText: 'test if there is one, else valid; valid with --run', help: 'which split of --data or --run to score' }),
    labels: str({
      metavar: 'FILE.tsv',
      help: "instead of class folders: lines 'file<TAB>class index[<TAB>...]', files relative to --data (default: the .tsv's folder)",
    }),
    json: str({ metavar: 'FILE', help: 'the full report as JSON' }),
    confusion: str({ metavar: 'FILE.png', help: 'the confusion matrix as a heatmap with a colour scale' }),
    normalize: flag({ help: "the heatmap's rows as shares of each actual class (percentages) instead of counts" }),
    tta: flag({ help: "test-time augmentation: the probabilities averaged over each image, its mirror and 4 corner crops (fastai's tta), the gain over the plain view reported" }),
    topLosses: int({ min: 1, max: 400, metavar: 'N', help: "the N most confidently wrong images as a grid with actual, predicted and probability (fastai's plot_top_losses): OUT/top-losses.png" }),
    cam: flag({ help: "only with --top-losses N --out DIR: each top-losses image under the Grad-CAM heatmap of its predicted class (fastai's plot_top_losses(heatmap=True)); predict --cam FILE draws one image's" }),
    out: str({ metavar: 'DIR', help: 'where --top-losses writes' }),
    ...INFERENCE_OPTIONS,
    checkpoint: str({ metavar: 'FILE', defaultText: 'RUN/best.onnx with --run', help: "an ONNX checkpoint (gpunet's own, or a foreign classifier with the preprocessing options)" }),
  },
  async run(v) {
    if (!v.data && !v.labels && !v.run) throw new UsageError('--data DIR (class folders), --run DIR (a training run) or --labels FILE.tsv is required');
    if (v.run && (v.data || v.labels)) throw new UsageError('--run takes its images from the run\'s split: pass --run or --data/--labels, not both');
    if (v.run && !existsSync(join(v.run, SPLIT_FILE))) {
      throw new UsageError(`--run ${v.run}: no ${SPLIT_FILE} in it (not a training run's folder, or one from before gpunet 0.2): score its images with --data and --checkpoint`);
    }
    const checkpoint = v.checkpoint ?? (v.run ? join(v.run, 'best.onnx') : undefined);
    if (!checkpoint) throw new UsageError('--checkpoint FILE is required (or --run DIR, a training run)');
    pngPath('--confusion', v.confusion);
    if (v.topLosses !== undefined && !v.out) throw new UsageError('--top-losses N needs --out DIR, the folder to write top-losses.png into');
    if (v.cam && v.topLosses === undefined) throw new UsageError('--cam draws Grad-CAM over the --top-losses images: pass --top-losses N --out DIR too');
    const c = await openCheckpoint({ checkpoint, device: v.device, size: v.size });
    const p = resolvePreprocessing(v, c.preprocessing, c.source, c.declaredSize);
    const names = v.categoryNames ? readCategoryNames(v.categoryNames, c.classes) : c.classes;
    let samples: Sample[];
    let what: string | null = null; // said when gpunet chose the images
    if (v.run) {
      const split = v.split ?? 'valid';
      samples = samplesFromRun(v.run, split, c.classes);
      what = `the ${split} split of ${v.run} (${SPLIT_FILE})`;
    } else if (v.labels) {
      samples = samplesFromTsv(v.labels, v.data, c.classes.length);
    } else {
      const layout = splitFolder(v.data!, c.classes, names, v.split);
      samples = samplesFromFolders(layout?.folder ?? v.data!, c.classes, names);
      if (layout) what = `the ${layout.split} split of ${v.data} (${layout.folder}${v.split ? '' : `; --split ${layout.split === 'test' ? 'valid' : 'test'} for the other`})`;
    }
    if (samples.length === 0) throw new UsageError(`--data ${v.data}: no image files in its class folders`);
    if (what) console.log(`evaluating ${printable(checkpoint)} on ${samples.length} images of ${printable(what)}`);

    const bar = new ProgressBar('eval', samples.length, 'images');
    const { metrics: m, plainMetrics, results, failed } = await evaluateFiles(c, samples, p, fittedBatchSize('eval', c, p, Math.min(v.batchSize, samples.length)), {
      classNames: names, onProgress: (d) => bar.update(d), tta: v.tta,
    });
    reportSkipped('eval', failed);
    if (results.length === 0) throw new UsageError(`no image could be read (${failed.length} files unreadable)`);
    const k = c.classes.length;

    const [summary, ...table] = formatReport(m).split('\n');
    console.log(summary);
    if (plainMetrics) {
      const points = (a: number, b: number) => `${a >= b ? '+' : ''}${(100 * (a - b)).toFixed(2)} points`;
      console.log(
        `TTA (${TTA_VIEWS.length} views: ${TTA_VIEWS.join(', ')}; probabilities averaged): accuracy ${(100 * m.accuracy).toFixed(2)}% against ${(100 * plainMetrics.accuracy).toFixed(2)}% without (${points(m.accuracy, plainMetrics.accuracy)}), ` +
          `macro-F1 ${m.macroF1.toFixed(4)} against ${plainMetrics.macroF1.toFixed(4)}`,
      );
    }
    console.log(table.join('\n'));
    console.log('');
    if (m.labels.length <= MAX_TABLE_CLASSES) console.log(`confusion matrix (rows actual, columns predicted):\n${formatConfusion(m)}`);
    else console.log(`confusion matrix: ${m.labels.length} x ${m.labels.length} classes, see --json / --confusion`);
    console.log('');
    console.log(`most confused (actual -> predicted):\n${formatMostConfused(m)}`);
    if (failed.length) console.log(`\n${failed.length} file(s) skipped (missing or not decodable, listed above)`);

    if (v.confusion) await savePng(confusionHeatmap(m.confusion, m.perClass.map((x) => x.name), { normalize: v.normalize }), v.confusion);
    if (v.topLosses !== undefined) await writeTopLosses(c, p, results, v.topLosses, names, v.out!, v.cam);
    if (v.json) {
      const report = {
        checkpoint,
        data: v.data ?? null,
        run: v.run ?? null,
        labelsFile: v.labels ?? null,
        preprocessing: p,
        ...m,
        predictions: results.map((r) => {
          const predicted = argmaxRows(r.logits, k)[0];
          return { file: r.file, actual: names[r.label], predicted: names[predicted], index: predicted, correct: predicted === r.label };
        }),
        skipped: failed.map((e) => e.file),
      };
      writeFileAtomic(v.json, `${JSON.stringify(report, null, 2)}\n`);
    }
    return 0;
  },
});
