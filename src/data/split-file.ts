// The split a run used, written into its folder (split.json): the data root and, per split, each
// file (relative to the root) with its class. A random split is a function of the seed and the
// folder's contents at the time; this file keeps the exact lists, so that `gpunet eval --run`
// scores the very validation (or test) images of that run later, whatever the folder holds then.
import { isAbsolute, join, normalize, relative, resolve, sep } from 'node:path';
import { FileError, readRegularFile, writeFileAtomic } from '../io/files.ts';
import type { DataSplit, Sample } from './dataset.ts';
import { DataError } from './folder.ts';

export const SPLIT_FILE = 'split.json';
const SPLITS = ['train', 'valid', 'test'] as const;
export type SplitName = (typeof SPLITS)[number];

interface SplitJson {
  /** the data folder, absolute */
  root: string;
  classes: string[];
  /** [file relative to root, class index] */
  train: [string, number][];
  valid: [string, number][];
  test: [string, number][];
}

/** Writes the split of `root` to `path` (atomically). */
export function writeSplitFile(path: string, root: string, d: DataSplit): void {
  const abs = resolve(root);
  const entries = (samples: Sample[]) => samples.map((s): [string, number] => [relative(abs, resolve(s.path)).split(sep).join('/'), s.label]);
  const json: SplitJson = { root: abs, classes: d.classes, train: entries(d.train), valid: entries(d.valid), test: entries(d.test) };
  writeFileAtomic(path, `${JSON.stringify(json, null, 1)}\n`);
}

/** Reads a split file back (every entry checked: a file inside the root, a class index in range). */
export function readSplitFile(path: string): { root: string; classes: string[] } & Record<SplitName, Sample[]> {
  const bad = (why: string) => new DataError(path, `not a gpunet split file (${why})`);
  let j: SplitJson;
  try {
    j = JSON.parse(readRegularFile(path).toString('utf8'));
  } catch (e) {
    if (e instanceof FileError && e.reason === 'no such file') throw new DataError(path, 'no such file: the run folder has no split record (runs before gpunet 0.2 wrote none)');
    if (e instanceof FileError) throw new DataError(path, e.reason);
    throw bad((e as Error).message.split('\n')[0]);
  }
  if (!j || typeof j.root !== 'string' || !isAbsolute(j.root) || !Array.isArray(j.classes) || !j.classes.every((c) => typeof c === 'string')) throw bad('root or classes');
  const samples = (name: SplitName): Sample[] => {
    const list = j[name];
    if (!Array.isArray(list)) throw bad(`no ${name} list`);
    return list.map((e, i): Sample => {
      const [file, label] = (Array.isArray(e) ? e : []) as unknown[];
      const inside = typeof file === 'string' && file !== '' && !isAbsolute(file) && !normalize(file).split(/[\\/]/).includes('..');
      if (!inside || !Number.isInteger(label) || (label as number) < 0 || (label as number) >= j.classes.length) throw bad(`${name} entry ${i + 1}: ${JSON.stringify(e)}`);
      return { path: join(j.root, file as string), label: label as number };
    });
  };
  return { root: j.root, classes: j.classes, train: samples('train'), valid: samples('valid'), test: samples('test') };
}
