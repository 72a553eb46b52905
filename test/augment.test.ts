// Augmentation: the affine pipeline against a plain float64 reference of its definition (Keras'
// order: flip, zoom, shear, rotation, shift, about the centre; bilinear; three fill modes), the
// random-resized crop window, colour jitter, normalisation, determinism, and the awkward file kinds.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { augmentImage, DEFAULT_AUGMENT, type AugmentOptions, type FillMode } from '../src/data/augment.ts';
import { ImageError, loadImage } from '../src/data/image.ts';
import { Rng } from '../src/tensor/random.ts';
import { torchRun } from './torch.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'gpunet-augment-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const RAW: [[number, number, number], [number, number, number]] = [
  [0, 0, 0],
  [1, 1, 1],
];
const HYMENOPTERA_ANT = join(import.meta.dirname, '..', '..', 'shared', 'data', 'hymenoptera_data', 'train', 'ants', '0013035.jpg');

/** A w x h PNG of seeded noise; returns its path and HWC bytes. */
async function noisePng(name: string, w: number, h: number, seed: number): Promise<{ file: string; px: Uint8Array }> {
  const rng = new Rng(seed);
  const px = Uint8Array.from({ length: w * h * 3 }, () => rng.int(256));
  const file = join(dir, name);
  await sharp(Buffer.from(px), { raw: { width: w, height: h, channels: 3 } }).png().toFile(file);
  return { file, px };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Reference: index of tap i in [0, n) under a fill mode ('constant' clamps: only points inside the
 *  image's area are sampled at all). */
function refTap(i: number, n: number, fill: FillMode): number {
  if (fill !== 'reflect') return Math.min(Math.max(i, 0), n - 1);
  // mirror with the edge pixel repeated (-1 -> 0, n -> n - 1), as often as needed
  while (i < 0 || i >= n) i = i < 0 ? -i - 1 : 2 * n - 1 - i;
  return i;
}

/**
 * Reference of the geometric augmentation without random-resized crop: the window is the centred
 * square of side s = min(w, h), stretched over size x size. An output pixel centre p (relative to the
 * output centre) samples the source at C + (s / size) (R(theta) Shear(phi) zoom Flip p + t), bilinearly.
 * The random draws, in the documented order: flip, rotation, zoom, shift x, shift y, shear, vertical flip.
 */
function referenceAffine(px: Uint8Array, w: number, h: number, size: number, aug: AugmentOptions, seed: number): Float64Array {
  const rng = new Rng(seed);
  const flip = aug.flip && rng.next() < 0.5 ? -1 : 1;
  const theta = aug.rotate ? (rng.uniform(-aug.rotate, aug.rotate) * Math.PI) / 180 : 0;
  const [zLo, zHi] = typeof aug.zoom === 'number' ? [1 - aug.zoom, 1 + aug.zoom] : (aug.zoom ?? [1, 1]);
  const zoom = zLo !== 1 || zHi !== 1 ? rng.uniform(zLo, zHi) : 1;
  const tx = aug.shift ? rng.uniform(-aug.shift, aug.shift) * size : 0;
  const ty = aug.shift ? rng.uniform(-aug.shift, aug.shift) * size : 0;
  const phi = aug.shear ? (rng.uniform(-aug.shear, aug.shear) * Math.PI) / 180 : 0;
  const flipV = aug.flipVertical && rng.next() < 0.5 ? -1 : 1;
  const mul = (a: number[][], b: number[][]) => a.map((row) => [0, 1].map((j) => row[0] * b[0][j] + row[1] * b[1][j]));
  const R = [
    [Math.cos(theta), -Math.sin(theta)],
    [Math.sin(theta), Math.cos(theta)],
  ];
  const Sh = [
    [1, -Math.sin(phi)],
    [0, Math.cos(phi)],
  ];
  const M = mul(mul(mul(R, Sh), [[zoom, 0], [0, zoom]]), [[flip, 0], [0, flipV]]);
  const s = Math.min(w, h);
  const out = new Float64Array(3 * size * size);
  for (let v = 0; v < size; v++) {
    for (let u = 0; u < size; u++) {
      const p = [u + 0.5 - size / 2, v + 0.5 - size / 2];
      const q = [M[0][0] * p[0] + M[0][1] * p[1] + tx, M[1][0] * p[0] + M[1][1] * p[1] + ty];
      const x = w / 2 + (s / size) * q[0] - 0.5; // relative to pixel centres
      const y = h / 2 + (s / size) * q[1] - 0.5;
      const x0 = Math.floor(x);
      const y0 = Math.floor(y);
      // 'constant': a point outside the image's area [0, w) x [0, h) is black; inside, edge taps clamp
      if (aug.fill === 'constant' && (x < -0.5 || x >= w - 0.5 || y < -0.5 || y >= h - 0.5)) continue;
      for (let c = 0; c < 3; c++) {
        let acc = 0;
        for (const [yy, wy] of [[y0, 1 - (y - y0)], [y0 + 1, y - y0]]) {
          for (const [xx, wx] of [[x0, 1 - (x - x0)], [x0 + 1, x - x0]]) {
            const ix = refTap(xx, w, aug.fill ?? 'reflect');
            const iy = refTap(yy, h, aug.fill ?? 'reflect');
            acc += wy * wx * px[3 * (iy * w + ix) + c];
          }
        }
        out[c * size * size + v * size + u] = acc / 255;
      }
    }
  }
  return out;
}

describe('augmentImage geometry', () => {
  it('no options: the image itself (a square image at its own size is not resampled)', async () => {
    const { file, px } = await noisePng('id.png', 12, 12, 1);
    const x = await augmentImage(file, 12, {}, ...RAW, new Rng(0));
    const expected = Float64Array.from({ length: 3 * 144 }, (_, i) => px[3 * (i % 144) + Math.floor(i / 144)] / 255);
    expect(maxAbsDiff(x, expected)).toBeLessThan(1e-6);
  });

  it('flip, rotation, zoom, shift and shear match the reference in every fill mode', async () => {
    const { file, px } = await noisePng('affine.png', 13, 11, 2);
    const cases: AugmentOptions[] = [
      { shift: 0.4 },
      { flip: true, zoom: 0.5 },
      { rotate: 45, shear: 20 },
      { flip: true, rotate: 30, zoom: 0.3, shift: 0.2, shear: 10 },
      { flipVertical: true, zoom: [0.7, 1.1] },
      { flip: true, flipVertical: true, rotate: 15, zoom: [1.2, 1.3], shear: 5 },
    ];
    for (const base of cases) {
      for (const fill of ['constant', 'nearest', 'reflect'] as const) {
        for (const seed of [3, 4]) {
          const aug = { ...base, fill };
          const x = await augmentImage(file, 9, aug, ...RAW, new Rng(seed));
          expect(maxAbsDiff(x, referenceAffine(px, 13, 11, 9, aug, seed)), JSON.stringify({ aug, seed })).toBeLessThan(1e-5);
        }
      }
    }
  });

  it('flip gives the image or its mirror, both over a few seeds', async () => {
    const { file } = await noisePng('flip.png', 8, 8, 3);
    const plain = await augmentImage(file, 8, {}, ...RAW, new Rng(0));
    const mirror = plain.map((_, i) => plain[i - (i % 8) + 7 - (i % 8)]);
    const seen = new Set<string>();
    for (let seed = 0; seed < 8; seed++) {
      const x = await augmentImage(file, 8, { flip: true }, ...RAW, new Rng(seed));
      const kind = maxAbsDiff(x, plain) < 1e-6 ? 'plain' : maxAbsDiff(x, mirror) < 1e-6 ? 'mirror' : 'other';
      seen.add(kind);
    }
    expect([...seen].sort()).toEqual(['mirror', 'plain']);
    // vertical: the image or its upside-down copy
    const upsideDown = plain.map((_, i) => plain[i - (i % 64) + 8 * (7 - Math.floor((i % 64) / 8)) + (i % 8)]);
    const seenV = new Set<string>();
    for (let seed = 0; seed < 8; seed++) {
      const x = await augmentImage(file, 8, { flipVertical: true }, ...RAW, new Rng(seed));
      seenV.add(maxAbsDiff(x, plain) < 1e-6 ? 'plain' : maxAbsDiff(x, upsideDown) < 1e-6 ? 'upside down' : 'other');
    }
    expect([...seenV].sort()).toEqual(['plain', 'upside down']);
  });

  it('random-resized crop: scale 1 and ratio 1 is the whole image; windows stay inside it', async () => {
    const { file, px } = await noisePng('rrc.png', 10, 10, 4);
    const whole = await augmentImage(file, 10, { randomResizedCrop: { scale: [1, 1], ratio: [1, 1] } }, ...RAW, new Rng(5));
    expect(maxAbsDiff(whole, Float64Array.from({ length: 300 }, (_, i) => px[3 * (i % 100) + Math.floor(i / 100)] / 255))).toBeLessThan(1e-6);
    // a constant image stays constant under any window with 'constant' fill: no sample falls outside
    const flat = join(dir, 'flat.png');
    await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 200, g: 100, b: 50 } } }).png().toFile(flat);
    for (let seed = 0; seed < 10; seed++) {
      const x = await augmentImage(flat, 16, { randomResizedCrop: { scale: [0.08, 1] }, fill: 'constant' }, ...RAW, new Rng(seed));
      for (let c = 0; c < 3; c++) {
        const plane = x.subarray(c * 256, (c + 1) * 256);
        expect(maxAbsDiff(plane, new Float32Array(256).fill([200, 100, 50][c] / 255))).toBeLessThan(1e-5);
      }
    }
  });

  it('rotation leaves a centred disc (nearly) alone and moves an off-centre square', async () => {
    const svg = (shape: string) => Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32"><rect width="32" height="32" fill="black"/>${shape}</svg>`);
    const disc = join(dir, 'disc.png');
    const square = join(dir, 'square.png');
    await sharp(svg('<circle cx="16" cy="16" r="10" fill="white"/>')).png().toFile(disc);
    await sharp(svg('<rect x="2" y="2" width="10" height="10" fill="white"/>')).png().toFile(square);
    const meanDiff = async (file: string) => {
      const a = await augmentImage(file, 32, {}, ...RAW, new Rng(0));
      const b = await augmentImage(file, 32, { rotate: 90, fill: 'constant' }, ...RAW, new Rng(1)); // Rng(1) draws about 63 degrees
      return a.reduce((s, v, i) => s + Math.abs(v - b[i]), 0) / a.length;
    };
    expect(await meanDiff(disc)).toBeLessThan(0.03);
    expect(await meanDiff(square)).toBeGreaterThan(0.1);
  });
});

describe('augmentImage colour and normalisation', () => {
  it('brightness scales, contrast and saturation leave a flat grey alone', async () => {
    const grey = join(dir, 'grey.png');
    await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 100, g: 100, b: 100 } } }).png().toFile(grey);
    const b = new Rng(7).uniform(0.5, 1.5); // the only draw
    const x = await augmentImage(grey, 8, { colorJitter: { brightness: 0.5 } }, ...RAW, new Rng(7));
    expect(maxAbsDiff(x, new Float32Array(192).fill((100 / 255) * b))).toBeLessThan(1e-6);
    const y = await augmentImage(grey, 8, { colorJitter: { contrast: 0.5, saturation: 0.5 } }, ...RAW, new Rng(7));
    expect(maxAbsDiff(y, new Float32Array(192).fill(100 / 255))).toBeLessThan(1e-6);
  });

  it('saturation near 0 turns a colour image grey; values stay in [0, 1]', async () => {
    const { file } = await noisePng('sat.png', 8, 8, 8);
    let seed = 0;
    while (new Rng(seed).uniform(0, 2) > 0.02) seed++; // saturation is the only draw
    const x = await augmentImage(file, 8, { colorJitter: { saturation: 1 } }, ...RAW, new Rng(seed));
    for (let i = 0; i < 64; i++) {
      expect(Math.abs(x[i] - x[64 + i]) + Math.abs(x[64 + i] - x[128 + i])).toBeLessThan(0.04);
    }
    const y = await augmentImage(file, 8, { colorJitter: { saturation: 1, brightness: 0.9, contrast: 0.9 } }, ...RAW, new Rng(9));
    expect(Math.min(...y)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...y)).toBeLessThanOrEqual(1);
  });

  it("hue turns the colour wheel as torchvision's adjust_hue does", async () => {
    const { file } = await noisePng('hue.png', 7, 5, 11);
    const plain = await augmentImage(file, 5, {}, ...RAW, new Rng(0));
    const seeds = [1, 2, 3];
    const shifts = seeds.map((seed) => new Rng(seed).uniform(-0.4, 0.4)); // hue is the only draw
    const ours = await Promise.all(seeds.map((seed) => augmentImage(file, 5, { colorJitter: { hue: 0.4 } }, ...RAW, new Rng(seed))));
    const theirs = await torchRun(
      shifts.map((h) => ({ inputs: { x: { shape: [3, 5, 5], data: plain } }, prelude: 'import torchvision.transforms.functional as TF', expr: `TF.adjust_hue(x, ${h})`, dtype: 'float32' as const })),
    );
    ours.forEach((x, i) => expect(maxAbsDiff(x, theirs[i].out), `shift ${shifts[i]}`).toBeLessThan(1e-5));
    expect(maxAbsDiff(ours[0], plain)).toBeGreaterThan(0.05);
  });

  it('random erasing sets one rectangle of 2-33% of the image to 0 (the mean colour), with its probability', async () => {
    const flat = join(dir, 'erase.png');
    await sharp({ create: { width: 20, height: 20, channels: 3, background: { r: 200, g: 100, b: 50 } } }).png().toFile(flat);
    const mean: [number, number, number] = [0.1, 0.2, 0.3];
    let erased = 0;
    for (let seed = 0; seed < 20; seed++) {
      const x = await augmentImage(flat, 20, { randomErasing: 0.5 }, mean, [1, 1, 1], new Rng(seed));
      const zeros = [...x.subarray(0, 400)].map((v, i) => (v === 0 ? i : -1)).filter((i) => i >= 0);
      for (const c of [1, 2]) expect(x.subarray(c * 400, (c + 1) * 400).filter((v) => v === 0).length).toBe(zeros.length);
      if (zeros.length === 0) continue;
      erased++;
      // one axis-aligned rectangle: its bounding box is full
      const rows = zeros.map((i) => Math.floor(i / 20));
      const cols = zeros.map((i) => i % 20);
      const box = (Math.max(...rows) - Math.min(...rows) + 1) * (Math.max(...cols) - Math.min(...cols) + 1);
      expect(box).toBe(zeros.length);
      expect(zeros.length / 400).toBeGreaterThanOrEqual(0.015);
      expect(zeros.length / 400).toBeLessThanOrEqual(0.35);
    }
    expect(erased).toBeGreaterThan(4);
    expect(erased).toBeLessThan(16);
  });

  it('(x - mean) / std per channel', async () => {
    const { file, px } = await noisePng('norm.png', 6, 6, 10);
    const mean: [number, number, number] = [0.5, 0.4, 0.3];
    const std: [number, number, number] = [0.2, 0.3, 0.4];
    const x = await augmentImage(file, 6, {}, mean, std, new Rng(0));
    const expected = Float64Array.from({ length: 108 }, (_, i) => {
      const c = Math.floor(i / 36);
      return (px[3 * (i % 36) + c] / 255 - mean[c]) / std[c];
    });
    expect(maxAbsDiff(x, expected)).toBeLessThan(1e-5);
  });
});

describe('augmentImage determinism and files', () => {
  const imagenet: [[number, number, number], [number, number, number]] = [
    [0.485, 0.456, 0.406],
    [0.229, 0.224, 0.225],
  ];

  it('the same seed gives the same tensor, another seed another', async () => {
    const aug = { ...DEFAULT_AUGMENT, shift: 0.1, shear: 5, colorJitter: { brightness: 0.2, contrast: 0.2, saturation: 0.2 } };
    const a = await augmentImage(HYMENOPTERA_ANT, 64, aug, ...imagenet, new Rng(1));
    const b = await augmentImage(HYMENOPTERA_ANT, 64, aug, ...imagenet, new Rng(1));
    const c = await augmentImage(HYMENOPTERA_ANT, 64, aug, ...imagenet, new Rng(2));
    expect(a.length).toBe(3 * 64 * 64);
    expect(a.every(Number.isFinite)).toBe(true);
    expect(maxAbsDiff(a, b)).toBe(0);
    expect(maxAbsDiff(a, c)).toBeGreaterThan(0.5);
  });

  it('validation (null): deterministic, the seed unused, equal to predict\'s crop preprocessing', async () => {
    const a = await augmentImage(HYMENOPTERA_ANT, 64, null, ...imagenet, new Rng(1));
    const b = await augmentImage(HYMENOPTERA_ANT, 64, null, ...imagenet, new Rng(2));
    expect(maxAbsDiff(a, b)).toBe(0);
    const ref = await loadImage(HYMENOPTERA_ANT, { size: 64, mean: imagenet[0], std: imagenet[1], resize: 'crop' });
    expect(maxAbsDiff(a, ref)).toBe(0);
  });

  it('grayscale, CMYK, 16-bit, alpha, GIF and EXIF-rotated files decode to RGB', async () => {
    const colour = { r: 200, g: 60, b: 20 };
    const rgb = () => sharp({ create: { width: 16, height: 12, channels: 3, background: colour } });
    const files: Record<string, string> = {};
    for (const k of ['gray.png', 'cmyk.jpg', 'deep.png', 'alpha.png', 'anim.gif']) files[k] = join(dir, k);
    await rgb().toColourspace('b-w').png().toFile(files['gray.png']);
    await rgb().jpeg({ quality: 100 }).toColourspace('cmyk').toFile(files['cmyk.jpg']);
    await rgb().toColourspace('rgb16').png().toFile(files['deep.png']);
    await sharp({ create: { width: 16, height: 12, channels: 4, background: { ...colour, alpha: 0.5 } } }).png().toFile(files['alpha.png']);
    await rgb().gif().toFile(files['anim.gif']);
    const meanRgb = async (file: string) => {
      const x = await augmentImage(file, 8, { ...DEFAULT_AUGMENT, colorJitter: undefined }, ...RAW, new Rng(3));
      return [0, 1, 2].map((c) => (255 * x.subarray(c * 64, (c + 1) * 64).reduce((s, v) => s + v, 0)) / 64);
    };
    const [gr, gg, gb] = await meanRgb(files['gray.png']);
    expect(Math.abs(gr - gg) + Math.abs(gg - gb)).toBeLessThan(1e-3);
    for (const k of ['cmyk.jpg', 'deep.png', 'anim.gif']) {
      const m = await meanRgb(files[k]);
      expect(maxAbsDiff(m, [200, 60, 20]), k).toBeLessThan(k === 'cmyk.jpg' ? 12 : 1);
    }
    // half-transparent over white
    expect(maxAbsDiff(await meanRgb(files['alpha.png']), [227.5, 157.5, 137.5])).toBeLessThan(1);

    // EXIF orientation 6 (turn 90 degrees clockwise to display): the stored left half (red) shows on top
    const halves = Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="16" height="8"><rect width="8" height="8" fill="red"/><rect x="8" width="8" height="8" fill="blue"/></svg>`);
    const rotated = join(dir, 'rotated.jpg');
    await sharp(halves).jpeg({ quality: 100 }).withMetadata({ orientation: 6 }).toFile(rotated);
    const x = await augmentImage(rotated, 8, {}, ...RAW, new Rng(0)); // the centre 8x8 of the 8x16 shown image
    const at = (c: number, row: number) => x.subarray(c * 64 + row * 8, c * 64 + row * 8 + 8).reduce((s, v) => s + v, 0) / 8;
    expect(at(0, 0)).toBeGreaterThan(0.8); // top: red
    expect(at(2, 0)).toBeLessThan(0.2);
    expect(at(0, 7)).toBeLessThan(0.2); // bottom: blue
    expect(at(2, 7)).toBeGreaterThan(0.8);
  });

  it('a file that is not an image is an ImageError naming it', async () => {
    const bad = join(dir, 'bad.jpg');
    writeFileSync(bad, 'not a jpeg');
    for (const aug of [DEFAULT_AUGMENT, null]) {
      const e = await augmentImage(bad, 8, aug, ...RAW, new Rng(0)).catch((err: unknown) => err);
      expect(e).toBeInstanceOf(ImageError);
      expect((e as Error).message).toMatch(new RegExp(`^${bad}: cannot decode as an image`));
    }
  });
});
