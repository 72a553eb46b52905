// Image decoding and preprocessing: generated images of every awkward kind written with sharp into a
// temporary folder, geometry and resampling checked against a plain TypeScript reference of
// torchvision's eval transform (PIL's antialiased bilinear resize, then the center crop).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cropResizeSize, globToRegExp, ImageError, listImages, loadImage, type Preprocessing } from '../src/data/image.ts';
import { Rng } from '../src/tensor/index.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'gpunet-image-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const plain = (size: number, resize: 'crop' | 'fill' = 'fill'): Preprocessing => ({ size, mean: [0, 0, 0], std: [1, 1, 1], resize });

/** A w x h RGB image (HWC bytes) with smooth gradients plus seeded noise. */
function syntheticRgb(w: number, h: number, seed: number): Uint8Array {
  const rng = new Rng(seed);
  const px = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = 3 * (y * w + x);
      px[i] = Math.round((255 * x) / (w - 1));
      px[i + 1] = Math.round((255 * y) / (h - 1));
      px[i + 2] = Math.round(rng.uniform(0, 255));
    }
  }
  return px;
}

async function writeRaw(name: string, px: Uint8Array, w: number, h: number, channels: 1 | 2 | 3 | 4): Promise<string> {
  const file = join(dir, name);
  await sharp(Buffer.from(px), { raw: { width: w, height: h, channels } }).png().toFile(file);
  return file;
}

/** One pass of PIL's resample (ImagingResampleHorizontal/Vertical) with the bilinear (triangle)
 *  filter: when shrinking, the filter is stretched by the scale, averaging the whole footprint. */
function resample1d(src: Float64Array, n: number, stride: number, count: number, countStride: number, outN: number): Float64Array {
  const scale = n / outN;
  const filterScale = Math.max(scale, 1);
  const support = filterScale; // bilinear's support is 1
  const out = new Float64Array(outN * count);
  for (let o = 0; o < outN; o++) {
    const center = (o + 0.5) * scale;
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const hi = Math.min(Math.trunc(center + support + 0.5), n);
    const weights: number[] = [];
    let total = 0;
    for (let i = lo; i < hi; i++) {
      const w = Math.max(0, 1 - Math.abs((i - center + 0.5) / filterScale));
      weights.push(w);
      total += w;
    }
    for (let c = 0; c < count; c++) {
      let s = 0;
      weights.forEach((w, k) => (s += w * src[c * countStride + (lo + k) * stride]));
      out[c * outN + o] = s / total;
    }
  }
  return out;
}

/** Reference eval transform on HWC bytes: resize to rw x rh, crop size x size at (left, top),
 *  returned as CHW values in [0, 255]. */
function referenceTransform(px: Uint8Array, w: number, h: number, rw: number, rh: number, left: number, top: number, size: number): Float64Array {
  const out = new Float64Array(3 * size * size);
  for (let c = 0; c < 3; c++) {
    const plane = Float64Array.from({ length: w * h }, (_, i) => px[3 * i + c]);
    // rows: each of the h rows resized to rw columns -> [h, rw]
    const rows = resample1d(plane, w, 1, h, w, rw);
    // columns: each of the rw columns resized to rh rows -> stored [rw, rh]
    const cols = resample1d(rows, h, rw, rw, 1, rh);
    for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) out[c * size * size + y * size + x] = cols[(x + left) * rh + (y + top)];
  }
  return out;
}

/** max and mean |a*scale - b| per channel (CHW, 3 channels) */
function channelErrors(a: Float32Array, b: Float64Array, scale = 255): { max: number; mean: number }[] {
  const plane = a.length / 3;
  return [0, 1, 2].map((c) => {
    let max = 0;
    let sum = 0;
    for (let i = c * plane; i < (c + 1) * plane; i++) {
      const d = Math.abs(a[i] * scale - b[i]);
      max = Math.max(max, d);
      sum += d;
    }
    return { max, mean: sum / plane };
  });
}

/** The agreement with the reference: channels 0 and 1 are smooth gradients, where libvips' and
 *  PIL's filters agree within a level; channel 2 is pixel noise, which magnifies the small
 *  difference in their filter footprints (up to ~10 levels on single pixels, well under one on
 *  average). */
function expectCloseToReference(a: Float32Array, b: Float64Array): void {
  const [r, g, noise] = channelErrors(a, b);
  expect(r.max).toBeLessThan(1);
  expect(g.max).toBeLessThan(1);
  expect(noise.mean).toBeLessThan(0.6);
  expect(noise.max).toBeLessThan(12);
}

describe('preprocessing geometry', () => {
  it('crop sizes and offsets are torchvision Resize(256) + CenterCrop(224)', () => {
    // landscape 400x300: 341x256, left round(58.5) = 58 (Python rounds halves to even), top 16
    expect(cropResizeSize(400, 300, 224)).toEqual({ width: 341, height: 256, left: 58, top: 16 });
    // portrait 300x500: 256 x int(256*500/300) = 426, top round(101) = 101
    expect(cropResizeSize(300, 500, 224)).toEqual({ width: 256, height: 426, left: 16, top: 101 });
    // size 32 -> shorter side round(32/0.875) = 37; 50x40 -> 46x37, offsets round(7) = 7, round(2.5) = 2
    expect(cropResizeSize(50, 40, 32)).toEqual({ width: 46, height: 37, left: 7, top: 2 });
  });

  it('fill at the image size is exact, with mean/std normalisation per channel', async () => {
    const px = syntheticRgb(7, 5, 1);
    const file = await writeRaw('same.png', px, 7, 5, 3);
    // not square: fill to 7x7 would resize; check a square one exactly
    const sq = syntheticRgb(6, 6, 2);
    const sqFile = await writeRaw('square.png', sq, 6, 6, 3);
    const mean: [number, number, number] = [0.485, 0.456, 0.406];
    const std: [number, number, number] = [0.229, 0.224, 0.225];
    const x = await loadImage(sqFile, { size: 6, mean, std, resize: 'fill' });
    expect(x.length).toBe(3 * 36);
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < 36; i++) expect(x[c * 36 + i]).toBeCloseTo((sq[3 * i + c] / 255 - mean[c]) / std[c], 5);
    }
    expect((await loadImage(file, plain(5))).length).toBe(75);
  });

  it('fill and crop match the reference resize (antialiased bilinear) and crop window', async () => {
    const [w, h] = [150, 90];
    const px = syntheticRgb(w, h, 3);
    const file = await writeRaw('big.png', px, w, h, 3);
    const fill = await loadImage(file, plain(40, 'fill'));
    expectCloseToReference(fill, referenceTransform(px, w, h, 40, 40, 0, 0, 40));
    const r = cropResizeSize(w, h, 48); // shorter side 55: 91x55, crop 48 at (22, 4)
    expect(r).toEqual({ width: 91, height: 55, left: 22, top: 4 });
    const crop = await loadImage(file, plain(48, 'crop'));
    expectCloseToReference(crop, referenceTransform(px, w, h, r.width, r.height, r.left, r.top, 48));
    // a window one pixel off is clearly worse on the gradient channel
    expect(channelErrors(crop, referenceTransform(px, w, h, r.width, r.height, r.left + 1, r.top, 48))[0].max).toBeGreaterThan(2);
  });
});

describe('image formats', () => {
  it('grayscale becomes three equal channels', async () => {
    const g = Uint8Array.from({ length: 16 }, (_, i) => i * 16);
    const x = await loadImage(await writeRaw('gray.png', g, 4, 4, 1), plain(4));
    for (let i = 0; i < 16; i++) for (let c = 0; c < 3; c++) expect(x[c * 16 + i] * 255).toBeCloseTo(g[i], 3);
  });

  it('alpha is flattened onto white', async () => {
    // opaque red, transparent, half-transparent blue
    const px = Uint8Array.from([255, 0, 0, 255, 0, 255, 0, 0, 0, 0, 255, 128, 10, 20, 30, 255]);
    const x = await loadImage(await writeRaw('rgba.png', px, 2, 2, 4), plain(2));
    const pixel = (i: number) => [0, 1, 2].map((c) => Math.round(x[c * 4 + i] * 255));
    expect(pixel(0)).toEqual([255, 0, 0]);
    expect(pixel(1)).toEqual([255, 255, 255]);
    const a = 128 / 255;
    pixel(2).forEach((v, c) => expect(Math.abs(v - ([0, 0, 255][c] * a + 255 * (1 - a)))).toBeLessThanOrEqual(1));
    expect(pixel(3)).toEqual([10, 20, 30]);
  });

  it('16-bit PNG is read at 8 bits', async () => {
    const v8 = Uint8Array.from({ length: 12 }, (_, i) => 20 * i + 3);
    const v16 = Uint16Array.from(v8, (v) => v * 257);
    const file = join(dir, 'deep.png');
    await sharp(v16, { raw: { width: 2, height: 2, channels: 3 } }).toColourspace('rgb16').png().toFile(file);
    expect((await sharp(file).metadata()).depth).toBe('ushort');
    const x = await loadImage(file, plain(2));
    for (let i = 0; i < 4; i++) for (let c = 0; c < 3; c++) expect(Math.round(x[c * 4 + i] * 255)).toBe(v8[3 * i + c]);
  });

  it('CMYK JPEG is converted to RGB', async () => {
    const file = join(dir, 'cmyk.jpg');
    await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 220, g: 30, b: 40 } } }).toColourspace('cmyk').jpeg({ quality: 95 }).toFile(file);
    expect((await sharp(file).metadata()).space).toBe('cmyk');
    const x = await loadImage(file, plain(8));
    const mean = (c: number) => x.subarray(c * 64, (c + 1) * 64).reduce((a, b) => a + b, 0) / 64;
    // a colour-managed round trip through CMYK: close, not exact
    expect(Math.abs(mean(0) * 255 - 220)).toBeLessThan(20);
    expect(Math.abs(mean(1) * 255 - 30)).toBeLessThan(25);
    expect(Math.abs(mean(2) * 255 - 40)).toBeLessThan(25);
  });

  it('EXIF orientation is applied before resizing', async () => {
    // stored 16 wide x 8 high: left half black, right half white. Orientation 6 (rotate 90 degrees
    // clockwise to display): displayed 8 wide x 16 high, black on top.
    const px = new Uint8Array(16 * 8 * 3);
    for (let y = 0; y < 8; y++) for (let x = 8; x < 16; x++) px.fill(255, 3 * (y * 16 + x), 3 * (y * 16 + x) + 3);
    const file = join(dir, 'rotated.jpg');
    await sharp(Buffer.from(px), { raw: { width: 16, height: 8, channels: 3 } }).jpeg({ quality: 100 }).withMetadata({ orientation: 6 }).toFile(file);
    expect((await sharp(file).metadata()).orientation).toBe(6);
    const x = await loadImage(file, plain(8, 'fill')); // 8x16 -> 8x8: rows 0-3 black, 4-7 white
    const row = (y: number) => x.subarray(y * 8, y * 8 + 8).reduce((a, b) => a + b, 0) / 8;
    expect(row(0)).toBeLessThan(0.1);
    expect(row(7)).toBeGreaterThan(0.9);
    // 'crop' sees the portrait shape: shorter side 8 -> round(8/0.875) = 9, 9x18, center crop
    expect(cropResizeSize(8, 16, 8)).toEqual({ width: 9, height: 18, left: 0, top: 5 });
    expect((await loadImage(file, plain(8, 'crop'))).length).toBe(192);
  });

  it('an animated GIF gives its first frame', async () => {
    const frames = Buffer.alloc(4 * 6 * 3);
    frames.fill(255, 0, 4 * 3 * 3); // frame 1 white, frame 2 black
    const file = join(dir, 'anim.gif');
    await sharp(frames, { raw: { width: 4, height: 6, channels: 3, pageHeight: 3 } as never }).gif().toFile(file);
    expect((await sharp(file).metadata()).pages).toBe(2);
    const x = await loadImage(file, plain(3));
    expect(Math.min(...x)).toBeGreaterThan(0.99);
  });

  it('a file that is not an image is an ImageError naming it, in one line', async () => {
    const bad = join(dir, 'broken.jpg');
    writeFileSync(bad, Buffer.from('this is not a JPEG at all\n'.repeat(20)));
    const err = await loadImage(bad, plain(8)).catch((e) => e);
    expect(err).toBeInstanceOf(ImageError);
    expect(err.message).toMatch(new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot decode as an image \\(.+\\)$`));
    expect(err.message).not.toContain('\n');
    const missing = await loadImage(join(dir, 'nope.png'), plain(8)).catch((e) => e);
    expect(missing).toBeInstanceOf(ImageError);
    expect(missing.message.split('\n')).toHaveLength(1);
  });
});

describe('listImages', () => {
  it('expands files, folders (recursively, extensions in any case) and globs', async () => {
    const root = join(dir, 'tree');
    mkdirSync(join(root, 'a', 'deep'), { recursive: true });
    mkdirSync(join(root, 'b'), { recursive: true });
    mkdirSync(join(root, '.hidden'), { recursive: true });
    for (const f of ['a/one.JPG', 'a/deep/two.png', 'b/three.jpeg', 'b/notes.txt', '.hidden/x.png', 'b/.y.png', 'top.webp']) writeFileSync(join(root, f), '');
    expect(listImages([root])).toEqual([join(root, 'a/deep/two.png'), join(root, 'a/one.JPG'), join(root, 'b/three.jpeg'), join(root, 'top.webp')]);
    expect(listImages([`${root}/**/*.png`])).toEqual([join(root, 'a/deep/two.png')]);
    expect(listImages([`${root}/*/*`])).toEqual([join(root, 'a/one.JPG'), join(root, 'b/three.jpeg')]);
    expect(listImages([`${root}/b/thre?.jpeg`, join(root, 'b/three.jpeg'), join(root, 'b/notes.txt')])).toEqual([
      join(root, 'b/three.jpeg'),
      join(root, 'b/notes.txt'), // named explicitly: taken as given (decoding will tell)
    ]);
    expect(() => listImages([join(root, 'missing.jpg')])).toThrow(ImageError);
    expect(() => listImages([`${root}/*.gif`])).toThrow(/no image files match this pattern/);
    expect(() => listImages([join(root, '.hidden', 'nothing-here')])).toThrow(/no such file or folder/);
  });

  it('a link loop is followed once; a FIFO named like an image is an ImageError, not a read that blocks forever', async () => {
    const root = join(dir, 'loop');
    mkdirSync(join(root, 'a'), { recursive: true });
    writeFileSync(join(root, 'a', 'one.png'), '');
    symlinkSync('..', join(root, 'a', 'up'));
    symlinkSync('.', join(root, 'self'));
    expect(listImages([root])).toEqual([join(root, 'a/one.png')]);
    expect(listImages([`${root}/**/*.png`])).toEqual([join(root, 'a/one.png')]);
    const fifo = join(root, 'pipe.jpg');
    spawnSync('mkfifo', [fifo]);
    expect(listImages([fifo])).toEqual([fifo]);
    await expect(loadImage(fifo, { size: 8, mean: [0, 0, 0], std: [1, 1, 1], resize: 'fill' })).rejects.toThrow(new ImageError(fifo, 'not a regular file (a FIFO, socket, device or folder)'));
  });

  it('glob patterns', () => {
    expect(globToRegExp('a/**/*.jpg').test('a/x/y/z.jpg')).toBe(true);
    expect(globToRegExp('a/**/*.jpg').test('a/z.jpg')).toBe(true);
    expect(globToRegExp('a/*.jpg').test('a/x/z.jpg')).toBe(false);
    expect(globToRegExp('img[0-9].png').test('img7.png')).toBe(true);
    expect(globToRegExp('img[!0-9].png').test('img7.png')).toBe(false);
    expect(globToRegExp('a+b (1).png').test('a+b (1).png')).toBe(true);
  });
});
