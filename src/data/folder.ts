// Labelled image files from a folder, the layouts PyTorch and fastai users have on disk:
//   ImageFolder   root/<class>/<image>                   (torchvision's ImageFolder; nested folders
//                                                          inside a class folder belong to the class)
//   pre-split     root/train/<class>/..., root/valid|val/<class>/..., root/test/<class>/...
//   regex         a flat folder (or flat split folders), the class being the first capture group of
//                 labelRegex (--label-regex) matched against each file name (fastai's RegexLabeller; Oxford pets)
// Without a valid folder the train files are split at random: stratified (each class split on its
// own, so every class with 2+ images is in both splits), its files sorted by path first and shuffled
// with the seeded Rng, so the same seed gives the same split on any machine.
// Every file's header is read once at the start (sharp metadata: no pixel decode; or, on request, the
// whole file decoded); files that are not images are listed in `skipped` rather than failing in the
// middle of an epoch.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, join, relative, resolve } from 'node:path';
import sharp from 'sharp';
import { Rng } from '../tensor/random.ts';
import type { DataSplit, Sample, SkippedFile } from './dataset.ts';
import { IMAGE_EXTENSIONS, isImageFile, NOT_A_FILE, walkFiles } from './image.ts';

export interface SourceOptions {
  /** fraction of the train files moved to valid when there is no valid folder (default 0.2) */
  validPct?: number;
  /** seed of the random split (default 42) */
  seed?: number;
  /** flat folders: the class is the regex's first capture group over the file name */
  labelRegex?: string;
  /** how each file is checked at the start: 'header' (default; fast, no pixels decoded) or 'decode'
   *  (every file decoded, small: also finds truncated files, which otherwise fail in the epoch) */
  verify?: 'header' | 'decode';
  /** how messages name an option: by default its field here (`labelRegex`, `validPct`; `root`, the
   *  folder argument); the command line passes its flags, so the words are the caller's */
  optionName?: (option: 'labelRegex' | 'validPct' | 'root') => string;
}

const fieldName = (option: 'labelRegex' | 'validPct' | 'root') => option;

/** A data folder that cannot be used as given; the message is one line naming the folder and the fix. */
export class DataError extends Error {
  constructor(readonly folder: string, reason: string) {
    super(`${folder}: ${reason}`);
    this.name = 'DataError';
  }
}

const VALID_NAMES = ['valid', 'val'];

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** Entries of `dir` not starting with '.', sorted by code unit (the same order on every machine). */
function entries(dir: string): string[] {
  return readdirSync(dir)
    .filter((n) => !n.startsWith('.'))
    .sort();
}

/** Image files (by extension) under `dir`, recursively, sorted; each folder read once (links). */
function imagesUnder(dir: string, skipped: SkippedFile[]): string[] {
  return walkFiles(dir, Infinity, (path, reason) => skipped.push({ path, reason })).filter(isImageFile);
}

/** Image files directly in `dir`, sorted. */
function imagesIn(dir: string): string[] {
  return entries(dir)
    .map((n) => join(dir, n))
    .filter((p) => !isDir(p) && isImageFile(p));
}

type Labelled = Map<string, string[]>; // class -> sorted paths

/** root/<class>/<image...>: the class folders of one split. */
function byFolder(dir: string, skipped: SkippedFile[]): Labelled {
  const out: Labelled = new Map();
  for (const name of entries(dir)) {
    const p = join(dir, name);
    if (isDir(p)) out.set(name, imagesUnder(p, skipped));
  }
  return out;
}

function compileRegex(source: string, root: string, option: string): RegExp {
  let re: RegExp;
  try {
    re = new RegExp(source);
  } catch (e) {
    throw new DataError(root, `${option} '${source}' is not a valid regular expression (${(e as Error).message})`);
  }
  if (new RegExp(`${source}|`).exec('')!.length < 2) {
    throw new DataError(root, `${option} '${source}' has no capture group: put the class part in parentheses, e.g. '(.+)_\\d+\\.jpg$'`);
  }
  return re;
}

/** A flat folder labelled by `re` over file names; names that do not match are skipped. */
function byRegex(dir: string, re: RegExp, source: string, option: string, skipped: SkippedFile[]): Labelled {
  const out: Labelled = new Map();
  const files = imagesUnder(dir, skipped);
  for (const f of files) {
    const m = re.exec(basename(f));
    const label = m?.[1];
    if (!label) {
      skipped.push({ path: f, reason: `file name does not match ${option} '${source}'` });
      continue;
    }
    if (!out.has(label)) out.set(label, []);
    out.get(label)!.push(f);
  }
  if (out.size === 0) {
    const example = files.length ? ` (e.g. '${basename(files[0])}')` : '';
    throw new DataError(dir, `${option} '${source}' matches none of the ${files.length} image file names${example}: fix the pattern (it is matched against the file name, the class is its first group)`);
  }
  return out;
}

/** Why a file cannot be used, or null if it looks like a decodable image: from its header, or with
 *  `decode`, from decoding it (shrunk on load where the format allows, as the loader's presize does). */
async function fileProblem(path: string, decode: boolean): Promise<string | null> {
  try {
    const st = statSync(path);
    if (!st.isFile()) return NOT_A_FILE;
    if (st.size === 0) return 'empty file';
    const img = sharp(path, { failOn: 'error', pages: 1 });
    const meta = await img.metadata();
    if (!meta.width || !meta.height) return 'image has no size';
    if (decode) await img.resize(32, 32, { fit: 'inside' }).raw().toBuffer();
    return null;
  } catch (e) {
    return `cannot decode as an image (${String((e as Error)?.message ?? e).split('\n')[0].trim()})`;
  }
}

/** The files of `paths` that read as images; the others go to `skipped`. A few at a time (sharp
 *  works in its own threads). */
async function checkFiles(paths: string[], decode: boolean, skipped: SkippedFile[]): Promise<Set<string>> {
  const bad = new Map<string, string>();
  let next = 0;
  const worker = async () => {
    while (next < paths.length) {
      const p = paths[next++];
      const problem = await fileProblem(p, decode);
      if (problem) bad.set(p, problem);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  for (const p of paths) if (bad.has(p)) skipped.push({ path: p, reason: bad.get(p)! });
  return new Set(paths.filter((p) => !bad.has(p)));
}

/** Stratified seeded split of each class's sorted files: round(n * validPct) to valid, at least one
 *  on each side for a class of 2+ files. */
function randomSplit(train: Labelled, validPct: number, seed: number): [Labelled, Labelled] {
  const rng = new Rng(seed);
  const t: Labelled = new Map();
  const v: Labelled = new Map();
  for (const cls of [...train.keys()].sort()) {
    const files = rng.shuffle([...train.get(cls)!].sort());
    let nValid = Math.round(files.length * validPct);
    if (validPct > 0 && files.length >= 2) nValid = Math.min(Math.max(nValid, 1), files.length - 1);
    v.set(cls, files.slice(0, nValid).sort());
    t.set(cls, files.slice(nValid).sort());
  }
  return [t, v];
}

/**
 * Scans `root` for labelled images (see the header comment for the layouts) and splits them.
 * Classes are the train class names, sorted. Throws DataError for a folder that cannot work.
 */
export async function scanDataset(root: string, opts: SourceOptions = {}): Promise<DataSplit> {
  const validPct = opts.validPct ?? 0.2;
  const seed = opts.seed ?? 42;
  const name = opts.optionName ?? fieldName;
  if (!(validPct >= 0 && validPct < 1)) throw new DataError(root, `${name('validPct')} must be in [0, 1), got ${validPct}`);
  if (!isDir(root)) throw new DataError(root, `no such folder: give ${name('root')} the folder holding the class folders (or train/ and valid/)`);

  const re = opts.labelRegex !== undefined ? compileRegex(opts.labelRegex, root, name('labelRegex')) : null;
  const skipped: SkippedFile[] = [];
  const read = (dir: string): Labelled => (re ? byRegex(dir, re, opts.labelRegex!, name('labelRegex'), skipped) : byFolder(dir, skipped));

  const trainDir = join(root, 'train');
  const validDir = VALID_NAMES.map((n) => join(root, n)).find(isDir);
  const testDir = join(root, 'test');
  const preSplit = isDir(trainDir);
  let train = read(preSplit ? trainDir : root);
  let valid: Labelled = new Map();
  const test: Labelled = preSplit && isDir(testDir) ? read(testDir) : new Map();
  if (preSplit && validDir) valid = read(validDir);

  const trainWhere = preSplit ? trainDir : root;
  if (train.size === 0) {
    const flat = imagesIn(trainWhere).length;
    throw new DataError(
      trainWhere,
      flat
        ? `${flat} images but no class folders: put each class's images in a folder named after the class, or label them by file name with ${name('labelRegex')}`
        : `no class folders with images (${IMAGE_EXTENSIONS.join(' ')}): expected ${trainWhere}/<class>/<image> or train/ and valid/ folders`,
    );
  }

  // every file read once, under its first name; every file checked once; the bad ones leave the lists
  dropSecondNames([train, valid, test], skipped);
  const all = [train, valid, test].flatMap((m) => [...m.values()].flat());
  const good = await checkFiles(all, opts.verify === 'decode', skipped);
  for (const m of [train, valid, test]) for (const [cls, files] of m) m.set(cls, files.filter((f) => good.has(f)));

  for (const [cls, files] of train) {
    if (files.length === 0) throw new DataError(join(trainWhere, re ? '' : cls), `class '${cls}' has no readable images: add images to it or remove the folder`);
  }
  if (preSplit && validDir) {
    for (const cls of train.keys()) {
      if (!valid.get(cls)?.length) throw new DataError(validDir, `class '${cls}' is in ${trainDir} but has no images in ${validDir}: add some, or remove ${validDir} to split train at random (${name('validPct')})`);
    }
    for (const cls of valid.keys()) {
      if (!train.has(cls)) throw new DataError(validDir, `class '${cls}' is in ${validDir} but not in ${trainDir}: the model cannot learn a class it never trains on; add it to train or remove it from valid`);
    }
  } else if (validPct > 0) {
    for (const [cls, files] of train) {
      if (files.length < 2) throw new DataError(join(trainWhere, re ? '' : cls), `class '${cls}' has only 1 readable image: a random split needs 2 or more per class (add images, or ${name('validPct')} 0)`);
    }
    [train, valid] = randomSplit(train, validPct, seed);
  }
  for (const cls of test.keys()) {
    if (!train.has(cls)) throw new DataError(testDir, `class '${cls}' is in ${testDir} but not in ${trainWhere}: add it to train or remove it from test`);
  }

  const classes = [...train.keys()].sort();
  const samples = (m: Labelled): Sample[] =>
    classes.flatMap((cls, label) => (m.get(cls) ?? []).map((path) => ({ path, label })));
  const split = { train: samples(train), valid: samples(valid), test: samples(test) };
  return { classes, ...split, skipped, duplicates: crossSplitCopies(split) };
}

/** A file listed under several names (links to it) is used once: under its own name if that is
 *  listed, else under the first (train before valid before test); the other names are skipped. */
function dropSecondNames(lists: Labelled[], skipped: SkippedFile[]): void {
  const realOf = new Map<string, string>();
  const keeper = new Map<string, string>(); // real path -> the name used
  for (const m of lists) {
    for (const f of [...m.values()].flat()) {
      let real: string;
      try {
        real = realpathSync(f);
      } catch {
        continue; // a dangling link: the file check reports it
      }
      realOf.set(f, real);
      const prior = keeper.get(real);
      if (prior === undefined || (resolve(prior) !== real && resolve(f) === real)) keeper.set(real, f);
    }
  }
  for (const m of lists) {
    for (const [cls, files] of m) {
      m.set(cls, files.filter((f) => {
        const kept = realOf.has(f) ? keeper.get(realOf.get(f)!)! : f;
        if (kept !== f) skipped.push({ path: f, reason: `the same file as ${kept} (a link): used once` });
        return kept === f;
      }));
    }
  }
}

/** Groups of files with identical bytes in different splits. Only files whose size occurs in two
 *  splits are read and hashed, so a folder without such sizes costs no reading. */
function crossSplitCopies(splits: Record<'train' | 'valid' | 'test', Sample[]>): string[][] {
  const bySize = new Map<number, { split: string; path: string }[]>();
  for (const [split, samples] of Object.entries(splits)) {
    for (const { path } of samples) {
      const size = statSync(path).size;
      if (!bySize.has(size)) bySize.set(size, []);
      bySize.get(size)!.push({ split, path });
    }
  }
  const spansSplits = (g: { split: string }[]) => new Set(g.map((x) => x.split)).size > 1;
  const groups: string[][] = [];
  for (const same of bySize.values()) {
    if (!spansSplits(same)) continue;
    const byHash = new Map<string, { split: string; path: string }[]>();
    for (const f of same) {
      const h = createHash('sha256').update(readFileSync(f.path)).digest('hex');
      if (!byHash.has(h)) byHash.set(h, []);
      byHash.get(h)!.push(f);
    }
    for (const g of byHash.values()) if (spansSplits(g)) groups.push(g.map((x) => x.path));
  }
  return groups;
}

/**
 * What a run was trained on, by content: the split, label, relative path and size of every file,
 * hashed. A resumed run must see the same (another folder with the same class names and counts is
 * another data set); moving the folder elsewhere keeps it.
 */
export function dataFingerprint(root: string, d: DataSplit): { files: number; sha256: string } {
  const hash = createHash('sha256');
  for (const split of ['train', 'valid', 'test'] as const) {
    for (const s of d[split]) hash.update(`${split}\t${s.label}\t${relative(root, s.path)}\t${statSync(s.path).size}\n`);
  }
  return { files: d.train.length + d.valid.length + d.test.length, sha256: hash.digest('hex') };
}

/** `path` relative to the data root, for listings. */
export function shortPath(root: string, path: string): string {
  return relative(root, path) || path;
}

/** How scanDataset reads `root` with `opts`, in words (for `gpunet data`). */
export function describeSource(root: string, opts: SourceOptions = {}): string {
  const labels = opts.labelRegex !== undefined ? `labelled by ${(opts.optionName ?? fieldName)('labelRegex')} '${opts.labelRegex}' over file names` : 'labelled by class folder';
  const validDir = VALID_NAMES.find((n) => isDir(join(root, n)));
  const split = `a stratified random split (valid-pct ${opts.validPct ?? 0.2}, seed ${opts.seed ?? 42})`;
  if (!isDir(join(root, 'train'))) return `one folder, ${labels}, ${split}`;
  const folders = ['train', validDir, isDir(join(root, 'test')) ? 'test' : undefined].filter(Boolean).map((n) => `${n}/`);
  return `pre-split folders ${folders.join(' ')}, ${labels}${validDir ? '' : `, train/ split by ${split}`}`;
}
