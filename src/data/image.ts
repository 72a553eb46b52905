// Image files in, network inputs out: decoding with sharp (libvips) and torchvision's evaluation
// preprocessing, plus expanding the paths, folders and globs a user names into image files.
//
// Every image becomes RGB in [0, 1] whatever it was stored as: EXIF orientation applied, grayscale
// and CMYK converted to sRGB, 16-bit samples reduced to 8, alpha flattened onto white (the usual
// background of a transparent product photo), the first frame of an animation. Then
//   'crop': the shorter side resized to round(size / 0.875) (256 for 224), the longer side keeping
//           the aspect ratio (truncated, as torchvision's Resize does), then a size x size center crop;
//   'fill': resized to size x size, the aspect ratio ignored;
// with bilinear interpolation that averages over the whole footprint when shrinking (PIL's
// antialiased bilinear, which torchvision's transforms use), and finally (x - mean) / std per channel.
import { readdirSync, realpathSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import sharp from 'sharp';

export type ResizeMode = 'crop' | 'fill';

/** How an image becomes a network input (a checkpoint records it: src/onnx/classifier.ts). */
export interface Preprocessing {
  /** square input side in pixels */
  size: number;
  /** per-channel mean and std applied after scaling pixels to [0, 1] (RGB order) */
  mean: [number, number, number];
  std: [number, number, number];
  /** 'crop': resize the shorter side to size/0.875 then center-crop (torchvision's eval transform);
   *  'fill': resize to size x size, ignoring the aspect ratio */
  resize: ResizeMode;
}

export const IMAGENET_NORMALIZATION = { mean: [0.485, 0.456, 0.406] as [number, number, number], std: [0.229, 0.224, 0.225] as [number, number, number] };

/** A file that cannot be read or decoded as an image; the message is one line naming the file. */
export class ImageError extends Error {
  constructor(readonly file: string, readonly reason: string) {
    super(`${file}: ${reason}`);
    this.name = 'ImageError';
  }
}

/** File extensions (lower case) taken as images when walking folders and matching globs. */
export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif', '.heic', '.heif'];

/** Why a FIFO, socket or device named like an image is skipped (opening one may block forever). */
export const NOT_A_FILE = 'not a regular file (a FIFO, socket, device or folder)';

export function isImageFile(path: string): boolean {
  return IMAGE_EXTENSIONS.includes(extname(path).toLowerCase());
}

/** Python's round(): halves to even. torchvision's CenterCrop offsets use it. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The size an image of w x h is resized to before the center crop (torchvision's Resize(int)). */
export function cropResizeSize(w: number, h: number, size: number): { width: number; height: number; left: number; top: number } {
  const short = Math.round(size / 0.875);
  const width = w <= h ? short : Math.floor((short * w) / h);
  const height = w <= h ? Math.floor((short * h) / w) : short;
  return { width, height, left: roundHalfEven((width - size) / 2), top: roundHalfEven((height - size) / 2) };
}

function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e).split('\n')[0].trim();
}

/** RGB bytes (HWC) of a decoded image and its size. */
interface Rgb {
  data: Buffer;
  width: number;
  height: number;
}

/**
 * Decodes `path` (EXIF orientation applied) to RGB bytes resized to `target(w, h)`, bilinearly, then
 * cropped to its `crop` window if it names one.
 */
async function decodeRgb(path: string, target: (w: number, h: number) => { width: number; height: number; crop?: { left: number; top: number; width: number; height: number } }): Promise<Rgb> {
  let isFile: boolean;
  try {
    isFile = statSync(path).isFile();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ImageError(path, code === 'ENOENT' ? 'no such file' : firstLine(e));
  }
  if (!isFile) throw new ImageError(path, NOT_A_FILE);
  try {
    // 'error' rather than sharp's default 'warning': a JPEG with a slightly damaged tail still
    // decodes (as browsers show it), a file that is not an image still fails.
    const img = sharp(path, { failOn: 'error', pages: 1 }).rotate();
    const meta = await img.metadata();
    const w = meta.autoOrient?.width ?? meta.width;
    const h = meta.autoOrient?.height ?? meta.height;
    if (!w || !h) throw new Error('image has no size');
    const t = target(w, h);
    // fastShrinkOnLoad off: JPEG's DCT-domain downscaling is faster but not the plain bilinear filter
    img.resize(t.width, t.height, { fit: 'fill', kernel: 'linear', fastShrinkOnLoad: false });
    if (t.crop) img.extract(t.crop);
    const [width, height] = t.crop ? [t.crop.width, t.crop.height] : [t.width, t.height];
    const out = await img
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (out.info.channels !== 3 || out.info.width !== width || out.info.height !== height) {
      throw new Error(`decoded to ${out.info.width}x${out.info.height}x${out.info.channels}, expected ${width}x${height}x3`);
    }
    return { data: out.data, width, height };
  } catch (e) {
    if (e instanceof ImageError) throw e;
    throw new ImageError(path, `cannot decode as an image (${firstLine(e)})`);
  }
}

/** The size x size window at (left, top) of HWC bytes as CHW normalised floats, mirrored if asked. */
function windowChw(rgb: Rgb, left: number, top: number, size: number, mean: readonly number[], std: readonly number[], mirror = false): Float32Array {
  const plane = size * size;
  const x = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    const scale = 1 / (255 * std[c]);
    const shift = mean[c] / std[c];
    for (let v = 0; v < size; v++) {
      for (let u = 0; u < size; u++) {
        const su = left + (mirror ? size - 1 - u : u);
        x[c * plane + v * size + u] = rgb.data[3 * ((top + v) * rgb.width + su) + c] * scale - shift;
      }
    }
  }
  return x;
}

/** Decodes `path` and preprocesses it to a [3, size, size] (CHW) normalised Float32Array. */
export async function loadImage(path: string, p: Preprocessing): Promise<Float32Array> {
  const { size } = p;
  const rgb = await decodeRgb(path, (w, h) => {
    if (p.resize === 'fill') return { width: size, height: size };
    const r = cropResizeSize(w, h, size);
    return { width: r.width, height: r.height, crop: { left: r.left, top: r.top, width: size, height: size } };
  });
  return windowChw(rgb, 0, 0, size, p.mean, p.std);
}

/** A small PNG of the image (EXIF orientation applied), its longer side `max` px, for charts. */
export async function thumbnailPng(path: string, max: number): Promise<{ png: Buffer; width: number; height: number }> {
  try {
    const { data, info } = await sharp(path, { failOn: 'error', pages: 1 }).rotate().resize(max, max, { fit: 'inside' }).flatten({ background: '#ffffff' }).png().toBuffer({ resolveWithObject: true });
    return { png: data, width: info.width, height: info.height };
  } catch (e) {
    throw new ImageError(path, `cannot decode as an image (${firstLine(e)})`);
  }
}

/** The views test-time augmentation averages over, in this order. */
export const TTA_VIEWS = ['center', 'flipped', 'top-left', 'top-right', 'bottom-left', 'bottom-right'] as const;

/**
 * Test-time augmentation views of an image (TTA_VIEWS): the preprocessing itself (loadImage's
 * tensor), its mirror image, and the four corner crops of the image resized with its shorter side
 * at size / 0.875 (torchvision's FiveCrop corners; 'fill' resizes to that square).
 */
export async function loadTtaViews(path: string, p: Preprocessing): Promise<Float32Array[]> {
  const { size, mean, std } = p;
  const big = Math.round(size / 0.875);
  let center = { left: 0, top: 0 };
  const resized = await decodeRgb(path, (w, h) => {
    if (p.resize === 'fill') return { width: big, height: big };
    const r = cropResizeSize(w, h, size);
    center = { left: r.left, top: r.top };
    return r;
  });
  // 'fill': the plain view is its own resize; 'crop': the centre window of the same resize
  const plain = p.resize === 'fill' ? await decodeRgb(path, () => ({ width: size, height: size })) : resized;
  const [right, bottom] = [resized.width - size, resized.height - size];
  return [
    windowChw(plain, center.left, center.top, size, mean, std),
    windowChw(plain, center.left, center.top, size, mean, std, true),
    windowChw(resized, 0, 0, size, mean, std),
    windowChw(resized, right, 0, size, mean, std),
    windowChw(resized, 0, bottom, size, mean, std),
    windowChw(resized, right, bottom, size, mean, std),
  ];
}

// ---- naming files: paths, folders, globs ------------------------------------------------------

const GLOB_CHARS = /[*?[]/;

/** A glob as a RegExp over '/'-separated paths: `**` any number of folders, `*` and `?` within a
 *  name, `[...]` a character class. */
export function globToRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i];
    if (ch === '*' && pattern[i + 1] === '*') {
      const slash = pattern[i + 2] === '/';
      re += slash ? '(?:[^/]*/)*' : '.*';
      i += slash ? 2 : 1;
    } else if (ch === '*') re += '[^/]*';
    else if (ch === '?') re += '[^/]';
    else if (ch === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end < 0) re += '\\[';
      else {
        const body = pattern.slice(i + 1, end);
        re += `[${body.startsWith('!') ? `^${body.slice(1)}` : body}]`;
        i = end;
      }
    } else re += ch.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/**
 * Files under `dir` (names starting with '.' skipped), sorted by code unit, at most `depth` folders
 * down. Symbolic links are followed, but each folder is entered once, by its real path: a link loop
 * (`ants/self -> .`) or a second link to a folder already read is reported through `onSkip` and not
 * followed again, as are folders that cannot be read.
 */
export function walkFiles(dir: string, depth = Infinity, onSkip?: (path: string, reason: string) => void): string[] {
  const out: string[] = [];
  const entered = new Map<string, string>(); // real path -> the path it was read by
  const walk = (d: string, depth: number) => {
    let names: string[];
    try {
      const real = realpathSync(d);
      const first = entered.get(real);
      if (first !== undefined) return onSkip?.(d, `a link to the folder ${first}, read already: not followed again`);
      entered.set(real, d);
      names = readdirSync(d).sort();
    } catch (e) {
      return onSkip?.(d, `cannot read this folder (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    for (const name of names) {
      if (name.startsWith('.')) continue;
      const p = d === '.' ? name : join(d, name);
      let st;
      try {
        st = statSync(p);
      } catch {
        continue; // a dangling link
      }
      if (!st.isDirectory()) out.push(p);
      else if (depth > 0) walk(p, depth - 1);
    }
  };
  walk(dir, depth);
  return out;
}

function expandGlob(pattern: string): string[] {
  const parts = pattern.split('/');
  const firstMagic = parts.findIndex((s) => GLOB_CHARS.test(s));
  const base = parts.slice(0, firstMagic).join('/') || (pattern.startsWith('/') ? '/' : '.');
  const rest = parts.slice(firstMagic);
  const depth = rest.includes('**') || rest.some((s) => s.includes('**')) ? Infinity : rest.length - 1;
  const files = walkFiles(base, depth);
  const re = globToRegExp(pattern.startsWith('./') ? pattern.slice(2) : pattern);
  return files.filter((f) => re.test(f) && isImageFile(f));
}

/**
 * The image files named by `inputs`: a file as given, a folder's image files (recursively, by
 * extension, case-insensitive), or a glob's matching image files; sorted within each input,
 * duplicates dropped. An input naming nothing is an ImageError.
 */
export function listImages(inputs: string[]): string[] {
  const seen = new Set<string>();
  for (const input of inputs) {
    let found: string[];
    let st;
    try {
      st = statSync(input);
    } catch {
      st = null;
    }
    if (st?.isDirectory()) {
      found = walkFiles(input).filter(isImageFile);
      if (found.length === 0) throw new ImageError(input, `no image files in this folder (looked for ${IMAGE_EXTENSIONS.join(' ')})`);
    } else if (st) found = [input];
    else if (GLOB_CHARS.test(input)) {
      found = expandGlob(input);
      if (found.length === 0) throw new ImageError(input, 'no image files match this pattern');
    } else throw new ImageError(input, 'no such file or folder');
    for (const f of found) seen.add(f);
  }
  return [...seen];
}
