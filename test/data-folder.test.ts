// Data sources: ImageFolder, pre-split and regex-labelled folders generated with sharp in a temp
// dir, the seeded split, files that are not images, every one-line error, and the real hymenoptera
// folder (a GIF placeholder, a .jpeg, a file name with a space); hostile folders (FIFOs, sockets,
// link loops, a file under two names, copies across splits, control characters in names).
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { dataCommand } from '../src/cli/data.ts';
import { UsageError } from '../src/cli/errors.ts';
import type { DataSplit } from '../src/data/dataset.ts';
import { DataError, scanDataset } from '../src/data/folder.ts';
import { printable } from '../src/io/printable.ts';

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'gpunet-folder-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const COLOURS = ['#d03030', '#30a040', '#3050d0', '#d0c030'];

/** A 24x20 image: a coloured disc or square (by index) on grey. */
async function writeShape(file: string, i: number): Promise<void> {
  mkdirSync(dirname(file), { recursive: true });
  const shape = i % 2 ? `<rect x="6" y="4" width="12" height="12" fill="${COLOURS[i % 4]}"/>` : `<circle cx="12" cy="10" r="6" fill="${COLOURS[i % 4]}"/>`;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="24" height="20"><rect width="24" height="20" fill="#888"/>${shape}</svg>`;
  const img = sharp(Buffer.from(svg));
  await (file.endsWith('.png') ? img.png() : img.jpeg()).toFile(file);
}

/** root/<dir>/<class>/<class>_<i>.png for each class and count. */
async function imageFolder(dir: string, counts: Record<string, number>): Promise<string> {
  const base = join(root, dir);
  for (const [cls, n] of Object.entries(counts)) for (let i = 0; i < n; i++) await writeShape(join(base, cls, `${cls}_${i}.png`), i);
  return base;
}

/** Every sample's label is the class named by its folder (or file-name prefix). */
function expectLabelsMatchPaths(d: DataSplit, fromName = false) {
  for (const s of [...d.train, ...d.valid, ...d.test]) {
    const cls = fromName ? basename(s.path).split('_')[0] : basename(dirname(s.path));
    expect(d.classes[s.label]).toBe(cls);
  }
}

async function expectDataError(p: Promise<unknown>, folder: string, pattern: RegExp) {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(DataError);
  const msg = (e as Error).message;
  expect(msg.startsWith(`${folder}: `)).toBe(true);
  expect(msg).toMatch(pattern);
  expect(msg).not.toContain('\n');
}

describe('scanDataset sources', () => {
  it('ImageFolder: classes sorted, a stratified split, every file once with its folder label', async () => {
    const dir = await imageFolder('plain', { zebra: 10, ant: 5, bee: 7 });
    const d = await scanDataset(dir, { validPct: 0.2, seed: 1 });
    expect(d.classes).toEqual(['ant', 'bee', 'zebra']);
    expect(d.skipped).toEqual([]);
    expect(d.test).toEqual([]);
    const count = (samples: DataSplit['train'], label: number) => samples.filter((s) => s.label === label).length;
    // round(n * 0.2) of each class to valid
    expect([0, 1, 2].map((c) => count(d.valid, c))).toEqual([1, 1, 2]);
    expect([0, 1, 2].map((c) => count(d.train, c))).toEqual([4, 6, 8]);
    const all = [...d.train, ...d.valid].map((s) => s.path);
    expect(new Set(all).size).toBe(22);
    expectLabelsMatchPaths(d);
    // validPct 0: everything trains
    const none = await scanDataset(dir, { validPct: 0 });
    expect(none.train.length).toBe(22);
    expect(none.valid).toEqual([]);
  });

  it('the split: same seed the same, another seed another, pinned for the default seed', async () => {
    const dir = await imageFolder('split', { a: 20, b: 20 });
    const s1 = await scanDataset(dir, { seed: 7 });
    const s2 = await scanDataset(dir, { seed: 7 });
    const s3 = await scanDataset(dir, { seed: 8 });
    expect(s2).toEqual(s1);
    expect(s3.valid.map((s) => s.path)).not.toEqual(s1.valid.map((s) => s.path));
    expect(s1.valid.length).toBe(8);
    expect(s3.valid.length).toBe(8);
    // default seed 42, the same on any machine: pin the split of a fixed listing
    const d = await scanDataset(dir);
    expect(d.valid.map((s) => basename(s.path))).toEqual(['a_0.png', 'a_12.png', 'a_3.png', 'a_9.png', 'b_15.png', 'b_19.png', 'b_2.png', 'b_6.png']);
  });

  it('pre-split train/ val/ test/ folders are used as given', async () => {
    await imageFolder('pre/train', { cat: 4, dog: 3 });
    await imageFolder('pre/val', { cat: 2, dog: 2 });
    await imageFolder('pre/test', { dog: 1 });
    const d = await scanDataset(join(root, 'pre'), { validPct: 0.5 });
    expect(d.classes).toEqual(['cat', 'dog']);
    expect([d.train.length, d.valid.length, d.test.length]).toEqual([7, 4, 1]);
    expect(d.train.every((s) => s.path.includes('/pre/train/'))).toBe(true);
    expect(d.valid.every((s) => s.path.includes('/pre/val/'))).toBe(true);
    expect(d.test[0]).toEqual({ path: join(root, 'pre/test/dog/dog_0.png'), label: 1 });
    expectLabelsMatchPaths(d);
  });

  it('train/ without valid/ is split at random; valid/ is accepted as well as val/', async () => {
    await imageFolder('trainonly/train', { x: 5, y: 5 });
    const d = await scanDataset(join(root, 'trainonly'), { validPct: 0.4 });
    expect([d.train.length, d.valid.length]).toEqual([6, 4]);
    await imageFolder('named/train', { x: 2 });
    await imageFolder('named/valid', { x: 1 });
    const n = await scanDataset(join(root, 'named'));
    expect([n.train.length, n.valid.length]).toEqual([2, 1]);
  });

  it('a flat folder labelled by --label-regex; names that do not match are skipped', async () => {
    const dir = join(root, 'pets');
    for (let i = 0; i < 4; i++) {
      await writeShape(join(dir, `Abyssinian_${i + 1}.jpg`), i);
      await writeShape(join(dir, `great_pyrenees_${i + 10}.jpg`), i);
    }
    await writeShape(join(dir, 'readme.jpg'), 0);
    const d = await scanDataset(dir, { labelRegex: '^(.+)_\\d+\\.jpg$', validPct: 0.25 });
    expect(d.classes).toEqual(['Abyssinian', 'great_pyrenees']);
    expect([d.train.length, d.valid.length]).toEqual([6, 2]);
    expect(d.skipped).toEqual([{ path: join(dir, 'readme.jpg'), reason: expect.stringMatching(/does not match labelRegex '/) }]);
    for (const s of [...d.train, ...d.valid]) expect(basename(s.path).startsWith(d.classes[s.label] + '_')).toBe(true);
  });

  it('grayscale, CMYK, 16-bit, alpha, EXIF-rotated and GIF files are kept; corrupt and empty files are skipped', async () => {
    const dir = join(root, 'kinds', 'k');
    mkdirSync(dir, { recursive: true });
    const rgb = () => sharp({ create: { width: 16, height: 12, channels: 3, background: '#a05020' } });
    await rgb().toColourspace('b-w').png().toFile(join(dir, 'gray.png'));
    await rgb().toColourspace('cmyk').jpeg().toFile(join(dir, 'cmyk.jpg'));
    await rgb().toColourspace('rgb16').png().toFile(join(dir, 'deep.png'));
    await sharp({ create: { width: 16, height: 12, channels: 4, background: { r: 10, g: 200, b: 30, alpha: 0.5 } } }).png().toFile(join(dir, 'alpha.png'));
    await rgb().jpeg().withMetadata({ orientation: 6 }).toFile(join(dir, 'rotated.jpg'));
    await rgb().gif().toFile(join(dir, 'anim.gif'));
    await rgb().webp().toFile(join(dir, 'photo.WEBP'));
    writeFileSync(join(dir, 'corrupt.jpg'), Buffer.from('this is not a jpeg at all, just text'));
    writeFileSync(join(dir, 'empty.png'), Buffer.alloc(0));
    writeFileSync(join(dir, 'notes.txt'), 'not an image extension: ignored');
    const d = await scanDataset(join(root, 'kinds'), { validPct: 0 });
    expect(d.train.map((s) => basename(s.path)).sort()).toEqual(['alpha.png', 'anim.gif', 'cmyk.jpg', 'deep.png', 'gray.png', 'photo.WEBP', 'rotated.jpg']);
    expect(d.skipped).toEqual([
      { path: join(dir, 'corrupt.jpg'), reason: expect.stringMatching(/^cannot decode as an image/) },
      { path: join(dir, 'empty.png'), reason: 'empty file' },
    ]);
  });

  it('the hymenoptera folder: train/ and val/, the GIF placeholder, a .jpeg and a name with a space', async () => {
    const dir = join(import.meta.dirname, '..', '..', 'shared', 'data', 'hymenoptera_data');
    expect(existsSync(dir)).toBe(true);
    const d = await scanDataset(dir);
    expect(d.classes).toEqual(['ants', 'bees']);
    expect([d.train.length, d.valid.length, d.test.length]).toEqual([245, 153, 0]);
    expect(d.skipped).toEqual([]);
    const names = d.train.map((s) => basename(s.path));
    for (const n of ['imageNotFound.gif', 'formica.jpeg', 'ant photos.jpg']) expect(names).toContain(n);
    expectLabelsMatchPaths(d);
  });
});

describe('scanDataset errors: one line naming the folder and the fix', () => {
  it('a missing or empty root', async () => {
    const missing = join(root, 'nope');
    await expectDataError(scanDataset(missing), missing, /no such folder/);
    const empty = join(root, 'empty');
    mkdirSync(empty);
    await expectDataError(scanDataset(empty), empty, /no class folders with images/);
  });

  it('images without class folders, and the regex that would label them', async () => {
    const dir = join(root, 'flat');
    for (let i = 0; i < 3; i++) await writeShape(join(dir, `img${i}.png`), i);
    await expectDataError(scanDataset(dir), dir, /3 images but no class folders.*with labelRegex$/);
    await expectDataError(scanDataset(dir, { labelRegex: '^(cat)_\\d+' }), dir, /matches none of the 3 image file names \(e\.g\. 'img0\.png'\)/);
    await expectDataError(scanDataset(dir, { labelRegex: 'img\\d' }), dir, /has no capture group/);
    await expectDataError(scanDataset(dir, { labelRegex: '(unclosed' }), dir, /not a valid regular expression/);
  });

  it('an empty class, or one whose only file is broken', async () => {
    const dir = await imageFolder('emptyclass', { good: 3 });
    mkdirSync(join(dir, 'lonely'));
    await expectDataError(scanDataset(dir), join(dir, 'lonely'), /class 'lonely' has no readable images/);
    rmSync(join(dir, 'lonely'), { recursive: true });
    mkdirSync(join(dir, 'broken'));
    writeFileSync(join(dir, 'broken', 'x.jpg'), 'garbage');
    await expectDataError(scanDataset(dir), join(dir, 'broken'), /class 'broken' has no readable images/);
  });

  it('a class in train but not in valid, and one in valid but not in train', async () => {
    const dir = join(root, 'mismatch');
    await imageFolder('mismatch/train', { a: 2, b: 2 });
    await imageFolder('mismatch/valid', { a: 1 });
    await expectDataError(scanDataset(dir), join(dir, 'valid'), /class 'b' is in .*train but has no images in .*valid/);
    await imageFolder('mismatch/valid', { b: 1, c: 1 });
    await expectDataError(scanDataset(dir), join(dir, 'valid'), /class 'c' is in .*valid but not in .*train/);
  });

  it('a class of one image cannot be split at random', async () => {
    const dir = await imageFolder('single', { a: 3, b: 1 });
    await expectDataError(scanDataset(dir), join(dir, 'b'), /only 1 readable image.*or validPct 0\)/);
    await expectDataError(scanDataset(dir, { optionName: (o) => `the ${o} option` }), join(dir, 'b'), /or the validPct option 0\)$/); // (the caller's words)
    expect((await scanDataset(dir, { validPct: 0 })).train.length).toBe(4);
    await expectDataError(scanDataset(dir, { validPct: 1 }), dir, /validPct must be in \[0, 1\)/);
  });
});

describe('hostile folders', () => {
  it('FIFOs, sockets, link loops and second names of a file are skipped with a line; copies across splits are reported', async () => {
    const dir = join(root, 'hostile');
    await imageFolder('hostile/train', { ants: 3, bees: 3 });
    await imageFolder('hostile/valid', { ants: 1, bees: 1 });
    spawnSync('mkfifo', [join(dir, 'train', 'ants', 'pipe.png')]); // opening one for reading blocks
    const server = createServer().listen(join(dir, 'train', 'bees', 'socket.jpg'));
    await once(server, 'listening');
    symlinkSync('.', join(dir, 'train', 'ants', 'self')); // a loop: read once, not 40 times
    symlinkSync(join('..', 'ants', 'ants_0.png'), join(dir, 'train', 'bees', 'alias.png')); // one file, two classes
    await sharp({ create: { width: 9, height: 7, channels: 3, background: '#123456' } }).png().toFile(join(dir, 'train', 'bees', 'unique.png'));
    copyFileSync(join(dir, 'train', 'bees', 'unique.png'), join(dir, 'valid', 'bees', 'copy.png')); // trained and validated on
    try {
      const d = await scanDataset(dir);
      expect(d.train.map((x) => relative(dir, x.path))).toEqual(['train/ants/ants_0.png', 'train/ants/ants_1.png', 'train/ants/ants_2.png', 'train/bees/bees_0.png', 'train/bees/bees_1.png', 'train/bees/bees_2.png', 'train/bees/unique.png']);
      expect(d.valid.map((x) => relative(dir, x.path))).toEqual(['valid/ants/ants_0.png', 'valid/bees/bees_0.png', 'valid/bees/copy.png']);
      expect(d.skipped.map((x) => [relative(dir, x.path), x.reason]).sort()).toEqual([
        ['train/ants/pipe.png', 'not a regular file (a FIFO, socket, device or folder)'],
        ['train/ants/self', `a link to the folder ${join(dir, 'train', 'ants')}, read already: not followed again`],
        ['train/bees/alias.png', `the same file as ${join(dir, 'train', 'ants', 'ants_0.png')} (a link): used once`],
        ['train/bees/socket.jpg', 'not a regular file (a FIFO, socket, device or folder)'],
      ]);
      // (the generated shapes repeat with the index: ants_0 and bees_0 of each split are equal too)
      expect(d.duplicates.map((g) => g.map((p) => relative(dir, p)))).toContainEqual(['train/bees/unique.png', 'valid/bees/copy.png']);
      for (const g of d.duplicates) expect(new Set(g.map((p) => relative(dir, p).split('/')[0])).size).toBeGreaterThan(1);
    } finally {
      server.close();
    }
  });

  it('names with newlines and control characters are printed escaped, one line each', async () => {
    const dir = await imageFolder('names', { ['ants\nfake: row']: 2, bees: 2 });
    writeFileSync(join(dir, 'bees', 'x\r\u001b[2Kspoof\u202e.png'), 'garbage');
    expect(printable('a\nb\tc\u001b[31m\u202ed\u0085')).toBe('a\\nb\\tc\\x1b[31m\\u{202e}d\\x85');
    const lines: string[] = [];
    const spy = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void lines.push(a.join(' ')));
    try {
      await dataCommand.run(['--data', dir, '--valid-pct', '0.5']);
    } finally {
      spy.mockRestore();
    }
    const out = lines.join('\n');
    expect(out).toContain('classes (2): ants\\nfake: row, bees');
    expect(out).toMatch(/^ {2}ants\\nfake: row {6}1 {6}1$/m);
    expect(out).toContain('  bees/x\\r\\x1b[2Kspoof\\u{202e}.png: cannot decode as an image');
    expect(out).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u202e]/);
  });
});

describe('gpunet data', () => {
  async function run(args: string[]): Promise<{ code: number; out: string }> {
    const lines: string[] = [];
    const spy = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void lines.push(a.join(' ')));
    try {
      return { code: await dataCommand.run(args), out: lines.join('\n') };
    } finally {
      spy.mockRestore();
    }
  }

  it('prints the layout, classes, counts per class and split, and the skipped files', async () => {
    const dir = await imageFolder('cmd', { cat: 5, dog: 5 });
    writeFileSync(join(dir, 'dog', 'broken.jpg'), 'garbage');
    const { code, out } = await run(['--data', dir, '--valid-pct', '0.4', '--seed', '3']);
    expect(code).toBe(0);
    expect(out).toContain('layout: one folder, labelled by class folder, a stratified random split (valid-pct 0.4, seed 3)');
    expect(out).toContain('classes (2): cat, dog');
    expect(out).toMatch(/^ {2}cat {8}3 {6}2$/m);
    expect(out).toMatch(/^ {2}total {6}6 {6}4$/m);
    expect(out).toMatch(/^skipped 1 file:\n {2}dog\/broken\.jpg: cannot decode as an image/m);
  });

  it('bad flags and folders are one-line UsageErrors', async () => {
    await expect(run([])).rejects.toThrow(UsageError);
    await expect(run(['--data', root, '--valid-pct', '2'])).rejects.toThrow(/--valid-pct must be a number in \[0, 1\)/);
    const missing = join(root, 'nowhere');
    await expect(run(['--data', missing])).rejects.toThrow(new UsageError(`${missing}: no such folder: give --data the folder holding the class folders (or train/ and valid/)`));
  });
});
