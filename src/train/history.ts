// The per-epoch training history (Keras' History callback): history.csv, history.json and the
// curves in history.png, each rewritten atomically after every epoch, so a run stopped at any
// moment leaves complete files describing the epochs done.
import { join } from 'node:path';
import { writeFileAtomic } from '../io/files.ts';
import { formatDuration } from '../report/progress.ts';
import { lineChart, savePng } from '../report/plot.ts';

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

/** Writes history.csv, history.json and history.png into `dir`. */
export async function writeHistory(dir: string, records: EpochRecord[]): Promise<void> {
  writeFileAtomic(join(dir, 'history.csv'), historyCsv(records));
  writeFileAtomic(join(dir, 'history.json'), JSON.stringify(records, null, 1) + '\n');
  const x = records.map((r) => r.epoch);
  const series = (name: string, key: 'trainLoss' | 'validLoss' | 'accuracy' | 'macroF1') => ({ name, x, y: records.map((r) => r[key]) });
  const svg = lineChart([series('train loss', 'trainLoss'), series('valid loss', 'validLoss'), series('accuracy', 'accuracy'), series('macro-F1', 'macroF1')], {
    xLabel: 'epoch',
    yLabel: 'loss / score',
    title: 'Training history',
  });
  await savePng(svg, join(dir, 'history.png'));
}
