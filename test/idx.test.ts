// The IDX reader and the Fashion-MNIST loader: Debian's files, files written here (gzipped and
// plain), and broken ones, each refused in one line naming the file.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { FASHION_MNIST_DIR, FASHION_MNIST_NORMALIZATION, loadFashionMnist, readIdx } from '../src/data/idx.ts';

const dir = mkdtempSync(join(tmpdir(), 'gpunet-idx-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** An IDX file of unsigned bytes with the given dimensions and values. */
function idx(dims: number[], values: number[]): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header[2] = 0x08;
  header[3] = dims.length;
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, Buffer.from(values)]);
}

describe('readIdx', () => {
  it('reads plain and gzipped files', () => {
    writeFileSync(join(dir, 'a'), idx([2, 3], [1, 2, 3, 4, 5, 6]));
    writeFileSync(join(dir, 'a.gz'), gzipSync(idx([2, 3], [1, 2, 3, 4, 5, 6])));
    for (const f of ['a', 'a.gz']) {
      const { dims, data } = readIdx(join(dir, f));
      expect(dims).toEqual([2, 3]);
      expect(Array.from(data)).toEqual([1, 2, 3, 4, 5, 6]);
    }
  });

  it('refuses missing, truncated, foreign and corrupt files, naming them', () => {
    const at = (name: string, bytes: Buffer) => (writeFileSync(join(dir, name), bytes), join(dir, name));
    expect(() => readIdx(join(dir, 'none'))).toThrow(`${join(dir, 'none')}: no such file`);
    expect(() => readIdx(at('short', idx([2, 3], [1, 2, 3])))).toThrow(/short: holds 3 values where its header \[2, 3\] needs 6: the file is truncated/);
    expect(() => readIdx(at('png', Buffer.from('\x89PNG\r\n\x1a\n....')))).toThrow(/png: not an IDX file/);
    const floats = idx([1], [0, 0, 0, 0]);
    floats[2] = 0x0d;
    expect(() => readIdx(at('floats', floats))).toThrow(/floats: IDX type 0xd is not unsigned bytes/);
    expect(() => readIdx(at('bad.gz', gzipSync(idx([4], [1, 2, 3, 4])).subarray(0, 12)))).toThrow(/bad\.gz: not a valid gzip file/);
  });
});

describe('loadFashionMnist', () => {
  it("reads Debian's files: 60,000 + 10,000 images of 28x28, normalised, labels 0..9", () => {
    const test = loadFashionMnist('test');
    expect(test.labels).toHaveLength(10_000);
    expect(test.images).toHaveLength(10_000 * 28 * 28);
    expect(test.size).toBe(28);
    expect(test.classes[9]).toBe('Ankle boot');
    expect(new Set(test.labels).size).toBe(10);
    // the set's own statistics: the normalised pixels have mean ~0 and std ~1
    let s = 0;
    let sq = 0;
    for (const v of test.images) (s += v), (sq += v * v);
    const mean = s / test.images.length;
    expect(Math.abs(mean)).toBeLessThan(0.05);
    expect(Math.abs(Math.sqrt(sq / test.images.length - mean * mean) - 1)).toBeLessThan(0.05);
    const train = loadFashionMnist('train', { limit: 100 });
    expect(train.labels).toHaveLength(100);
    expect(train.images[0]).toBeCloseTo(-FASHION_MNIST_NORMALIZATION.mean / FASHION_MNIST_NORMALIZATION.std, 5); // a black corner pixel
  });

  it('a folder without the files says what to install', () => {
    expect(() => loadFashionMnist('train', { dir })).toThrow(`${dir}: no Fashion-MNIST train images (train-images-idx3-ubyte.gz): apt-get install dataset-fashion-mnist`);
    expect(FASHION_MNIST_DIR).toBe('/usr/share/datasets/fashion-mnist');
  });
});
