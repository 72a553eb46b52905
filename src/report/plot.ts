// Charts as PNG files: each chart is drawn as an SVG string (plain text, easy to test and reason
// about) and rasterised by sharp (librsvg). Files are written atomically (src/io/files.ts), so a
// chart is either complete or the previous one.
import sharp from 'sharp';
import { writeFileAtomic } from '../io/files.ts';

const FONT = 'DejaVu Sans, Verdana, sans-serif';
const BAR = '#3b78c3';
const SERIES_COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** Rough width of `text` at `fontSize` in a sans-serif font (about 0.6 em per character). */
function textWidth(text: string, fontSize: number): number {
  return text.length * fontSize * 0.6;
}

function truncate(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

function svgDoc(width: number, height: number, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${Math.ceil(width)}" height="${Math.ceil(height)}" font-family="${FONT}">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...body,
    '</svg>',
  ].join('\n');
}

const text = (x: number, y: number, s: string, size: number, attrs = '') =>
  `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" font-size="${size}" ${attrs}>${esc(s)}</text>`;

/** Rasterises `svg` to a PNG at `path`, atomically. */
export async function savePng(svg: string, path: string): Promise<void> {
  writeFileAtomic(path, await sharp(Buffer.from(svg)).png().toBuffer());
}

/** An image beside a chart: PNG bytes and the size to show them at. */
export interface Thumbnail {
  png: Buffer;
  width: number;
  height: number;
}

/** Horizontal bars of probabilities, highest first as given, with class names and percentages;
 *  the image classified beside them when given. */
export function topKChart(rows: { label: string; prob: number }[], title: string, thumbnail?: Thumbnail): string {
  const fs = 14;
  const rowH = 30;
  const labels = rows.map((r) => truncate(r.label, 40));
  const thumbW = thumbnail ? thumbnail.width + 20 : 0;
  const labelW = Math.max(60, ...labels.map((l) => textWidth(l, fs))) + 16;
  const barMax = 360;
  const width = thumbW + labelW + barMax + 80;
  const top = 44;
  const height = Math.max(top + rows.length * rowH + 16, thumbnail ? top + thumbnail.height + 16 : 0);
  const body = [text(width / 2, 26, truncate(title, 80), 16, 'text-anchor="middle" font-weight="bold"')];
  if (thumbnail) {
    body.push(`<image class="thumbnail" x="10" y="${top}" width="${thumbnail.width}" height="${thumbnail.height}" href="data:image/png;base64,${thumbnail.png.toString('base64')}"/>`);
  }
  const x0 = thumbW + labelW;
  rows.forEach((r, i) => {
    const y = top + i * rowH;
    const w = Math.max(1, barMax * Math.min(1, Math.max(0, r.prob)));
    body.push(
      text(x0 - 10, y + rowH / 2 + 5, labels[i], fs, 'text-anchor="end"'),
      `<rect class="bar" x="${x0}" y="${y + 4}" width="${w.toFixed(1)}" height="${rowH - 8}" fill="${BAR}"/>`,
      text(x0 + w + 6, y + rowH / 2 + 5, `${(100 * r.prob).toFixed(1)}%`, fs - 1, 'fill="#333"'),
    );
  });
  body.push(`<line x1="${x0}" y1="${top}" x2="${x0}" y2="${top + rows.length * rowH}" stroke="#444"/>`);
  return svgDoc(width, height, body);
}

/** White -> dark blue, for a share in [0, 1]. */
function blues(f: number): string {
  const shade = (c0: number, c1: number) => Math.round(c0 + (c1 - c0) * Math.min(1, Math.max(0, f)));
  return `rgb(${shade(255, 8)},${shade(255, 48)},${shade(255, 107)})`;
}

/**
 * A confusion matrix heatmap: rows actual, columns predicted, with a colour scale. Shaded by the
 * count (0 to the largest cell), or with `normalize` by the row's share (each row then reads as that
 * class's recall spread, the cells as percentages). Cells are 90 px at 2 classes, shrinking to fit
 * about 900 px at 100; counts are written in the cells while they fit, labels while the font
 * stays legible.
 */
export function confusionHeatmap(matrix: number[][], classNames: string[], opts: { normalize?: boolean; title?: string } = {}): string {
  const n = classNames.length;
  const title = opts.title ?? `Confusion matrix${opts.normalize ? ' (normalised per actual class)' : ''}`;
  const cell = Math.max(4, Math.min(90, Math.floor(900 / n)));
  const labelFs = Math.max(7, Math.min(14, Math.floor(cell * 0.55)));
  const showValues = cell >= 22;
  const showLabels = cell >= 7;
  const maxLabel = n <= 30 ? 28 : 18;
  const names = classNames.map((c) => truncate(c, maxLabel));
  const labelW = showLabels ? Math.max(...names.map((s) => textWidth(s, labelFs))) + 10 : 0;
  const left = labelW + 34;
  const top = 44;
  const grid = n * cell;
  const scaleX = left + grid + 24;
  const width = Math.max(scaleX + 80, textWidth(title, 16) + 40);
  const height = top + grid + labelW + 34;
  const max = Math.max(1, ...matrix.flat());
  // the cell values at a size that fits their longest ('100%', or the largest count)
  const valueFs = Math.min(labelFs, Math.floor((cell - 4) / (0.62 * (opts.normalize ? 4 : String(max).length))));
  const body = [text(width / 2, 26, title, 16, 'text-anchor="middle" font-weight="bold"')];
  matrix.forEach((row, a) => {
    const total = row.reduce((s, v) => s + v, 0);
    row.forEach((count, p) => {
      const f = opts.normalize ? (total ? count / total : 0) : count / max;
      const x = left + p * cell;
      const y = top + a * cell;
      body.push(`<rect class="cell" x="${x}" y="${y}" width="${cell}" height="${cell}" fill="${blues(f)}"${showValues ? ' stroke="#e6e6e6"' : ''}/>`);
      if (showValues && count > 0) {
        const value = opts.normalize ? `${Math.round((100 * count) / total)}%` : String(count);
        body.push(text(x + cell / 2, y + cell / 2 + valueFs * 0.35, value, valueFs, `class="value" text-anchor="middle" fill="${f > 0.5 ? 'white' : 'black'}"`));
      }
    });
  });
  body.push(`<rect x="${left}" y="${top}" width="${grid}" height="${grid}" fill="none" stroke="#444"/>`);
  if (showLabels) {
    names.forEach((name, i) => {
      const c = i * cell + cell / 2;
      body.push(text(left - 6, top + c + labelFs * 0.35, name, labelFs, 'text-anchor="end"'));
      // column labels read downwards, rotated under the grid
      const x = left + c + labelFs * 0.35;
      const y = top + grid + 6;
      body.push(text(x, y, name, labelFs, `text-anchor="end" transform="rotate(-90 ${x.toFixed(1)} ${y.toFixed(1)})"`));
    });
  }
  body.push(text(14, top + grid / 2, 'actual', 13, `text-anchor="middle" transform="rotate(-90 14 ${top + grid / 2})"`));
  body.push(text(left + grid / 2, height - 8, 'predicted', 13, 'text-anchor="middle"'));
  // the colour scale beside the grid: from 0 at the bottom to the largest value at the top
  const scaleH = Math.max(120, Math.min(grid, 400));
  const steps = 10;
  for (let i = 0; i < steps; i++) {
    body.push(`<rect class="scale" x="${scaleX}" y="${(top + (scaleH * (steps - 1 - i)) / steps).toFixed(1)}" width="16" height="${(scaleH / steps + 0.5).toFixed(1)}" fill="${blues((i + 0.5) / steps)}"/>`);
  }
  body.push(`<rect x="${scaleX}" y="${top}" width="16" height="${scaleH}" fill="none" stroke="#444"/>`);
  const top_ = opts.normalize ? '100%' : String(max);
  body.push(text(scaleX + 22, top + 10, top_, 11, 'class="scale-max"'));
  body.push(text(scaleX + 22, top + scaleH / 2 + 4, opts.normalize ? '50%' : tickLabel(max / 2), 11));
  body.push(text(scaleX + 22, top + scaleH, opts.normalize ? '0%' : '0', 11));
  return svgDoc(width, height, body);
}

export interface Series {
  name: string;
  x: number[];
  y: number[];
}

/** Round tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten. */
export function niceTicks(lo: number, hi: number, count = 6): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

/** Integer ticks covering [lo, hi] (epochs): every one, or every 2, 5, 10, 20, ... when there are more than `count`. */
export function integerTicks(lo: number, hi: number, count = 12): number[] {
  let step = 1;
  for (let k = 0; (hi - lo) / step > count; k++) step = [2, 5, 10][k % 3] * 10 ** Math.floor(k / 3);
  const ticks: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi; t += step) ticks.push(t);
  return ticks;
}

function tickLabel(v: number): string {
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(0);
  return String(Number(v.toPrecision(6)));
}

/** A vertical line across a panel at x, labelled (the phase switch, a suggested rate). */
export interface Mark {
  x: number;
  label: string;
  color?: string;
}

export interface PanelOptions {
  xLabel: string;
  yLabel: string;
  logX?: boolean;
  /** a fixed y range (default: the data's, padded) */
  yRange?: [number, number];
  /** integer x ticks only (epochs) */
  integerX?: boolean;
  marks?: Mark[];
  /** points drawn as dots too (few points: one per epoch) */
  dots?: boolean;
}

/**
 * One plot panel at (left, top) of pw x ph: grid, ticks, the series, vertical marks, and a
 * legend in a strip of its own below the axis label (so it never covers a curve).
 */
function panel(series: Series[], o: PanelOptions, left: number, top: number, pw: number, ph: number, colorOffset = 0): { body: string[]; height: number } {
  const fx = (v: number) => (o.logX ? Math.log10(v) : v);
  const pts = series.map((s) => s.x.map((x, i) => [fx(x), s.y[i]] as const).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)));
  const all = pts.flat();
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (!all.length) [x0, x1, y0, y1] = [0, 1, 0, 1];
  if (x1 === x0) [x0, x1] = o.integerX ? [x0 - 0.5, x1 + 0.5] : [x0 - 1, x1 + 1];
  if (o.yRange) [y0, y1] = o.yRange;
  else {
    if (y1 === y0) [y0, y1] = [y0 - 1, y1 + 1];
    const pad = (y1 - y0) * 0.05;
    [y0, y1] = [y0 - pad, y1 + pad];
  }
  const sx = (x: number) => left + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y: number) => top + ph - ((y - y0) / (y1 - y0)) * ph;
  const body: string[] = [];
  const xTicks = o.logX ? Array.from({ length: Math.floor(x1) - Math.ceil(x0) + 1 }, (_, i) => Math.ceil(x0) + i) : o.integerX ? integerTicks(Math.ceil(x0), Math.floor(x1)) : niceTicks(x0, x1);
  for (const t of xTicks) {
    const x = sx(t);
    body.push(`<line x1="${x.toFixed(1)}" y1="${top}" x2="${x.toFixed(1)}" y2="${top + ph}" stroke="#e4e4e4"/>`);
    body.push(text(x, top + ph + 18, o.logX ? tickLabel(10 ** t) : tickLabel(t), 12, 'class="x-tick" text-anchor="middle"'));
  }
  for (const t of niceTicks(y0, y1)) {
    const y = sy(t);
    body.push(`<line x1="${left}" y1="${y.toFixed(1)}" x2="${left + pw}" y2="${y.toFixed(1)}" stroke="#e4e4e4"/>`);
    body.push(text(left - 6, y + 4, tickLabel(t), 12, 'class="y-tick" text-anchor="end"'));
  }
  body.push(`<rect class="panel" x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#444"/>`);
  (o.marks ?? []).forEach((m, i) => {
    const x = sx(fx(m.x));
    if (!(x >= left && x <= left + pw)) return;
    const color = m.color ?? '#555';
    body.push(`<line class="mark" x1="${x.toFixed(1)}" y1="${top}" x2="${x.toFixed(1)}" y2="${top + ph}" stroke="${color}" stroke-dasharray="5,4" stroke-width="1.5"/>`);
    // labels stacked, one line per mark, on the side of the line with room
    const right = x + 4 + textWidth(m.label, 11) <= left + pw;
    body.push(text(right ? x + 4 : x - 4, top + 14 + 14 * i, m.label, 11, `class="mark-label" fill="${color}"${right ? '' : ' text-anchor="end"'}`));
  });
  pts.forEach((p, i) => {
    const color = SERIES_COLORS[(i + colorOffset) % SERIES_COLORS.length];
    const d = p.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
    body.push(`<polyline class="series" points="${d}" fill="none" stroke="${color}" stroke-width="2"/>`);
    if (o.dots) for (const [x, y] of p) body.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3" fill="${color}"/>`);
  });
  body.push(text(left + pw / 2, top + ph + 38, o.xLabel, 13, 'text-anchor="middle"'));
  body.push(text(left - 52, top + ph / 2, o.yLabel, 13, `text-anchor="middle" transform="rotate(-90 ${left - 52} ${top + ph / 2})"`));
  let height = ph + 46;
  if (series.length > 1) {
    // the legend: one row under the panel, outside the plot area
    let x = left;
    const y = top + ph + 60;
    series.forEach((s, i) => {
      const color = SERIES_COLORS[(i + colorOffset) % SERIES_COLORS.length];
      const name = truncate(s.name, 24);
      body.push(`<line x1="${x}" y1="${y - 4}" x2="${x + 20}" y2="${y - 4}" stroke="${color}" stroke-width="2"/>`);
      body.push(text(x + 26, y, name, 12, 'class="legend"'));
      x += 26 + textWidth(name, 12) + 24;
    });
    height += 22;
  }
  return { body, height };
}

const LEFT = 80;
const WIDTH = 660;

/** Lines of y against x in one panel (optionally log x), with vertical marks. */
export function lineChart(series: Series[], opts: PanelOptions & { title?: string }): string {
  const top = opts.title ? 40 : 20;
  const p = panel(series, opts, LEFT, top, WIDTH - LEFT - 20, 300, 0);
  const body = [...(opts.title ? [text(WIDTH / 2, 26, opts.title, 16, 'text-anchor="middle" font-weight="bold"')] : []), ...p.body];
  return svgDoc(WIDTH, top + p.height + 10, body);
}

/** Panels stacked under one title: each its series and options (colours continue from panel to panel). */
export function stackedCharts(panels: { series: Series[]; opts: PanelOptions }[], title: string): string {
  const body = [text(WIDTH / 2, 26, title, 16, 'text-anchor="middle" font-weight="bold"')];
  let top = 44;
  let colors = 0;
  for (const p of panels) {
    const drawn = panel(p.series, p.opts, LEFT, top, WIDTH - LEFT - 20, 220, colors);
    body.push(`<g class="stacked-panel">`, ...drawn.body, '</g>');
    top += drawn.height + 24;
    colors += p.series.length;
  }
  return svgDoc(WIDTH, top, body);
}
