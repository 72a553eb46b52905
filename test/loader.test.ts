// The ImageLoader: every sample exactly once per epoch with its label, batch shapes, epochs that
// replay alone, results independent of the worker count (worker threads running the TypeScript
// entry), and a file that passes the header check but breaks during the epoch.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { showBatchCommand } from '../src/cli/show-batch.ts';
import { DEFAULT_AUGMENT } from '../src/data/augment.ts';
import type { Batch, Sample, SkippedFile } from '../src/data/dataset.ts';
import { scanDataset } from '../src/data/folder.ts';
import { ImageLoader, sampleSeed, type LoaderOptions } from '../src/data/loader.ts';
import { Rng } from '../src/tensor/random.ts';

let root: string;
let samples: Sample[];
let classes: string[];
const SIZE = 16;

/** 4 classes x 6 noise images of assorted sizes (PNG and JPEG), seeded. */
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'gpunet-loader-'));
  const rng = new Rng(3);
  for (const cls of ['a', 'b', 'c', 'd']) {
    mkdirSync(join(root, cls));
    for (let i = 0; i < 6; i++) {
      const w = 12 + rng.int(20);
      const h = 12 + rng.int(20);
      const px = Buffer.from(Array.from({ length: w * h * 3 }, () => rng.int(256)));
      const img = sharp(px, { raw: { width: w, height: h, channels: 3 } });
      await (i % 2 ? img.png() : img.jpeg()).toFile(join(root, cls, `${cls}${i}.${i % 2 ? 'png' : 'jpg'}`));
    }
  }
  const d = await scanDataset(root, { validPct: 0 });
  samples = d.train;
  classes = d.classes;
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const opts = (o: Partial<LoaderOptions> = {}): LoaderOptions => ({
  size: SIZE,
  batchSize: 5,
  augment: DEFAULT_AUGMENT,
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
  shuffle: true,
  seed: 11,
  workers: 0,
  ...o,
});

async function collect(loader: ImageLoader, epoch: number): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of loader.epoch(epoch)) out.push(b);
  return out;
}

describe('ImageLoader', () => {
  it('serves every sample exactly once per epoch, with its label, in batches of [B, 3, size, size]', async () => {
    const loader = new ImageLoader(samples, opts());
    expect(loader.batchesPerEpoch).toBe(5); // 24 / 5, the last one short
    const batches = await collect(loader, 0);
    expect(batches.map((b) => b.labels.length)).toEqual([5, 5, 5, 5, 4]);
    for (const b of batches) {
      expect(b.images.length).toBe(b.labels.length * 3 * SIZE * SIZE);
      expect(b.images.every(Number.isFinite)).toBe(true);
      b.paths.forEach((p, k) => expect(classes[b.labels[k]]).toBe(basename(dirname(p))));
    }
    const paths = batches.flatMap((b) => b.paths);
    expect([...paths].sort()).toEqual(samples.map((s) => s.path).sort());
    // shuffled, and differently in the next epoch
    expect(paths).not.toEqual(samples.map((s) => s.path));
    const next = (await collect(loader, 1)).flatMap((b) => b.paths);
    expect([...next].sort()).toEqual([...paths].sort());
    expect(next).not.toEqual(paths);
    await loader.close();
  });

  it('training leaves out a last batch of one image only; no shuffle, and the validation transform', async () => {
    expect(new ImageLoader(samples, opts({ training: true, batchSize: 11 })).batchesPerEpoch).toBe(3); // 11, 11, 2
    expect(new ImageLoader(samples, opts({ training: true, batchSize: 30 })).batchesPerEpoch).toBe(1); // all 24 in one
    expect(new ImageLoader(samples.slice(0, 1), opts({ training: true, batchSize: 2 })).batchesPerEpoch).toBe(0);
    const loader = new ImageLoader(samples, opts({ training: true, shuffle: false, augment: null, batchSize: 23 }));
    expect(loader.batchesPerEpoch).toBe(1);
    const batches = await collect(loader, 0);
    expect(batches.flatMap((b) => b.paths)).toEqual(samples.slice(0, 23).map((s) => s.path));
    // no randomness at all: another epoch and another seed give the same tensors
    const again = await collect(new ImageLoader(samples, opts({ training: true, shuffle: false, augment: null, batchSize: 23, seed: 5 })), 3);
    expect(again.map((b) => Array.from(b.images))).toEqual(batches.map((b) => Array.from(b.images)));
  });

  it('an epoch replays alone: the same batches from a fresh loader, after other epochs or none', async () => {
    const a = new ImageLoader(samples, opts());
    await collect(a, 0);
    const epoch2 = await collect(a, 2);
    const fresh = await collect(new ImageLoader(samples, opts()), 2);
    expect(fresh).toEqual(epoch2);
    const otherSeed = await collect(new ImageLoader(samples, opts({ seed: 12 })), 2);
    expect(otherSeed.map((b) => b.paths)).not.toEqual(epoch2.map((b) => b.paths));
    // each sample's augmentation depends on (seed, epoch, sample) only: the same with another batch size
    const byPath = (bs: Batch[]) => {
      const m = new Map<string, number[]>();
      const plane = 3 * SIZE * SIZE;
      for (const b of bs) b.paths.forEach((p, k) => m.set(p, Array.from(b.images.subarray(k * plane, (k + 1) * plane))));
      return m;
    };
    expect(byPath(await collect(new ImageLoader(samples, opts({ batchSize: 3 })), 2))).toEqual(byPath(epoch2));
    expect(sampleSeed(11, 2, 0)).not.toBe(sampleSeed(11, 2, 1));
    expect(sampleSeed(11, 2, 0)).not.toBe(sampleSeed(11, 3, 0));
  });

  it('the same batches with 0, 1 and 2 worker threads, any prefetch', async () => {
    const results: Batch[][] = [];
    for (const [workers, prefetch] of [
      [0, 2],
      [1, 0],
      [2, 3],
    ]) {
      const loader = new ImageLoader(samples, opts({ workers, prefetch }));
      results.push(await collect(loader, 4));
      await loader.close();
    }
    expect(results[1]).toEqual(results[0]);
    expect(results[2]).toEqual(results[0]);
  });

  it('breaking out of an epoch early, then running another, and close() mid-way', async () => {
    const loader = new ImageLoader(samples, opts({ workers: 2 }));
    for await (const b of loader.epoch(0)) {
      expect(b.labels.length).toBe(5);
      break;
    }
    const full = await collect(loader, 1);
    expect(full.flatMap((b) => b.paths).length).toBe(24);
    expect(full).toEqual(await collect(new ImageLoader(samples, opts()), 1));
    // closed in the middle of an epoch, then usable again (the workers restart)
    for await (const b of loader.epoch(2)) {
      expect(b.labels.length).toBe(5);
      await loader.close();
      break;
    }
    expect(await collect(loader, 1)).toEqual(full);
    await loader.close();
  });

  it('a file that breaks during the epoch is left out, reported once, and not tried again', async () => {
    const dir = join(root, 'a');
    const px = Buffer.from(Array.from({ length: 64 * 64 * 3 }, (_, i) => (i * 7919) % 256));
    const png = await sharp(px, { raw: { width: 64, height: 64, channels: 3 } }).png().toBuffer();
    const truncated = join(dir, 'truncated.png');
    writeFileSync(truncated, png.subarray(0, png.length >> 1)); // its header is fine
    try {
      const d = await scanDataset(root, { validPct: 0 });
      expect(d.skipped).toEqual([]);
      expect(d.train.length).toBe(25);
      const skips: SkippedFile[] = [];
      const loader = new ImageLoader(d.train, opts({ workers: 2, onSkip: (f) => skips.push(f) }));
      for (const epoch of [0, 1]) {
        const paths = (await collect(loader, epoch)).flatMap((b) => b.paths);
        expect(paths.length).toBe(24);
        expect(paths).not.toContain(truncated);
      }
      expect(skips).toEqual([{ path: truncated, reason: expect.stringMatching(/cannot decode as an image/) }]);
      expect(loader.failed).toEqual(skips);
      await loader.close();
      // scanDataset's full check finds it at the start instead
      const verified = await scanDataset(root, { validPct: 0, verify: 'decode' });
      expect(verified.skipped.map((f) => f.path)).toEqual([truncated]);
    } finally {
      rmSync(truncated);
    }
  });

  it('rejects bad options', () => {
    expect(() => new ImageLoader(samples, opts({ batchSize: 0 }))).toThrow(/batchSize must be a positive integer/);
    expect(() => new ImageLoader(samples, opts({ workers: -1 }))).toThrow(/workers must be an integer >= 0/);
  });
});

describe('gpunet show-batch', () => {
  it('writes a labelled grid PNG of n tiles', async () => {
    const out = join(root, 'grid.png');
    const log = console.log;
    console.log = () => {};
    try {
      expect(await showBatchCommand.run(['--data', root, '--augment', '--out', out, '--n', '6', '--size', '40', '--valid-pct', '0'])).toBe(0);
    } finally {
      console.log = log;
    }
    const meta = await sharp(out).metadata();
    // 3 x 2 tiles of 40 px, 6 px gaps, a 30 px label strip under each row
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 3 * 46 + 6, 2 * (40 + 30 + 6) + 6]);
    // the label strips hold dark text on white
    const { data, info } = await sharp(out).extract({ left: 6, top: 6 + 40, width: 40, height: 30 }).raw().toBuffer({ resolveWithObject: true });
    expect(info.channels).toBe(3);
    expect(Math.min(...data)).toBeLessThan(100);
  });
});
