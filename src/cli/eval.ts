// `gpunet eval`: scores a checkpoint on labelled images (class folders, or a labels.tsv listing
// file and class index) and reports accuracy, top-5, per-class precision/recall/F1, macro-F1, the
// confusion matrix (table and heatmap) and the most-confused pairs.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { ImageError, listImages } from '../data/image.ts';
import { writeFileAtomic } from '../io/files.ts';
import { classifyFiles } from '../train/inference.ts';
import { argmaxRows, classificationMetrics, formatConfusion, formatMostConfused, formatReport } from '../train/metrics.ts';
import { confusionHeatmap, savePng } from '../report/plot.ts';
import { ProgressBar } from '../report/progress.ts';
import { defineCommand } from './command.ts';
import { UsageError } from './errors.ts';
import { str } from './options.ts';
import { fittedBatchSize, INFERENCE_OPTIONS, openCheckpoint, pngPath, readCategoryNames, reportSkipped, resolvePreprocessing } from './predict.ts';

/** The confusion table is printed up to this many classes (the heatmap and JSON hold any size). */
const MAX_TABLE_CLASSES = 30;

interface Sample {
  file: string;
  label: number;
}

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
    text = readFileSync(tsv, 'utf8');
  } catch {
    throw new UsageError(`--labels ${tsv}: no such file`);
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

export const evalCommand = defineCommand({
  name: 'eval',
  summary: 'evaluate a checkpoint on labelled images: accuracy, per-class F1, confusion matrix',
  synopsis: '--data DIR --checkpoint model.onnx [options]',
  description: `Evaluates a classifier on labelled images: accuracy, top-5 accuracy (5 classes or more), per-class
precision / recall / F1, macro-F1, the confusion matrix and the most-confused pairs.`,
  options: {
    data: str({ metavar: 'DIR', aliases: ['data_dir'], help: "a folder of class folders named after the checkpoint's classes" }),
    labels: str({
      metavar: 'FILE.tsv',
      help: "instead of class folders: lines 'file<TAB>class index[<TAB>...]', files relative to --data (default: the .tsv's folder)",
    }),
    json: str({ metavar: 'FILE', help: 'the full report as JSON' }),
    confusion: str({ metavar: 'FILE.png', help: 'the confusion matrix as a heatmap' }),
    ...INFERENCE_OPTIONS,
  },
  async run(v) {
    if (!v.data && !v.labels) throw new UsageError('--data DIR (class folders) or --labels FILE.tsv is required');
    pngPath('--confusion', v.confusion);
    const c = await openCheckpoint(v);
    const p = resolvePreprocessing(v, c.preprocessing, c.source);
    const names = v.categoryNames ? readCategoryNames(v.categoryNames, c.classes) : c.classes;
    const samples = v.labels ? samplesFromTsv(v.labels, v.data, c.classes.length) : samplesFromFolders(v.data!, c.classes, names);
    if (samples.length === 0) throw new UsageError(`--data ${v.data}: no image files in its class folders`);

    const bar = new ProgressBar('eval', samples.length, 'images');
    const files = samples.map((s) => s.file);
    const { results, failed } = await classifyFiles(c, files, p, fittedBatchSize('eval', c, p, v.batchSize), (d) => bar.update(d));
    reportSkipped('eval', failed);
    if (results.length === 0) throw new UsageError(`no image could be read (${failed.length} files unreadable)`);
    const labelOf = new Map(samples.map((s) => [s.file, s.label]));
    const k = c.classes.length;
    const logits = new Float32Array(results.length * k);
    results.forEach((r, i) => logits.set(r.logits, i * k));
    const m = classificationMetrics(logits, results.map((r) => labelOf.get(r.file)!), k, { classNames: names, topK: [5] });

    console.log(formatReport(m));
    console.log('');
    if (m.labels.length <= MAX_TABLE_CLASSES) console.log(`confusion matrix (rows actual, columns predicted):\n${formatConfusion(m)}`);
    else console.log(`confusion matrix: ${m.labels.length} x ${m.labels.length} classes, see --json / --confusion`);
    console.log('');
    console.log(`most confused (actual -> predicted):\n${formatMostConfused(m)}`);
    if (failed.length) console.log(`\n${failed.length} file(s) skipped (missing or not decodable, listed above)`);

    if (v.confusion) await savePng(confusionHeatmap(m.confusion, m.perClass.map((x) => x.name)), v.confusion);
    if (v.json) {
      const report = {
        checkpoint: v.checkpoint,
        data: v.data ?? null,
        labelsFile: v.labels ?? null,
        preprocessing: p,
        ...m,
        predictions: results.map((r) => {
          const predicted = argmaxRows(r.logits, k)[0];
          return { file: r.file, actual: names[labelOf.get(r.file)!], predicted: names[predicted], index: predicted, correct: predicted === labelOf.get(r.file) };
        }),
        skipped: failed.map((e) => e.file),
      };
      writeFileAtomic(v.json, `${JSON.stringify(report, null, 2)}\n`);
    }
    return 0;
  },
});
