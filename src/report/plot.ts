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

/** Horizontal bars of probabilities, highest first as given, with class names and percentages. */
export function topKChart(rows: { label: string; prob: number }[], title: string): string {
  const fs = 14;
  const rowH = 30;
  const labels = rows.map((r) => truncate(r.label, 40));
  const labelW = Math.max(60, ...labels.map((l) => textWidth(l, fs))) + 16;
  const barMax = 360;
  const width = labelW + barMax + 80;
  const top = 44;
  const height = top + rows.length * rowH + 16;
  const body = [text(width / 2, 26, truncate(title, 80), 16, 'text-anchor="middle" font-weight="bold"')];
  rows.forEach((r, i) => {
    const y = top + i * rowH;
    const w = Math.max(1, barMax * Math.min(1, Math.max(0, r.prob)));
    body.push(
      text(labelW - 10, y + rowH / 2 + 5, labels[i], fs, 'text-anchor="end"'),
      `<rect x="${labelW}" y="${y + 4}" width="${w.toFixed(1)}" height="${rowH - 8}" fill="${BAR}"/>`,
      text(labelW + w + 6, y + rowH / 2 + 5, `${(100 * r.prob).toFixed(1)}%`, fs - 1, 'fill="#333"'),
    );
  });
  body.push(`<line x1="${labelW}" y1="${top}" x2="${labelW}" y2="${top + rows.length * rowH}" stroke="#444"/>`);
  return svgDoc(width, height, body);
}

/**
 * A confusion matrix heatmap: rows actual, columns predicted, shaded by the row's fraction (so
 * each row reads as that class's recall spread), with counts in the cells while they fit.
 */
export function confusionHeatmap(matrix: number[][], classNames: string[], title = 'Confusion matrix'): string {
  const n = classNames.length;
  const cell = n <= 10 ? 48 : n <= 30 ? 26 : Math.max(3, Math.floor(720 / n));
  const labelFs = Math.max(5, Math.min(13, Math.floor(cell * 0.55)));
  const showCounts = cell >= 22;
  const showLabels = cell >= 6;
  const maxLabel = n <= 30 ? 28 : 16;
  const names = classNames.map((c) => truncate(c, maxLabel));
  const labelW = showLabels ? Math.max(...names.map((s) => textWidth(s, labelFs))) + 10 : 0;
  const left = labelW + 30;
  const top = 44;
  const grid = n * cell;
  const width = Math.max(left + grid + 20, textWidth(title, 16) + 40);
  const height = top + grid + labelW + 30;
  const body = [text(width / 2, 26, title, 16, 'text-anchor="middle" font-weight="bold"')];
  matrix.forEach((row, a) => {
    const total = row.reduce((s, v) => s + v, 0);
    row.forEach((count, p) => {
      const f = total ? count / total : 0;
      // white -> dark blue
      const shade = (c0: number, c1: number) => Math.round(c0 + (c1 - c0) * f);
      const fill = `rgb(${shade(255, 8)},${shade(255, 48)},${shade(255, 107)})`;
      const x = left + p * cell;
      const y = top + a * cell;
      body.push(`<rect x="${x}" y="${y}" width="${cell}" height="${cell}" fill="${fill}"${showCounts ? ' stroke="#e6e6e6"' : ''}/>`);
      if (showCounts && count > 0) {
        body.push(text(x + cell / 2, y + cell / 2 + labelFs * 0.35, String(count), labelFs, `text-anchor="middle" fill="${f > 0.5 ? 'white' : 'black'}"`));
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
  body.push(text(12, top + grid / 2, 'actual', 13, `text-anchor="middle" transform="rotate(-90 12 ${top + grid / 2})"`));
  body.push(text(left + grid / 2, height - 8, 'predicted', 13, 'text-anchor="middle"'));
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

function tickLabel(v: number): string {
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(0);
  return String(Number(v.toPrecision(6)));
}

/** Lines of y against x (training curves, the learning-rate finder), optionally with log x. */
export function lineChart(series: Series[], opts: { xLabel: string; yLabel: string; logX?: boolean; title?: string }): string {
  const W = 640;
  const H = 400;
  const left = 70;
  const right = 20;
  const top = opts.title ? 40 : 20;
  const bottom = 50;
  const pw = W - left - right;
  const ph = H - top - bottom;
  const fx = (v: number) => (opts.logX ? Math.log10(v) : v);
  const pts = series.map((s) => s.x.map((x, i) => [fx(x), s.y[i]] as const).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)));
  const all = pts.flat();
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (!all.length) [x0, x1, y0, y1] = [0, 1, 0, 1];
  if (x1 === x0) [x0, x1] = [x0 - 1, x1 + 1];
  if (y1 === y0) [y0, y1] = [y0 - 1, y1 + 1];
  const pad = (y1 - y0) * 0.05;
  [y0, y1] = [y0 - pad, y1 + pad];
  const sx = (x: number) => left + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y: number) => top + ph - ((y - y0) / (y1 - y0)) * ph;
  const body: string[] = [];
  if (opts.title) body.push(text(W / 2, 26, opts.title, 16, 'text-anchor="middle" font-weight="bold"'));
  const xTicks = opts.logX
    ? Array.from({ length: Math.floor(x1) - Math.ceil(x0) + 1 }, (_, i) => Math.ceil(x0) + i)
    : niceTicks(x0, x1);
  for (const t of xTicks) {
    const x = sx(t);
    body.push(`<line x1="${x.toFixed(1)}" y1="${top}" x2="${x.toFixed(1)}" y2="${top + ph}" stroke="#e4e4e4"/>`);
    body.push(text(x, top + ph + 18, opts.logX ? tickLabel(10 ** t) : tickLabel(t), 12, 'text-anchor="middle"'));
  }
  for (const t of niceTicks(y0, y1)) {
    const y = sy(t);
    body.push(`<line x1="${left}" y1="${y.toFixed(1)}" x2="${left + pw}" y2="${y.toFixed(1)}" stroke="#e4e4e4"/>`);
    body.push(text(left - 6, y + 4, tickLabel(t), 12, 'text-anchor="end"'));
  }
  body.push(`<rect x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#444"/>`);
  pts.forEach((p, i) => {
    const d = p.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
    body.push(`<polyline points="${d}" fill="none" stroke="${SERIES_COLORS[i % SERIES_COLORS.length]}" stroke-width="2"/>`);
  });
  if (series.length > 1) {
    series.forEach((s, i) => {
      const y = top + 16 + i * 18;
      const x = left + pw - 150;
      body.push(`<line x1="${x}" y1="${y - 4}" x2="${x + 20}" y2="${y - 4}" stroke="${SERIES_COLORS[i % SERIES_COLORS.length]}" stroke-width="2"/>`);
      body.push(text(x + 26, y, truncate(s.name, 18), 12));
    });
  }
  body.push(text(left + pw / 2, H - 10, opts.xLabel, 13, 'text-anchor="middle"'));
  body.push(text(16, top + ph / 2, opts.yLabel, 13, `text-anchor="middle" transform="rotate(-90 16 ${top + ph / 2})"`));
  return svgDoc(W, H, body);
}
