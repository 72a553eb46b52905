// Pictures of images: a grid of captioned tiles (show-batch, eval's top losses) and a Grad-CAM
// heatmap laid over an image with its colour scale. Images arrive as CHW floats in [0, 1] (what
// the preprocessing makes, before normalisation); captions are SVG text composited by sharp.
import sharp from 'sharp';

const FONT = 'DejaVu Sans, Verdana, sans-serif';
const PAD = 6;

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function truncate(s: string, chars: number): string {
  return s.length <= chars ? s : `${s.slice(0, chars - 1)}…`;
}

/** CHW floats in [0, 1] -> HWC bytes. */
export function toRgbBytes(chw: Float32Array, size: number): Buffer {
  const plane = size * size;
  const px = Buffer.alloc(3 * plane);
  for (let i = 0; i < plane; i++) for (let c = 0; c < 3; c++) px[3 * i + c] = Math.round(255 * Math.min(1, Math.max(0, chw[c * plane + i])));
  return px;
}

export interface CaptionLine {
  text: string;
  bold?: boolean;
  /** CSS colour (default: dark grey for plain lines, black for bold ones) */
  color?: string;
}

export interface Tile {
  /** [3, size, size] in [0, 1] */
  image: Float32Array;
  lines: CaptionLine[];
}

/** A grid of square tiles of `size` px, as close to square as the count allows, each with its caption lines under it. */
export async function imageGridPng(tiles: Tile[], size: number): Promise<Buffer> {
  const n = tiles.length;
  const cols = Math.ceil(Math.sqrt(n));
  const rows = Math.ceil(n / cols);
  const lineCount = Math.max(1, ...tiles.map((t) => t.lines.length));
  const captionH = 4 + 13 * lineCount;
  const cellW = size + PAD;
  const cellH = size + captionH + PAD;
  const width = cols * cellW + PAD;
  const height = rows * cellH + PAD;
  const chars = (bold: boolean) => Math.max(4, Math.floor(size / (bold ? 7.5 : 6.4))); // at 12 px bold, 10 px plain
  const overlays: sharp.OverlayOptions[] = [];
  const text: string[] = [];
  tiles.forEach((t, k) => {
    const left = PAD + (k % cols) * cellW;
    const top = PAD + Math.floor(k / cols) * cellH;
    overlays.push({ input: toRgbBytes(t.image, size), raw: { width: size, height: size, channels: 3 }, left, top });
    t.lines.forEach((line, j) => {
      const attrs = line.bold ? 'font-size="12" font-weight="bold"' : 'font-size="10"';
      text.push(`<text x="${left + size / 2}" y="${top + size + 14 + 13 * j}" ${attrs} fill="${line.color ?? (line.bold ? '#000' : '#555')}" text-anchor="middle">${esc(truncate(line.text, chars(!!line.bold)))}</text>`);
    });
  });
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="${FONT}">${text.join('')}</svg>`;
  overlays.push({ input: Buffer.from(svg), left: 0, top: 0 });
  const composed = await sharp({ create: { width, height, channels: 3, background: '#ffffff' } }).composite(overlays).png().toBuffer();
  return sharp(composed).removeAlpha().png().toBuffer(); // compositing adds an alpha channel
}

/** A CHW image resized to `to` px, nearest neighbour (tiles shown larger than the model's input). */
export function resizeChw(chw: Float32Array, from: number, to: number): Float32Array {
  if (from === to) return chw;
  const out = new Float32Array(3 * to * to);
  for (let c = 0; c < 3; c++) {
    for (let v = 0; v < to; v++) {
      const sv = Math.min(from - 1, Math.floor(((v + 0.5) * from) / to));
      for (let u = 0; u < to; u++) out[c * to * to + v * to + u] = chw[c * from * from + sv * from + Math.min(from - 1, Math.floor(((u + 0.5) * from) / to))];
    }
  }
  return out;
}

/** The jet colour map (matplotlib's, piecewise linear): 0 dark blue, 0.5 green-yellow, 1 dark red. */
export function jet(v: number): [number, number, number] {
  const x = Math.min(1, Math.max(0, v));
  const ramp = (a: number) => Math.min(1, Math.max(0, 1.5 - Math.abs(4 * x - a)));
  return [ramp(3), ramp(2), ramp(1)];
}

/** `map` [h, w] sampled bilinearly at the centres of a size x size grid (align_corners=False). */
export function upsample(map: Float32Array, h: number, w: number, size: number): Float32Array {
  const out = new Float32Array(size * size);
  for (let v = 0; v < size; v++) {
    const fy = Math.min(h - 1, Math.max(0, ((v + 0.5) * h) / size - 0.5));
    const y0 = Math.floor(fy);
    const y1 = Math.min(h - 1, y0 + 1);
    for (let u = 0; u < size; u++) {
      const fx = Math.min(w - 1, Math.max(0, ((u + 0.5) * w) / size - 0.5));
      const x0 = Math.floor(fx);
      const x1 = Math.min(w - 1, x0 + 1);
      const [ax, ay] = [fx - x0, fy - y0];
      out[v * size + u] = (1 - ay) * ((1 - ax) * map[y0 * w + x0] + ax * map[y0 * w + x1]) + ay * ((1 - ax) * map[y1 * w + x0] + ax * map[y1 * w + x1]);
    }
  }
  return out;
}

/** The image with a heatmap (values in [0, 1], [h, w]) laid over it in jet colours at `alpha`. */
export function heatmapOverlay(image: Float32Array, size: number, map: Float32Array, h: number, w: number, alpha = 0.45): Float32Array {
  const up = upsample(map, h, w, size);
  const plane = size * size;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    const col = jet(up[i]);
    for (let c = 0; c < 3; c++) out[c * plane + i] = (1 - alpha) * image[c * plane + i] + alpha * col[c];
  }
  return out;
}

/** A Grad-CAM picture: the image beside the image under its heatmap, a title, and the colour scale. */
export async function camPng(image: Float32Array, size: number, map: Float32Array, h: number, w: number, title: string): Promise<Buffer> {
  const top = 34;
  const scaleW = 70;
  const width = PAD + 2 * (size + PAD) + scaleW;
  const height = top + size + 28;
  const overlay = heatmapOverlay(image, size, map, h, w);
  // the colour scale: a vertical jet ramp, high on top, labelled by its share of the maximum
  const barX = PAD + 2 * (size + PAD) + 8;
  const stops = Array.from({ length: 11 }, (_, i) => {
    const [r, g, b] = jet(1 - i / 10).map((c) => Math.round(255 * c));
    return `<stop offset="${i / 10}" stop-color="rgb(${r},${g},${b})"/>`;
  }).join('');
  const svg = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="${FONT}">`,
    `<text x="${width / 2}" y="22" font-size="14" font-weight="bold" text-anchor="middle">${esc(truncate(title, Math.floor(width / 8)))}</text>`,
    `<defs><linearGradient id="scale" x1="0" y1="0" x2="0" y2="1">${stops}</linearGradient></defs>`,
    `<rect class="colour-scale" x="${barX}" y="${top}" width="14" height="${size}" fill="url(#scale)" stroke="#444"/>`,
    `<text x="${barX + 18}" y="${top + 10}" font-size="10">high</text>`,
    `<text x="${barX + 18}" y="${top + size}" font-size="10">low</text>`,
    `<text x="${PAD + size / 2}" y="${top + size + 18}" font-size="11" text-anchor="middle">image</text>`,
    `<text x="${PAD + size + PAD + size / 2}" y="${top + size + 18}" font-size="11" text-anchor="middle">Grad-CAM</text>`,
    '</svg>',
  ].join('');
  const composed = await sharp({ create: { width, height, channels: 3, background: '#ffffff' } })
    .composite([
      { input: toRgbBytes(image, size), raw: { width: size, height: size, channels: 3 }, left: PAD, top },
      { input: toRgbBytes(overlay, size), raw: { width: size, height: size, channels: 3 }, left: PAD + size + PAD, top },
      { input: Buffer.from(svg), left: 0, top: 0 },
    ])
    .png()
    .toBuffer();
  return sharp(composed).removeAlpha().png().toBuffer();
}
