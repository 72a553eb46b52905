// `gpunet data`: what gpunet reads from a data folder — classes, counts per split and the files it
// skips (fastai's "check your DataBlock"), before any training. Also the scan every data-reading
// command shares.
import type { DataSplit } from '../data/dataset.ts';
import { DataError, describeSource, scanDataset, shortPath, type SourceOptions } from '../data/folder.ts';
import { printable } from '../io/printable.ts';
import { defineCommand } from './command.ts';
import { UsageError } from './errors.ts';
import { kebab } from './options.ts';
import { DATA_SOURCE } from './shared-options.ts';

/** The values of DATA_SOURCE's options. */
export interface SourceValues {
  data: string;
  validPct: number;
  seed: number;
  labelRegex?: string;
  verify: boolean;
}

export function sourceOptions(v: SourceValues): SourceOptions {
  return { validPct: v.validPct, seed: v.seed, labelRegex: v.labelRegex, verify: v.verify ? 'decode' : 'header', optionName: (o) => `--${kebab(o === 'root' ? 'data' : o)}` };
}

/** scanDataset from the flags, its DataErrors as one-line UsageErrors. */
export async function scanFromArgs(v: SourceValues): Promise<{ root: string; opts: SourceOptions; data: DataSplit }> {
  const opts = sourceOptions(v);
  try {
    return { root: v.data, opts, data: await scanDataset(v.data, opts) };
  } catch (e) {
    if (e instanceof DataError) throw new UsageError(e.message);
    throw e;
  }
}

/** One line per group of identical files found in different splits. */
export function duplicateWarnings(root: string, d: DataSplit): string[] {
  return d.duplicates.map((g) => `the same image in two splits: ${printable(g.map((p) => shortPath(root, p)).join(' = '))} (validation scores count it as unseen: remove all copies but one)`);
}


/** Classes this many times apart in the training split get a warning. */
const IMBALANCE = 3;

/** A warning when the largest training class has more than 3x the images of the smallest. */
export function imbalanceWarning(d: DataSplit): string | null {
  const counts = d.classes.map((_, i) => d.train.filter((s) => s.label === i).length);
  const [lo, hi] = [counts.indexOf(Math.min(...counts)), counts.indexOf(Math.max(...counts))];
  if (!(counts[hi] > IMBALANCE * counts[lo])) return null;
  return (
    `warning: the classes are imbalanced: ${printable(d.classes[hi])} has ${counts[hi]} training images, ${printable(d.classes[lo])} ${counts[lo]} ` +
    `(${(counts[hi] / Math.max(1, counts[lo])).toFixed(1)}x); consider --class-weights auto or --sampler balanced, and watch macro-F1 (--monitor macro-f1)`
  );
}

/** The per-class counts table of a split, its skipped files and duplicates across splits. */
export function describeData(root: string, d: DataSplit): string[] {
  const splits = (['train', 'valid', 'test'] as const).filter((s) => s === 'train' || d[s].length > 0);
  const count = (s: (typeof splits)[number], label: number) => d[s].filter((x) => x.label === label).length;
  const rows = [['class', ...splits], ...d.classes.map((c, i) => [printable(c), ...splits.map((s) => String(count(s, i)))]), ['total', ...splits.map((s) => String(d[s].length))]];
  const widths = rows[0].map((_, j) => Math.max(...rows.map((r) => r[j].length)));
  const lines = rows.map((r) => r.map((cell, j) => (j === 0 ? cell.padEnd(widths[j]) : cell.padStart(widths[j]))).join('  '));
  lines.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  lines.splice(lines.length - 1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  const out = [`classes (${d.classes.length}): ${printable(d.classes.join(', '))}`, '', ...lines.map((l) => `  ${l}`), ''];
  if (d.skipped.length === 0) out.push('skipped: none');
  else {
    out.push(`skipped ${d.skipped.length} file${d.skipped.length > 1 ? 's' : ''}:`);
    for (const f of d.skipped) out.push(`  ${printable(shortPath(root, f.path))}: ${printable(f.reason)}`);
  }
  out.push(...duplicateWarnings(root, d).map((w) => `warning: ${w}`));
  return out;
}

export const dataCommand = defineCommand({
  name: 'data',
  summary: 'check a data folder: classes, counts per split, skipped files',
  synopsis: '--data DIR [options]',
  description: `Prints how gpunet reads a data folder: its layout, the classes, the image count per class and split,
and the files skipped (not images, empty, undecodable, or not matching --label-regex).`,
  options: DATA_SOURCE,
  async run(v) {
    const t0 = Date.now();
    const { root, opts, data } = await scanFromArgs(v);
    console.log(`data: ${printable(root)}`);
    console.log(`layout: ${printable(describeSource(root, opts))}`);
    for (const line of describeData(root, data)) console.log(line);
    const imbalance = imbalanceWarning(data);
    if (imbalance) console.log(imbalance);
    console.log(`(every file's ${opts.verify === 'decode' ? 'data decoded' : 'header read'} in ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    return 0;
  },
});
