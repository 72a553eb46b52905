// The per-epoch training history (Keras' History callback): history.csv, history.json and the
// curves in history.png, each rewritten atomically after every epoch, so a run stopped at any
// moment leaves complete files describing the epochs done.
import { join } from 'node:path';
import { writeFileAtomic } from '../io/files.ts';
import { formatDuration } from '../report/progress.ts';
import { savePng, stackedCharts } from '../report/plot.ts';

export interface EpochRecord {
  /** 1-based */
  epoch: number;
  /** 'frozen': backbone frozen (head and batchnorm train); 'unfrozen': everything trains;
   *  'head': a fully frozen backbone (cached features) */
  phase: 'frozen' | 'unfrozen' | 'head';
  trainLoss: number;
  validLoss: number;
  accuracy: number;
  macroF1: number;
  /** the head group's rate at the epoch's last step */
  lr: number;
  /** seconds, training and validation */
  seconds: number;
}

const COLUMNS: (keyof EpochRecord)[] = ['epoch', 'phase', 'trainLoss', 'validLoss', 'accuracy', 'macroF1', 'lr', 'seconds'];

export function historyCsv(records: EpochRecord[]): string {
  const cell = (v: string | number) => (typeof v === 'number' ? String(Number(v.toPrecision(8))) : v);
  return [COLUMNS.join(','), ...records.map((r) => COLUMNS.map((c) => cell(r[c])).join(','))].join('\n') + '\n';
}

/** The one line printed after an epoch. */
export function formatEpoch(r: EpochRecord, epochs: number): string {
  return (
    `epoch ${r.epoch}/${epochs} (${r.phase}): train loss ${r.trainLoss.toFixed(4)}  valid loss ${r.validLoss.toFixed(4)}  ` +
    `accuracy ${(100 * r.accuracy).toFixed(2)}%  macro-F1 ${r.macroF1.toFixed(4)}  lr ${r.lr.toExponential(2)}  ${formatDuration(r.seconds)}`
  );
}

/**
 * The curves of a run: losses in one panel, accuracy and macro-F1 on 0-1 in another, one tick per
 * epoch (or every few), a dashed line where the phase changes (frozen -> unfrozen).
 */
export function historySvg(records: EpochRecord[]): string {
  const x = records.map((r) => r.epoch);
  const series = (name: string, key: 'trainLoss' | 'validLoss' | 'accuracy' | 'macroF1') => ({ name, x, y: records.map((r) => r[key]) });
  const marks = records.slice(1).flatMap((r, i) => (r.phase !== records[i].phase ? [{ x: r.epoch - 0.5, label: `${records[i].phase} → ${r.phase}` }] : []));
  const common = { xLabel: 'epoch', integerX: true, dots: true, marks };
  return stackedCharts(
    [
      { series: [series('train loss', 'trainLoss'), series('valid loss', 'validLoss')], opts: { ...common, yLabel: 'loss' } },
      { series: [series('accuracy', 'accuracy'), series('macro-F1', 'macroF1')], opts: { ...common, yLabel: 'score', yRange: [0, 1] } },
    ],
    'Training history',
  );
}

/** Writes history.csv, history.json and history.png into `dir`. */
export async function writeHistory(dir: string, records: EpochRecord[]): Promise<void> {
  writeFileAtomic(join(dir, 'history.csv'), historyCsv(records));
  writeFileAtomic(join(dir, 'history.json'), JSON.stringify(records, null, 1) + '\n');
  await savePng(historySvg(records), join(dir, 'history.png'));
}
