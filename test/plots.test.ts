// The charts, read back from their SVG (what a test can read): history.png's two panels with
// integer epoch ticks, the phase switch and legends outside the plots; the confusion matrix's
// colour scale, normalisation and sizes at 2 and 100 classes; the top-k bars beside the image;
// lr-find's marked suggestions. And that each rasterises.
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { confusionHeatmap, integerTicks, lineChart, topKChart } from '../src/report/plot.ts';
import { historySvg, type EpochRecord } from '../src/train/history.ts';

/** The attribute values of every element matching `tag ... class="cls"`. */
function elements(svg: string, tag: string, cls: string): Record<string, string>[] {
  return [...svg.matchAll(new RegExp(`<${tag} [^>]*class="${cls}"[^>]*>`, 'g'))].map((m) => Object.fromEntries([...m[0].matchAll(/([\w-]+)="([^"]*)"/g)].map((a) => [a[1], a[2]])));
}
const texts = (svg: string, cls: string) => [...svg.matchAll(new RegExp(`<text [^>]*class="${cls}"[^>]*>([^<]*)</text>`, 'g'))].map((m) => m[1]);
const num = (s: string) => Number(s);

const record = (epoch: number, phase: EpochRecord['phase']): EpochRecord => ({
  epoch, phase, trainLoss: 1.5 / epoch, validLoss: 1.2 / epoch + 0.1, accuracy: 0.5 + 0.05 * epoch, macroF1: 0.45 + 0.05 * epoch, lr: 1e-3, seconds: 2,
});

describe('history.png', () => {
  const records = [record(1, 'frozen'), record(2, 'unfrozen'), record(3, 'unfrozen'), record(4, 'unfrozen'), record(5, 'unfrozen'), record(6, 'unfrozen'), record(7, 'unfrozen')];
  const svg = historySvg(records);

  it('two panels, losses and scores; the scores on 0-1', () => {
    const panels = elements(svg, 'rect', 'panel');
    expect(panels).toHaveLength(2);
    expect(num(panels[1].y)).toBeGreaterThan(num(panels[0].y) + num(panels[0].height));
    const [losses, scores] = svg.split('class="stacked-panel"').slice(1);
    expect(texts(losses, 'legend')).toEqual(['train loss', 'valid loss']);
    expect(texts(scores, 'legend')).toEqual(['accuracy', 'macro-F1']);
    const yTicks = texts(scores, 'y-tick').map(num);
    expect([yTicks[0], yTicks[yTicks.length - 1]]).toEqual([0, 1]);
  });

  it('one integer tick per epoch; many epochs get every few', () => {
    for (const part of svg.split('class="stacked-panel"').slice(1)) expect(texts(part, 'x-tick')).toEqual(['1', '2', '3', '4', '5', '6', '7']);
    const long = historySvg(Array.from({ length: 60 }, (_, i) => record(i + 1, 'unfrozen')));
    const ticks = texts(long.split('class="stacked-panel"')[1], 'x-tick').map(num);
    expect(ticks.every(Number.isInteger)).toBe(true);
    expect(ticks.length).toBeLessThanOrEqual(13);
    expect(integerTicks(1, 7)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(integerTicks(1, 100)).toEqual([10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
  });

  it('the frozen -> unfrozen switch is marked between epochs 1 and 2, in both panels', () => {
    const marks = elements(svg, 'line', 'mark');
    expect(marks).toHaveLength(2);
    expect(texts(svg, 'mark-label')).toEqual(['frozen → unfrozen', 'frozen → unfrozen']);
    const ticks = elements(svg, 'text', 'x-tick');
    const x1 = num(ticks[0].x);
    const x2 = num(ticks[1].x);
    expect(num(marks[0].x1)).toBeCloseTo((x1 + x2) / 2, 0);
  });

  it('the legends lie below their panels, never over a curve', () => {
    const panels = elements(svg, 'rect', 'panel');
    const legends = elements(svg, 'text', 'legend');
    legends.forEach((l, i) => {
      const p = panels[i < 2 ? 0 : 1];
      expect(num(l.y)).toBeGreaterThan(num(p.y) + num(p.height) + 30);
    });
  });

  it('rasterises', async () => {
    const meta = await sharp(Buffer.from(svg)).png().toBuffer().then((b) => sharp(b).metadata());
    expect([meta.format, meta.width]).toEqual(['png', 660]);
  });
});

describe('confusion matrix', () => {
  it('2 classes: large cells, counts, a colour scale up to the largest count', () => {
    const svg = confusionHeatmap([[40, 2], [5, 30]], ['ants', 'bees']);
    const cells = elements(svg, 'rect', 'cell');
    expect(cells).toHaveLength(4);
    expect(num(cells[0].width)).toBe(90);
    expect(texts(svg, 'value')).toEqual(['40', '2', '5', '30']);
    expect(elements(svg, 'rect', 'scale')).toHaveLength(10);
    expect(texts(svg, 'scale-max')).toEqual(['40']);
    expect(num(/width="(\d+)"/.exec(svg)![1])).toBeGreaterThanOrEqual(300);
  });

  it('--normalize: each row as its shares, the scale 0-100%', () => {
    const svg = confusionHeatmap([[40, 2], [5, 30]], ['ants', 'bees'], { normalize: true });
    expect(texts(svg, 'value')).toEqual(['95%', '5%', '14%', '86%']);
    expect(texts(svg, 'scale-max')).toEqual(['100%']);
    expect(svg).toContain('normalised per actual class');
  });

  it('100 classes: fits about 900 px, every class labelled', () => {
    const names = Array.from({ length: 100 }, (_, i) => `class ${i}`);
    const m = names.map((_, a) => names.map((__, p) => (a === p ? 9 : (a + p) % 17 === 0 ? 1 : 0)));
    const svg = confusionHeatmap(m, names);
    const cells = elements(svg, 'rect', 'cell');
    expect(cells).toHaveLength(10_000);
    expect(num(cells[0].width) * 100).toBeLessThanOrEqual(900);
    expect(num(cells[0].width)).toBeGreaterThanOrEqual(7);
    for (const n of ['class 0', 'class 57', 'class 99']) expect(svg.split(`>${n}</text>`).length - 1).toBe(2); // row and column
    expect(elements(svg, 'rect', 'scale')).toHaveLength(10);
  });
});

describe('top-k bars and lr-find', () => {
  it('the image beside the bars', () => {
    const png = Buffer.from('iVBORw0KGgo=', 'base64');
    const svg = topKChart([{ label: 'Samoyed', prob: 0.6 }, { label: 'wallaby', prob: 0.1 }], 'samoyed.jpg', { png, width: 120, height: 90 });
    const [thumb] = elements(svg, 'image', 'thumbnail');
    expect(thumb.href).toBe(`data:image/png;base64,${png.toString('base64')}`);
    const bars = elements(svg, 'rect', 'bar');
    expect(bars).toHaveLength(2);
    expect(num(bars[0].x)).toBeGreaterThan(10 + 120);
    expect(num(bars[0].width) / num(bars[1].width)).toBeCloseTo(6, 5);
  });

  it('marks the suggested rates where they fall on the log axis', () => {
    const lrs = Array.from({ length: 50 }, (_, i) => 1e-6 * 10 ** (i / 10));
    const svg = lineChart([{ name: 'loss', x: lrs, y: lrs.map((_, i) => 2 - Math.sin(i / 16)) }], {
      xLabel: 'learning rate', yLabel: 'loss', logX: true, marks: [{ x: 1e-4, label: 'valley 1.0e-4' }, { x: 1e-3, label: 'steep 1.0e-3' }],
    });
    const marks = elements(svg, 'line', 'mark');
    expect(texts(svg, 'mark-label')).toEqual(['valley 1.0e-4', 'steep 1.0e-3']);
    const ticks = Object.fromEntries(elements(svg, 'text', 'x-tick').map((t, i) => [texts(svg, 'x-tick')[i], num(t.x)]));
    expect(num(marks[0].x1)).toBeCloseTo(ticks['1e-4'], 0);
    expect(num(marks[1].x1)).toBeCloseTo(ticks['0.001'], 0);
  });
});
