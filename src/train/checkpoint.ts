// The training-state file beside best.onnx / last.onnx: everything `--resume` needs to continue a
// run exactly as if it had never stopped — the weights and batchnorm statistics, the optimizer's
// per-parameter buffers and step counts (SGD's momentum, Adam's moments), the epoch and step reached (mid-epoch after Ctrl-C, with the losses of the steps done),
// the seed and generator state the data order derives from, the history and the best accuracy.
// Layout: 'GPUNETTS', u32 header length, the JSON header (padded to 4 bytes), then the float32
// arrays the header lists by offset. It is written atomically (src/io/files.ts), so a crash at any
// moment leaves either the previous file or the new one, never a torn one.
import { trainingBatchCount } from '../data/dataset.ts';
import { readRegularFile, type WriteChunk, writeFileAtomic } from '../io/files.ts';
import type { Module } from '../nn/module.ts';
import type { Optimizer, OptimizerState } from '../optim/optimizer.ts';
import type { EpochRecord } from './history.ts';

const MAGIC = 'GPUNETTS';
const VERSION = 1;

export interface TrainingState {
  /** epochs completed */
  epoch: number;
  /** steps done in epoch `epoch` (0 at an epoch boundary) */
  stepInEpoch: number;
  /** steps done in the whole run (the schedule's position) */
  globalStep: number;
  /** losses of the `stepInEpoch` steps done in the unfinished epoch */
  partialLosses: number[];
  /** seconds spent in the unfinished epoch */
  partialSeconds: number;
  /** the run's seed and the trainer's generator state (data order and augmentation derive from them) */
  seed: number;
  rngState: number;
  bestAccuracy: number;
  history: EpochRecord[];
  /** the settings that must match on resume (architecture, classes, epochs, rates, ...) */
  config: Record<string, unknown>;
  /** the model's state dict */
  weights: Map<string, Float32Array>;
  /** the optimizer's state(): buffers by name, one per parameter (null: none yet), and step counts */
  optimizer: OptimizerState;
}

interface Entry {
  name: string;
  /** 'momentum': an SGD momentum buffer, as files before optimizer buffers had them */
  kind: 'weight' | 'buffer' | 'momentum';
  /** the optimizer buffer's name (kind 'buffer') */
  buffer?: string;
  /** the parameter's index in the optimizer's order */
  index?: number;
  offset: number;
  length: number;
}

/** An optimizer buffer name: a letter, then letters or digits (expAvg, momentum). */
const BUFFER_NAME = /^[A-Za-z][A-Za-z0-9]{0,31}$/;

export function encodeTrainingState(s: TrainingState): Uint8Array {
  const arrays: Float32Array[] = [];
  const entries: Entry[] = [];
  let offset = 0;
  const add = (e: Omit<Entry, 'offset' | 'length'>, a: Float32Array) => {
    entries.push({ ...e, offset, length: a.length });
    arrays.push(a);
    offset += a.length;
  };
  for (const [name, a] of s.weights) add({ name, kind: 'weight' }, a);
  const buffers = s.optimizer.buffers;
  for (const [buffer, list] of Object.entries(buffers)) list.forEach((a, index) => a && add({ name: `${buffer}.${index}`, kind: 'buffer', buffer, index }, a));
  const { weights, optimizer, ...rest } = s;
  const counts = Object.fromEntries(Object.entries(buffers).map(([n, list]) => [n, list.length]));
  const header = new TextEncoder().encode(JSON.stringify({ version: VERSION, ...rest, optimizerBuffers: counts, optimizerSteps: optimizer.steps, entries }));
  const headerBytes = 8 + 4 + Math.ceil(header.length / 4) * 4;
  const out = new Uint8Array(headerBytes + offset * 4);
  out.set(new TextEncoder().encode(MAGIC), 0);
  new DataView(out.buffer).setUint32(8, header.length, true);
  out.fill(0x20, 12, headerBytes); // spaces pad the JSON
  out.set(header, 12);
  const floats = new Float32Array(out.buffer, headerBytes, offset);
  entries.forEach((e, i) => floats.set(arrays[i], e.offset));
  return out;
}

/** A training-state file that cannot be used, or a run that cannot continue from it: one line
 *  naming the file (or the setting) and the fix. */
export class RunError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RunError';
  }
}

/** A training-state file that cannot be used: the file and what is wrong with it (the message
 *  adds the fix in the library's words; the command line words it with its flags). */
export class StateFileError extends RunError {
  constructor(
    readonly file: string,
    readonly problem: string,
  ) {
    super(`${file}: ${problem}; delete it or choose another run folder`);
    this.name = 'StateFileError';
  }
}

const isInt = (v: unknown, min = 0, max = Number.MAX_SAFE_INTEGER): v is number => Number.isInteger(v) && (v as number) >= min && (v as number) <= max;
const isNum = (v: unknown, min = -Infinity, max = Infinity): v is number => typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max;
const PHASES = ['frozen', 'unfrozen', 'head'];

/**
 * Reads a training-state file, checking every field before it is used (a hand-edited, truncated or
 * hostile file must not crash or mislead the run): sizes against the file's length, counts
 * against each other, every number in its range, every saved value finite.
 */
export function decodeTrainingState(bytes: Uint8Array, source = 'training state'): TrainingState {
  const check = (ok: unknown, why: string) => {
    if (!ok) throw new StateFileError(source, `not a gpunet training state (${why})`);
  };
  check(bytes.length >= 12 && new TextDecoder().decode(bytes.subarray(0, 8)) === MAGIC, 'no GPUNETTS signature');
  const len = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(8, true);
  const headerBytes = 8 + 4 + Math.ceil(len / 4) * 4;
  check(headerBytes <= bytes.length, `its header claims ${len} bytes, the file has ${bytes.length}`);
  let h: Record<string, unknown>;
  try {
    h = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(12, 12 + len)));
  } catch {
    h = null as never;
  }
  check(h && typeof h === 'object' && !Array.isArray(h), 'its header is not a JSON object');
  check(h.version === VERSION, `version ${JSON.stringify(h.version)}, expected ${VERSION}`);
  check(h.config && typeof h.config === 'object' && !Array.isArray(h.config), 'no config');
  const config = h.config as Record<string, unknown>;
  check(isInt(config.epochs, 1), `config.epochs ${JSON.stringify(config.epochs)}`);
  check(isInt(config.trainSize, 1) && isInt(config.batchSize, 1), 'config.trainSize or config.batchSize missing');
  const stepsPerEpoch = trainingBatchCount(config.trainSize as number, config.batchSize as number);
  const epochs = config.epochs as number;
  check(isInt(h.epoch) && h.epoch <= epochs, `epoch ${JSON.stringify(h.epoch)} of a ${epochs}-epoch run`);
  const epoch = h.epoch as number;
  const [trainSize, batchSize] = [config.trainSize as number, config.batchSize as number];
  if (trainSize % batchSize === 1 && batchSize > 1 && isInt(h.stepInEpoch) && h.globalStep === epoch * Math.ceil(trainSize / batchSize) + h.stepInEpoch) {
    throw new StateFileError(source, `saved by an earlier gpunet, which trained a last batch of one image each epoch (${trainSize} images in batches of ${batchSize}); that batch is now left out, so its steps cannot resume exactly`);
  }
  check(isInt(h.stepInEpoch, 0, stepsPerEpoch - 1) && (h.stepInEpoch === 0 || epoch < epochs), `step ${JSON.stringify(h.stepInEpoch)} of ${stepsPerEpoch} in epoch ${epoch + 1}`);
  check(h.globalStep === epoch * stepsPerEpoch + (h.stepInEpoch as number), `global step ${JSON.stringify(h.globalStep)} is not epoch ${epoch} x ${stepsPerEpoch} + ${h.stepInEpoch}`);
  check(Array.isArray(h.partialLosses) && h.partialLosses.length === h.stepInEpoch && h.partialLosses.every((l) => isNum(l)), `partialLosses must be ${h.stepInEpoch} finite numbers`);
  check(isNum(h.partialSeconds, 0), 'partialSeconds');
  check(isInt(h.seed, -Number.MAX_SAFE_INTEGER) && isInt(h.rngState, 0, 2 ** 32 - 1), 'seed or generator state');
  check(h.bestAccuracy === -1 || isNum(h.bestAccuracy, 0, 1), `best accuracy ${JSON.stringify(h.bestAccuracy)}`);
  check(Array.isArray(h.history) && h.history.length === epoch, `the history must hold ${epoch} epochs`);
  (h.history as EpochRecord[]).forEach((r, i) => {
    const ok = r && r.epoch === i + 1 && PHASES.includes(r.phase) && [r.trainLoss, r.validLoss, r.lr, r.seconds].every((v) => isNum(v)) && isNum(r.accuracy, 0, 1) && isNum(r.macroF1, 0, 1);
    check(ok, `history record ${i + 1}`);
  });

  // the arrays: each within the body, weights named once, optimizer buffers indexed once
  const bodyBytes = bytes.length - headerBytes;
  const floats = Math.floor(bodyBytes / 4);
  check(Array.isArray(h.entries), 'no list of arrays');
  const entries = h.entries as Entry[];
  const weightCount = entries.filter((e) => e?.kind === 'weight').length;
  // the optimizer's buffers: named counts, or (files before them) SGD's momentumCount
  const counts: Record<string, unknown> = h.optimizerBuffers !== undefined ? (h.optimizerBuffers as Record<string, unknown>) : { momentum: h.momentumCount };
  check(counts && typeof counts === 'object' && !Array.isArray(counts), 'optimizerBuffers');
  for (const [name, n] of Object.entries(counts)) {
    check(BUFFER_NAME.test(name) && isInt(n, 0, weightCount), `optimizer buffer '${name}' counts ${JSON.stringify(n)} for ${weightCount} weights`);
  }
  const paramCount = Math.max(0, ...Object.values(counts).map(Number));
  const steps = h.optimizerSteps ?? Array(paramCount).fill(0);
  check(Array.isArray(steps) && steps.length <= weightCount && steps.every((n) => isInt(n)), 'optimizerSteps must be step counts, one per parameter');
  for (const e of entries) {
    check(e && typeof e.name === 'string' && ['weight', 'buffer', 'momentum'].includes(e.kind), 'an array without name or kind');
    check(isInt(e.length), `array '${e.name}' has length ${JSON.stringify(e.length)}`);
    if (e.kind === 'momentum') e.buffer = 'momentum';
    if (e.kind === 'weight') continue;
    const n = typeof e.buffer === 'string' && Object.hasOwn(counts, e.buffer) ? (counts[e.buffer] as number) : 0;
    check(isInt(e.index, 0, n - 1), `optimizer array '${e.name}' has index ${JSON.stringify(e.index)} of ${n}`);
  }
  const total = entries.reduce((n, e) => n + e.length, 0);
  check(total === floats, `its header describes ${headerBytes + 4 * total} bytes, the file has ${bytes.length}: torn by a crash or a full disk`);
  for (const e of entries) check(isInt(e.offset, 0, floats - e.length), `array '${e.name}' lies outside the file's ${floats} values`);

  // an aligned copy (a Node Buffer's slice() is a view into a shared pool)
  const body = new Uint8Array(bodyBytes);
  body.set(bytes.subarray(headerBytes));
  const values = new Float32Array(body.buffer);
  const weights = new Map<string, Float32Array>();
  const buffers: Record<string, (Float32Array | null)[]> = Object.fromEntries(Object.entries(counts).map(([name, n]) => [name, Array.from({ length: n as number }, () => null)]));
  for (const e of entries) {
    const a = values.slice(e.offset, e.offset + e.length);
    const bad = a.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) throw new StateFileError(source, `'${e.name}' holds ${a[bad]} at index ${bad}: the saved run diverged or the file is damaged`);
    if (e.kind === 'weight') {
      check(!weights.has(e.name), `weight '${e.name}' twice`);
      weights.set(e.name, a);
    } else {
      check(buffers[e.buffer!][e.index!] === null, `optimizer buffer ${e.buffer} ${e.index} twice`);
      buffers[e.buffer!][e.index!] = a;
    }
  }
  return {
    epoch, stepInEpoch: h.stepInEpoch as number, globalStep: h.globalStep as number, partialLosses: h.partialLosses as number[],
    partialSeconds: h.partialSeconds as number, seed: h.seed as number, rngState: h.rngState as number, bestAccuracy: h.bestAccuracy as number,
    history: h.history as EpochRecord[], config, weights, optimizer: { buffers, steps: steps as number[] },
  };
}

export function saveTrainingState(path: string, s: TrainingState, write?: WriteChunk): void {
  writeFileAtomic(path, encodeTrainingState(s), write);
}

export function loadTrainingState(path: string): TrainingState {
  return decodeTrainingState(readRegularFile(path), path);
}

/** The model's parameters and buffers by state-dict name, read back from the GPU. */
export async function readWeights(model: Module): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, t] of model.stateDict()) out.set(name, await t.toArray());
  return out;
}

/** The full state to save, from the live model and optimizer. */
export async function captureState(model: Module, opt: Optimizer, rest: Omit<TrainingState, 'weights' | 'optimizer'>): Promise<TrainingState> {
  return { ...rest, weights: await readWeights(model), optimizer: await opt.state() };
}
