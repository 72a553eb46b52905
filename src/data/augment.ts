// Training-time image augmentation: one image file in, one normalised [3, size, size] tensor out.
//
// sharp decodes and presizes (the shorter side resized once to `presize`, larger than the training
// size, fastai's presizing), giving RGB bytes whatever the file stored (EXIF orientation applied,
// grayscale/CMYK to sRGB, 16-bit to 8, alpha flattened onto white, a GIF's first frame). Every
// geometric transform — random-resized crop, flip, rotation, zoom, shift, shear — is then composed
// into one affine map from output pixels to source pixels and applied in a single bilinear pass, so
// the image is interpolated once (as fastai does on the GPU), with a fill mode for pixels that fall
// outside the source ('constant' black as Keras' cval=0, 'nearest' edge, 'reflect' mirror). Then
// optional colour jitter (brightness, contrast, saturation, hue, torchvision's definitions, in that
// order), (x - mean) / std, and random erasing (torchvision's RandomErasing: a rectangle of the
// normalised image set to 0, the mean colour).
//
// All randomness comes from the Rng passed in, drawn in a fixed order, so a seed gives the same
// tensor wherever it is computed (main thread or any worker).
// The validation transform (aug = null) is `gpunet predict`'s default preprocessing (loadImage
// 'crop': shorter side to size/0.875, center crop), so valid accuracy during training is the
// accuracy the exported model gets.
import sharp from 'sharp';
import type { Rng } from '../tensor/random.ts';
import { ImageError, loadImage } from './image.ts';

export type FillMode = 'constant' | 'nearest' | 'reflect';

export interface AugmentOptions {
  /** shorter side (px) the image is resized to before augmenting (default 1.5 x size) */
  presize?: number;
  /** torchvision's RandomResizedCrop: area fraction and aspect-ratio ranges (ratio default [3/4, 4/3]);
   *  without it the base window is the center square */
  randomResizedCrop?: { scale: [number, number]; ratio?: [number, number] };
  /** random horizontal flip with probability 1/2 */
  flip?: boolean;
  /** random vertical flip with probability 1/2 */
  flipVertical?: boolean;
  /** rotation uniform in [-rotate, rotate] degrees */
  rotate?: number;
  /** scale of the sampled window uniform in [1 - zoom, 1 + zoom], or in [lo, hi] (Keras' zoom_range:
   *  > 1 zooms out) */
  zoom?: number | [number, number];
  /** translation uniform in [-shift, shift] x size, per axis */
  shift?: number;
  /** shear angle uniform in [-shear, shear] degrees */
  shear?: number;
  /** pixels sampled outside the image (default 'reflect') */
  fill?: FillMode;
  /** factors uniform in [1 - v, 1 + v]; hue: a shift uniform in [-hue, hue] of the colour wheel (<= 0.5) */
  colorJitter?: { brightness?: number; contrast?: number; saturation?: number; hue?: number };
  /** probability of erasing a random rectangle (2-33% of the area, aspect 0.3-3.3) */
  randomErasing?: number;
}

/** fastai's aug_transforms defaults, roughly: random-resized crop from 35%, flips, 10 degrees of
 *  rotation, 10% zoom, 20% lighting; reflected borders. */
export const DEFAULT_AUGMENT: AugmentOptions = {
  randomResizedCrop: { scale: [0.35, 1], ratio: [3 / 4, 4 / 3] },
  flip: true,
  rotate: 10,
  zoom: 0.1,
  fill: 'reflect',
  colorJitter: { brightness: 0.2, contrast: 0.2 },
};

/** A decoded image: HWC RGB bytes. */
interface Rgb {
  data: Uint8Array;
  width: number;
  height: number;
}

function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e).split('\n')[0].trim();
}

/** Decodes `path` to RGB bytes with the shorter side at most `presize`. */
async function decodePresized(path: string, presize: number): Promise<Rgb> {
  try {
    const { data, info } = await sharp(path, { failOn: 'error', pages: 1 })
      .rotate()
      .resize({ width: presize, height: presize, fit: 'outside', withoutEnlargement: true })
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
    return { data, width: info.width, height: info.height };
  } catch (e) {
    throw new ImageError(path, `cannot decode as an image (${firstLine(e)})`);
  }
}

/** torchvision's RandomResizedCrop.get_params: a window of area fraction in `scale` and aspect
 *  ratio log-uniform in `ratio`, 10 tries, else the largest center window within the ratio range. */
function randomResizedWindow(w: number, h: number, scale: [number, number], ratio: [number, number], rng: Rng) {
  const area = w * h;
  const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])];
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * rng.uniform(scale[0], scale[1]);
    const aspect = Math.exp(rng.uniform(logRatio[0], logRatio[1]));
    const cw = Math.round(Math.sqrt(target * aspect));
    const ch = Math.round(Math.sqrt(target / aspect));
    if (cw > 0 && ch > 0 && cw <= w && ch <= h) {
      const top = rng.int(h - ch + 1);
      const left = rng.int(w - cw + 1);
      return { left, top, width: cw, height: ch };
    }
  }
  const inRatio = w / h;
  let cw = w;
  let ch = h;
  if (inRatio < ratio[0]) ch = Math.round(w / ratio[0]);
  else if (inRatio > ratio[1]) cw = Math.round(h * ratio[1]);
  return { left: (w - cw) / 2, top: (h - ch) / 2, width: cw, height: ch };
}

/** Index of tap `i` in [0, n) under the fill mode ('constant' clamps: see warpAffine). */
function tap(i: number, n: number, fill: FillMode): number {
  if (i >= 0 && i < n) return i;
  if (fill !== 'reflect') return i < 0 ? 0 : n - 1;
  // mirror about the edges (d c b a | a b c d | d c b a), period 2n
  const m = ((i % (2 * n)) + 2 * n) % (2 * n);
  return m < n ? m : 2 * n - 1 - m;
}

/**
 * Samples src at the affine map p -> (ax*u + bx*v + cx, ay*u + by*v + cy) of output pixel centres
 * (u, v) (source coordinates in pixel units, pixel i covering [i, i+1)), bilinearly.
 * 'constant' fill: a point outside the image's area is black (Keras' cval 0) and a point inside it
 * is interpolated from clamped taps, so an upsampled crop has no dark rim.
 * Returns HWC values in [0, 1].
 */
function warpAffine(src: Rgb, size: number, m: number[], fill: FillMode): Float32Array {
  const [ax, bx, cx, ay, by, cy] = m;
  const { data, width: w, height: h } = src;
  const out = new Float32Array(size * size * 3);
  const constant = fill === 'constant';
  const k = 1 / 255;
  for (let v = 0; v < size; v++) {
    for (let u = 0; u < size; u++) {
      // sample position relative to pixel centres
      const fx = ax * (u + 0.5) + bx * (v + 0.5) + cx - 0.5;
      const fy = ay * (u + 0.5) + by * (v + 0.5) + cy - 0.5;
      if (constant && (fx < -0.5 || fx >= w - 0.5 || fy < -0.5 || fy >= h - 0.5)) continue;
      const x0 = Math.floor(fx);
      const y0 = Math.floor(fy);
      const wx = fx - x0;
      const wy = fy - y0;
      // taps: the common case inside the image without the fill-mode lookup
      const inside = x0 >= 0 && x0 + 1 < w && y0 >= 0 && y0 + 1 < h;
      const xa = inside ? x0 : tap(x0, w, fill);
      const xb = inside ? x0 + 1 : tap(x0 + 1, w, fill);
      const r0 = (inside ? y0 : tap(y0, h, fill)) * w;
      const r1 = (inside ? y0 + 1 : tap(y0 + 1, h, fill)) * w;
      const i00 = 3 * (r0 + xa);
      const i01 = 3 * (r0 + xb);
      const i10 = 3 * (r1 + xa);
      const i11 = 3 * (r1 + xb);
      const w00 = (1 - wx) * (1 - wy) * k;
      const w01 = wx * (1 - wy) * k;
      const w10 = (1 - wx) * wy * k;
      const w11 = wx * wy * k;
      const o = 3 * (v * size + u);
      out[o] = w00 * data[i00] + w01 * data[i01] + w10 * data[i10] + w11 * data[i11];
      out[o + 1] = w00 * data[i00 + 1] + w01 * data[i01 + 1] + w10 * data[i10 + 1] + w11 * data[i11 + 1];
      out[o + 2] = w00 * data[i00 + 2] + w01 * data[i01 + 2] + w10 * data[i10 + 2] + w11 * data[i11 + 2];
    }
  }
  return out;
}

/**
 * The affine map from output pixels to source pixels for one random draw. The window (random-resized
 * crop, else the center square) is stretched over the output; rotation, shear, zoom, shift and flip
 * act in output pixels about the centre before that stretch, so they do not skew with the window.
 */
function sampleAffine(w: number, h: number, size: number, aug: AugmentOptions, rng: Rng): number[] {
  const rrc = aug.randomResizedCrop;
  const win = rrc
    ? randomResizedWindow(w, h, rrc.scale, rrc.ratio ?? [3 / 4, 4 / 3], rng)
    : { left: (w - Math.min(w, h)) / 2, top: (h - Math.min(w, h)) / 2, width: Math.min(w, h), height: Math.min(w, h) };
  const flip = aug.flip && rng.next() < 0.5 ? -1 : 1;
  const theta = ((aug.rotate ? rng.uniform(-aug.rotate, aug.rotate) : 0) * Math.PI) / 180;
  const [zoomLo, zoomHi] = typeof aug.zoom === 'number' ? [1 - aug.zoom, 1 + aug.zoom] : (aug.zoom ?? [1, 1]);
  const zoom = zoomLo !== 1 || zoomHi !== 1 ? rng.uniform(zoomLo, zoomHi) : 1;
  const tx = aug.shift ? rng.uniform(-aug.shift, aug.shift) * size : 0;
  const ty = aug.shift ? rng.uniform(-aug.shift, aug.shift) * size : 0;
  const phi = ((aug.shear ? rng.uniform(-aug.shear, aug.shear) : 0) * Math.PI) / 180;
  const flipV = aug.flipVertical && rng.next() < 0.5 ? -1 : 1;
  // q = R(theta) . Shear(phi) . zoom . Flip . p  (p: output pixel relative to the centre), Keras' order
  const cos = Math.cos(theta);
  const sin = Math.sin(theta);
  // Shear(phi) = [[1, -sin phi], [0, cos phi]]; Flip = diag(flip, flipV)
  const s01 = -Math.sin(phi);
  const s11 = Math.cos(phi);
  const m00 = cos * zoom * flip;
  const m01 = (cos * s01 - sin * s11) * zoom * flipV;
  const m10 = sin * zoom * flip;
  const m11 = (sin * s01 + cos * s11) * zoom * flipV;
  // source = centre + S . (q + t), S = window size / output size per axis; p = (u - size/2, v - size/2)
  const sx = win.width / size;
  const sy = win.height / size;
  const cxs = win.left + win.width / 2;
  const cys = win.top + win.height / 2;
  const half = size / 2;
  return [
    sx * m00,
    sx * m01,
    cxs + sx * (tx - m00 * half - m01 * half),
    sy * m10,
    sy * m11,
    cys + sy * (ty - m10 * half - m11 * half),
  ];
}

/** Colour jitter factors (1: unchanged; hue 0), drawn in the order brightness, contrast, saturation, hue. */
function jitterFactors(jitter: AugmentOptions['colorJitter'], rng: Rng): [number, number, number, number] {
  const factor = (v: number | undefined) => (v ? rng.uniform(Math.max(0, 1 - v), 1 + v) : 1);
  if (!jitter) return [1, 1, 1, 0];
  return [factor(jitter.brightness), factor(jitter.contrast), factor(jitter.saturation), jitter.hue ? rng.uniform(-jitter.hue, jitter.hue) : 0];
}

/** torchvision's adjust_hue on one pixel: to HSV, the hue turned by `shift` (a fraction of the wheel), back. */
function shiftHue(r: number, g: number, b: number, shift: number): [number, number, number] {
  const max = Math.max(r, g, b);
  const min = Math.min(r, g, b);
  const chroma = max - min;
  if (chroma === 0) return [r, g, b]; // grey has no hue
  let h = max === r ? ((g - b) / chroma) % 6 : max === g ? (b - r) / chroma + 2 : (r - g) / chroma + 4;
  h = (((h / 6 + shift) % 1) + 1) % 1;
  const s = chroma / max;
  const i = Math.floor(h * 6);
  const f = h * 6 - i;
  const [p, q, t] = [max * (1 - s), max * (1 - s * f), max * (1 - s * (1 - f))];
  return ([[max, t, p], [q, max, p], [p, max, t], [p, q, max], [t, p, max], [max, p, q]] as const)[i % 6] as [number, number, number];
}

/** torchvision's RandomErasing(p, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0) on a normalised CHW
 *  image: with probability p, a rectangle set to 0 (the mean colour); 10 tries to fit one. */
function randomErase(x: Float32Array, size: number, p: number, rng: Rng): void {
  if (!(rng.next() < p)) return;
  const logRatio = [Math.log(0.3), Math.log(3.3)];
  for (let attempt = 0; attempt < 10; attempt++) {
    const area = size * size * rng.uniform(0.02, 0.33);
    const aspect = Math.exp(rng.uniform(logRatio[0], logRatio[1]));
    const h = Math.round(Math.sqrt(area * aspect));
    const w = Math.round(Math.sqrt(area / aspect));
    if (!(h < size && w < size && h > 0 && w > 0)) continue;
    const top = rng.int(size - h + 1);
    const left = rng.int(size - w + 1);
    const plane = size * size;
    for (let c = 0; c < 3; c++) for (let y = top; y < top + h; y++) x.fill(0, c * plane + y * size + left, c * plane + y * size + left + w);
    return;
  }
}

const clamp01 = (v: number) => (v < 0 ? 0 : v > 1 ? 1 : v);

/**
 * HWC values in [0, 1] -> normalised CHW, with torchvision's colour adjustments on the way, each
 * clamped to [0, 1]: brightness (x * b), contrast (blend with the mean grey of the image, m + c (x - m)),
 * saturation (blend with the pixel's grey, g + s (x - g)); grey = 0.299 r + 0.587 g + 0.114 b.
 */
function toNormalisedChw(hwc: Float32Array, [b, c, s, hue]: [number, number, number, number], mean: readonly number[], std: readonly number[]): Float32Array {
  const plane = hwc.length / 3;
  let m = 0; // mean grey after brightness, for contrast
  if (c !== 1) {
    for (let i = 0; i < hwc.length; i += 3) m += 0.299 * clamp01(b * hwc[i]) + 0.587 * clamp01(b * hwc[i + 1]) + 0.114 * clamp01(b * hwc[i + 2]);
    m /= plane;
  }
  const x = new Float32Array(3 * plane);
  const [s0, s1, s2] = [1 / std[0], 1 / std[1], 1 / std[2]];
  const [t0, t1, t2] = [mean[0] / std[0], mean[1] / std[1], mean[2] / std[2]];
  const jitter = b !== 1 || c !== 1 || s !== 1 || hue !== 0;
  for (let p = 0; p < plane; p++) {
    let r = hwc[3 * p];
    let g = hwc[3 * p + 1];
    let bl = hwc[3 * p + 2];
    if (jitter) {
      r = clamp01(m + c * (clamp01(b * r) - m));
      g = clamp01(m + c * (clamp01(b * g) - m));
      bl = clamp01(m + c * (clamp01(b * bl) - m));
      if (s !== 1) {
        const grey = 0.299 * r + 0.587 * g + 0.114 * bl;
        r = clamp01(grey + s * (r - grey));
        g = clamp01(grey + s * (g - grey));
        bl = clamp01(grey + s * (bl - grey));
      }
      if (hue !== 0) [r, g, bl] = shiftHue(r, g, bl, hue);
    }
    x[p] = r * s0 - t0;
    x[plane + p] = g * s1 - t1;
    x[2 * plane + p] = bl * s2 - t2;
  }
  return x;
}

/**
 * `path` decoded, augmented with `aug` (null: the validation transform) and normalised, as a
 * [3, size, size] (CHW) Float32Array. Throws ImageError for a file that cannot be decoded.
 */
export async function augmentImage(
  path: string,
  size: number,
  aug: AugmentOptions | null,
  mean: readonly [number, number, number],
  std: readonly [number, number, number],
  rng: Rng,
): Promise<Float32Array> {
  if (!aug) return loadImage(path, { size, mean: [...mean], std: [...std], resize: 'crop' });
  const src = await decodePresized(path, aug.presize ?? Math.round(1.5 * size));
  const hwc = warpAffine(src, size, sampleAffine(src.width, src.height, size, aug, rng), aug.fill ?? 'reflect');
  const x = toNormalisedChw(hwc, jitterFactors(aug.colorJitter, rng), mean, std);
  if (aug.randomErasing) randomErase(x, size, aug.randomErasing, rng);
  return x;
}
