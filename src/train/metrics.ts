// Classification metrics from logits (or predicted classes) and true labels, as scikit-learn
// defines them with zero_division=0:
//   precision_c = TP_c / (TP_c + FP_c)   recall_c = TP_c / (TP_c + FN_c)   F1_c = 2PR / (P + R)
// (0 where a denominator is 0), macro averages the unweighted mean over the reported classes, which
// are by default the classes that occur as a label or a prediction (sklearn's unique_labels), so a
// 1000-class model scored on 20 photos is not averaged over 980 empty classes.
import { printable } from '../io/printable.ts';

export interface ClassMetrics {
  /** class index (the logit column) */
  index: number;
  name: string;
  precision: number;
  recall: number;
  f1: number;
  /** number of samples whose true label is this class */
  support: number;
}

export interface ConfusedPair {
  actual: string;
  predicted: string;
  count: number;
}

export interface Metrics {
  samples: number;
  accuracy: number;
  /** top-k accuracy for each k asked for (k < the number of classes), e.g. { 5: 0.83 } */
  topK: Record<number, number>;
  /** one row per reported class, in class index order */
  perClass: ClassMetrics[];
  macroPrecision: number;
  macroRecall: number;
  macroF1: number;
  /** support-weighted mean F1 (sklearn's average='weighted') */
  weightedF1: number;
  /** the reported classes' indices; rows = actual, columns = predicted, in this order */
  labels: number[];
  confusion: number[][];
  /** off-diagonal confusion cells, largest first (ties by actual then predicted class index) */
  mostConfused: ConfusedPair[];
}

export interface MetricsOptions {
  /** names of all classes (index order); default '0', '1', ... */
  classNames?: string[];
  /** the classes to report (default: those occurring as a label or a prediction) */
  labels?: number[];
  /** top-k accuracies to compute from logits (default [5]); skipped for k >= the number of classes */
  topK?: number[];
  /** how many confused pairs to keep (default 10) */
  mostConfused?: number;
}

/** The predicted class of each row of `logits` (`[n, classes]`), the first largest value. */
export function argmaxRows(logits: Float32Array, classes: number): number[] {
  const n = logits.length / classes;
  const out = new Array<number>(n);
  for (let r = 0; r < n; r++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (logits[r * classes + c] > logits[r * classes + best]) best = c;
    out[r] = best;
  }
  return out;
}

/** The rank of `label` in `row` when sorted by decreasing score, ties going to the lower index
 *  (so rank 0 is argmaxRows' pick). */
function rankOf(row: ArrayLike<number>, label: number): number {
  const s = row[label];
  let rank = 0;
  for (let c = 0; c < row.length; c++) if (row[c] > s || (row[c] === s && c < label)) rank++;
  return rank;
}

/** Fraction of rows of `logits` [n, classes] whose label is among the k highest scores. */
export function topKAccuracy(logits: Float32Array, labels: readonly number[], k: number): number {
  const classes = logits.length / labels.length;
  let hits = 0;
  labels.forEach((label, r) => {
    if (rankOf(logits.subarray(r * classes, (r + 1) * classes), label) < k) hits++;
  });
  return hits / Math.max(1, labels.length);
}

/** counts[a][p] = number of samples of actual class labels[a] predicted as labels[p]. */
export function confusionMatrix(predicted: readonly number[], actual: readonly number[], labels: readonly number[]): number[][] {
  const pos = new Map(labels.map((l, i) => [l, i]));
  const m = labels.map(() => labels.map(() => 0));
  actual.forEach((a, i) => {
    const r = pos.get(a);
    const c = pos.get(predicted[i]);
    if (r !== undefined && c !== undefined) m[r][c]++;
  });
  return m;
}

const ratio = (num: number, den: number) => (den === 0 ? 0 : num / den);

/**
 * Every metric of a classifier's outputs on labelled samples. `outputs` is either logits
 * [n, classes] (a Float32Array; enables top-k) or the predicted class of each sample.
 */
export function classificationMetrics(
  outputs: Float32Array | readonly number[],
  actual: readonly number[],
  numClasses: number,
  opts: MetricsOptions = {},
): Metrics {
  const n = actual.length;
  const logits = outputs instanceof Float32Array ? outputs : null;
  if (logits && logits.length !== n * numClasses) {
    throw new Error(`metrics: ${logits.length} logits for ${n} samples of ${numClasses} classes`);
  }
  if (!logits && outputs.length !== n) throw new Error(`metrics: ${outputs.length} predictions for ${n} labels`);
  for (const a of actual) if (!Number.isInteger(a) || a < 0 || a >= numClasses) throw new Error(`metrics: label ${a} is not a class index below ${numClasses}`);
  const predicted = logits ? argmaxRows(logits, numClasses) : [...(outputs as readonly number[])];
  const names = opts.classNames ?? Array.from({ length: numClasses }, (_, i) => String(i));
  const labels = opts.labels ?? [...new Set([...actual, ...predicted])].sort((a, b) => a - b);

  const tp = new Map<number, number>();
  const predCount = new Map<number, number>();
  const support = new Map<number, number>();
  const inc = (m: Map<number, number>, k: number) => m.set(k, (m.get(k) ?? 0) + 1);
  let correct = 0;
  actual.forEach((a, i) => {
    inc(support, a);
    inc(predCount, predicted[i]);
    if (predicted[i] === a) {
      correct++;
      inc(tp, a);
    }
  });
  const perClass = labels.map((c): ClassMetrics => {
    const t = tp.get(c) ?? 0;
    const precision = ratio(t, predCount.get(c) ?? 0);
    const recall = ratio(t, support.get(c) ?? 0);
    return { index: c, name: names[c] ?? String(c), precision, recall, f1: ratio(2 * precision * recall, precision + recall), support: support.get(c) ?? 0 };
  });
  const mean = (f: (m: ClassMetrics) => number) => ratio(perClass.reduce((s, m) => s + f(m), 0), perClass.length);
  const supported = perClass.reduce((s, m) => s + m.support, 0);

  const topK: Record<number, number> = {};
  if (logits) for (const k of opts.topK ?? [5]) if (k < numClasses) topK[k] = topKAccuracy(logits, actual, k);

  const confusion = confusionMatrix(predicted, actual, labels);
  const pairs: ConfusedPair[] = [];
  confusion.forEach((row, a) =>
    row.forEach((count, p) => {
      if (a !== p && count > 0) pairs.push({ actual: perClass[a].name, predicted: perClass[p].name, count });
    }),
  );
  // stable sort keeps the row-major (actual, predicted) order among equal counts
  pairs.sort((x, y) => y.count - x.count);

  return {
    samples: n,
    accuracy: ratio(correct, n),
    topK,
    perClass,
    macroPrecision: mean((m) => m.precision),
    macroRecall: mean((m) => m.recall),
    macroF1: mean((m) => m.f1),
    weightedF1: ratio(perClass.reduce((s, m) => s + m.f1 * m.support, 0), supported),
    labels,
    confusion,
    mostConfused: pairs.slice(0, opts.mostConfused ?? 10),
  };
}

// ---- text output --------------------------------------------------------------------------------

/** Lines of a table; `align` has an 'l' or 'r' per column (default: first left, others right). */
export function formatTable(header: string[], cells: string[][], align = `l${'r'.repeat(header.length - 1)}`): string {
  const rows = cells.map((r) => r.map((c) => printable(c))); // file and class names are users' strings
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((v, i) => (align[i] === 'l' ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

const pct = (v: number) => `${(100 * v).toFixed(2)}%`;

/** The report as sklearn's classification_report lays it out, plus accuracy and top-k. */
export function formatReport(m: Metrics): string {
  const f = (v: number) => v.toFixed(4);
  const rows = m.perClass.map((c) => [c.name, f(c.precision), f(c.recall), f(c.f1), String(c.support)]);
  rows.push(['macro avg', f(m.macroPrecision), f(m.macroRecall), f(m.macroF1), String(m.samples)]);
  const head = [`samples: ${m.samples}`, `accuracy: ${pct(m.accuracy)}`, ...Object.entries(m.topK).map(([k, v]) => `top-${k} accuracy: ${pct(v)}`), `macro-F1: ${f(m.macroF1)}`];
  return [head.join('   '), '', formatTable(['class', 'precision', 'recall', 'f1', 'support'], rows)].join('\n');
}

/** The confusion matrix as a text table (rows actual, columns predicted, by column number). */
export function formatConfusion(m: Metrics): string {
  const header = ['actual \\ predicted', ...m.perClass.map((_, i) => String(i))];
  const rows = m.confusion.map((row, i) => [`${i} ${m.perClass[i].name}`, ...row.map(String)]);
  return formatTable(header, rows);
}

export function formatMostConfused(m: Metrics): string {
  if (m.mostConfused.length === 0) return 'most confused: none';
  return formatTable(
    ['actual', 'predicted as', 'count'],
    m.mostConfused.map((p) => [p.actual, p.predicted, String(p.count)]),
    'llr',
  );
}
