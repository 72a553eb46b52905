// `gpunet data`: what gpunet reads from a data folder — classes, counts per split and the files it
// skips (fastai's "check your DataBlock"), before any training. Also the data options every
// data-reading command shares (--data --valid-pct --seed --label-regex --verify).
import { parseArgs } from 'node:util';
import type { DataSplit } from '../data/dataset.ts';
import { DataError, describeSource, scanDataset, shortPath, type SourceOptions } from '../data/folder.ts';
import type { Command } from './main.ts';
import { UsageError } from './errors.ts';

export const DATA_USAGE = `  --data DIR          ImageFolder DIR/<class>/<image>; or DIR/train, DIR/valid (or val), DIR/test
                      with class folders; or a flat folder labelled by --label-regex
  --valid-pct 0.2     without a valid folder: the fraction of each class held out (seeded)
  --seed 42           seed of that split
  --label-regex RE    the class is RE's first capture group over each file name,
                      e.g. '(.+)_\\d+\\.jpg$'
  --verify            decode every file at the start (slower; also finds truncated files)`;

/** parseArgs options for the data flags. */
export const dataOptions = {
  data: { type: 'string' },
  'valid-pct': { type: 'string', default: '0.2' },
  seed: { type: 'string', default: '42' },
  'label-regex': { type: 'string' },
  verify: { type: 'boolean', default: false },
} as const;

export interface DataArgs {
  data?: string;
  'valid-pct'?: string;
  seed?: string;
  'label-regex'?: string;
  verify?: boolean;
}

/** The SourceOptions the flags name (UsageError for bad values). */
export function sourceOptions(values: DataArgs): { root: string; opts: SourceOptions } {
  if (!values.data) throw new UsageError('--data DIR is required (a folder of class folders, or of train/ and valid/)');
  const validPct = Number(values['valid-pct'] ?? 0.2);
  if (!(validPct >= 0 && validPct < 1)) throw new UsageError(`--valid-pct must be a number in [0, 1), got '${values['valid-pct']}'`);
  const seed = Number(values.seed ?? 42);
  if (!Number.isInteger(seed) || seed < 0) throw new UsageError(`--seed must be a non-negative integer, got '${values.seed}'`);
  return { root: values.data, opts: { validPct, seed, labelRegex: values['label-regex'], verify: values.verify ? 'decode' : 'header' } };
}

/** scanDataset from the flags, its DataErrors as one-line UsageErrors. */
export async function scanFromArgs(values: DataArgs): Promise<{ root: string; opts: SourceOptions; data: DataSplit }> {
  const { root, opts } = sourceOptions(values);
  try {
    return { root, opts, data: await scanDataset(root, opts) };
  } catch (e) {
    if (e instanceof DataError) throw new UsageError(e.message);
    throw e;
  }
}

/** The per-class counts table of a split, and its skipped files. */
export function describeData(root: string, d: DataSplit): string[] {
  const splits = (['train', 'valid', 'test'] as const).filter((s) => s === 'train' || d[s].length > 0);
  const count = (s: (typeof splits)[number], label: number) => d[s].filter((x) => x.label === label).length;
  const rows = [['class', ...splits], ...d.classes.map((c, i) => [c, ...splits.map((s) => String(count(s, i)))]), ['total', ...splits.map((s) => String(d[s].length))]];
  const widths = rows[0].map((_, j) => Math.max(...rows.map((r) => r[j].length)));
  const lines = rows.map((r) => r.map((cell, j) => (j === 0 ? cell.padEnd(widths[j]) : cell.padStart(widths[j]))).join('  '));
  lines.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  lines.splice(lines.length - 1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  const out = [`classes (${d.classes.length}): ${d.classes.join(', ')}`, '', ...lines.map((l) => `  ${l}`), ''];
  if (d.skipped.length === 0) out.push('skipped: none');
  else {
    out.push(`skipped ${d.skipped.length} file${d.skipped.length > 1 ? 's' : ''}:`);
    for (const f of d.skipped) out.push(`  ${shortPath(root, f.path)}: ${f.reason}`);
  }
  return out;
}

const usage = `usage: gpunet data --data DIR [--valid-pct 0.2] [--seed 42] [--label-regex RE] [--verify]

Prints how gpunet reads a data folder: its layout, the classes, the image count per class and split,
and the files skipped (not images, empty, undecodable, or not matching --label-regex).

${DATA_USAGE}`;

export const dataCommand: Command = {
  name: 'data',
  summary: 'check a data folder: classes, counts per split, skipped files',
  usage,
  async run(args) {
    const { values } = parseArgs({ args, options: dataOptions });
    const t0 = Date.now();
    const { root, opts, data } = await scanFromArgs(values);
    console.log(`data: ${root}`);
    console.log(`layout: ${describeSource(root, opts)}`);
    for (const line of describeData(root, data)) console.log(line);
    console.log(`(every file's ${opts.verify === 'decode' ? 'data decoded' : 'header read'} in ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    return 0;
  },
};
