// Classification metrics against hand-computed cases (scikit-learn is not installed here; the
// expected values are what sklearn's precision_recall_fscore_support / f1_score(average='macro',
// zero_division=0) / confusion_matrix / top_k_accuracy_score give for the same inputs).
import { describe, expect, it } from 'vitest';
import { Rng } from '../src/tensor/index.ts';
import {
  argmaxRows,
  classificationMetrics,
  confusionMatrix,
  formatConfusion,
  formatMostConfused,
  formatReport,
  topKAccuracy,
} from '../src/train/metrics.ts';

describe('classification metrics', () => {
  it('a 3-class case computed by hand', () => {
    const actual = [0, 0, 0, 1, 1, 2];
    const predicted = [0, 0, 1, 1, 2, 2];
    const m = classificationMetrics(predicted, actual, 3, { classNames: ['ant', 'bee', 'wasp'] });
    expect(m.samples).toBe(6);
    expect(m.accuracy).toBeCloseTo(4 / 6, 12);
    // ant: TP 2, predicted 2, support 3; bee: TP 1, predicted 2, support 2; wasp: TP 1, predicted 2, support 1
    const expected = [
      { name: 'ant', precision: 1, recall: 2 / 3, f1: 0.8, support: 3 },
      { name: 'bee', precision: 0.5, recall: 0.5, f1: 0.5, support: 2 },
      { name: 'wasp', precision: 0.5, recall: 1, f1: 2 / 3, support: 1 },
    ];
    m.perClass.forEach((c, i) => {
      expect(c.name).toBe(expected[i].name);
      expect(c.index).toBe(i);
      expect(c.precision).toBeCloseTo(expected[i].precision, 12);
      expect(c.recall).toBeCloseTo(expected[i].recall, 12);
      expect(c.f1).toBeCloseTo(expected[i].f1, 12);
      expect(c.support).toBe(expected[i].support);
    });
    expect(m.macroF1).toBeCloseTo((0.8 + 0.5 + 2 / 3) / 3, 12);
    expect(m.macroPrecision).toBeCloseTo(2 / 3, 12);
    expect(m.macroRecall).toBeCloseTo((2 / 3 + 0.5 + 1) / 3, 12);
    expect(m.weightedF1).toBeCloseTo((0.8 * 3 + 0.5 * 2 + (2 / 3) * 1) / 6, 12);
    expect(m.confusion).toEqual([
      [2, 1, 0],
      [0, 1, 1],
      [0, 0, 1],
    ]);
    expect(m.mostConfused).toEqual([
      { actual: 'ant', predicted: 'bee', count: 1 },
      { actual: 'bee', predicted: 'wasp', count: 1 },
    ]);
    expect(m.topK).toEqual({}); // no logits, no top-k
  });

  it('zero division gives 0, and only classes seen as label or prediction are averaged', () => {
    // class 0 never predicted (precision 0/0), class 2 predicted but never a label (recall 0/0),
    // class 4 neither: sklearn's macro-F1 averages over {0,1,2,3} -> (0 + 1 + 0 + 1) / 4
    const m = classificationMetrics([2, 1, 1, 3], [0, 1, 1, 3], 5);
    expect(m.labels).toEqual([0, 1, 2, 3]);
    expect(m.perClass.map((c) => [c.precision, c.recall, c.f1, c.support])).toEqual([
      [0, 0, 0, 1],
      [1, 1, 1, 2],
      [0, 0, 0, 0],
      [1, 1, 1, 1],
    ]);
    expect(m.macroF1).toBe(0.5);
    expect(m.accuracy).toBe(0.75);
    // with every class listed explicitly (sklearn's labels=range(5)), the empty class counts too
    expect(classificationMetrics([2, 1, 1, 3], [0, 1, 1, 3], 5, { labels: [0, 1, 2, 3, 4] }).macroF1).toBeCloseTo(0.4, 12);
  });

  it('top-k from logits, ties going to the lower class index as argmax does', () => {
    const logits = Float32Array.from([
      0.1, 0.5, 0.3, 0.2, // label 2 ranks second
      1, 1, 0, 0, // label 1 ties with class 0, which wins
      0, 0, 0, 5, // label 3 first
    ]);
    const labels = [2, 1, 3];
    expect(argmaxRows(logits, 4)).toEqual([1, 0, 3]);
    expect(topKAccuracy(logits, labels, 1)).toBeCloseTo(1 / 3, 12);
    expect(topKAccuracy(logits, labels, 2)).toBe(1);
    const m = classificationMetrics(logits, labels, 4, { topK: [2, 3, 4] });
    expect(m.accuracy).toBeCloseTo(1 / 3, 12);
    expect(m.topK).toEqual({ 2: 1, 3: 1 }); // k = 4 classes is skipped: trivially 1
  });

  it('agrees with the counting definitions on random data', () => {
    const rng = new Rng(7);
    const k = 6;
    const n = 500;
    const actual = Array.from({ length: n }, () => Math.floor(rng.uniform(0, k)));
    const logits = Float32Array.from({ length: n * k }, () => rng.normal());
    const m = classificationMetrics(logits, actual, k);
    const predicted = argmaxRows(logits, k);
    const cm = confusionMatrix(predicted, actual, [...Array(k).keys()]);
    expect(m.confusion).toEqual(cm);
    expect(cm.flat().reduce((a, b) => a + b, 0)).toBe(n);
    for (const c of m.perClass) {
      // F1 = 2TP / (2TP + FP + FN), an independent form of the harmonic mean
      const tp = cm[c.index][c.index];
      const fn = cm[c.index].reduce((a, b) => a + b, 0) - tp;
      const fp = cm.reduce((s, row) => s + row[c.index], 0) - tp;
      expect(c.f1).toBeCloseTo((2 * tp) / (2 * tp + fp + fn), 12);
      expect(c.support).toBe(tp + fn);
    }
    expect(m.accuracy).toBeCloseTo(cm.reduce((s, row, i) => s + row[i], 0) / n, 12);
    // top-k accuracy by sorting each row
    let hits = 0;
    for (let r = 0; r < n; r++) {
      const row = Array.from(logits.subarray(r * k, (r + 1) * k));
      const order = [...row.keys()].sort((a, b) => row[b] - row[a]);
      if (order.slice(0, 5).includes(actual[r])) hits++;
    }
    expect(m.topK[5]).toBeCloseTo(hits / n, 12);
    // most confused pairs: largest off-diagonal counts, descending
    const off = cm.flatMap((row, a) => row.map((v, p) => (a === p ? 0 : v))).sort((a, b) => b - a);
    expect(m.mostConfused.map((p) => p.count)).toEqual(off.slice(0, 10));
  });

  it('formats a report, a confusion table and the confused pairs', () => {
    const m = classificationMetrics([0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 2], 3, { classNames: ['ant', 'bee', 'wasp'] });
    const report = formatReport(m);
    expect(report).toMatch(/^samples: 6 {3}accuracy: 66\.67% {3}macro-F1: 0\.6556/);
    expect(report).toMatch(/^ant\s+1\.0000\s+0\.6667\s+0\.8000\s+3$/m);
    expect(report).toMatch(/^macro avg\s+0\.6667\s+0\.7222\s+0\.6556\s+6$/m);
    expect(formatConfusion(m).split('\n')[2]).toMatch(/^0 ant\s+2\s+1\s+0$/);
    expect(formatMostConfused(m)).toMatch(/^ant\s+bee\s+1$/m);
  });

  it('rejects labels outside the classes and mismatched lengths', () => {
    expect(() => classificationMetrics([0, 1], [0, 3], 3)).toThrow(/label 3 is not a class index below 3/);
    expect(() => classificationMetrics(new Float32Array(5), [0, 1], 3)).toThrow(/5 logits for 2 samples of 3 classes/);
  });
});
