// The training-state file beside best.onnx / last.onnx: everything `--resume` needs to continue a
// run exactly as if it had never stopped — the weights and batchnorm statistics, SGD's momentum
// buffers, the epoch and step reached (mid-epoch after Ctrl-C, with the losses of the steps done),
// the seed and generator state the data order derives from, the history and the best accuracy.
// Layout: 'GPUNETTS', u32 header length, the JSON header (padded to 4 bytes), then the float32
// arrays the header lists by offset. It is written atomically (src/io/files.ts), so a crash at any
// moment leaves either the previous file or the new one, never a torn one.
import { readFileSync } from 'node:fs';
import { type WriteChunk, writeFileAtomic } from '../io/files.ts';
import type { Module } from '../nn/module.ts';
import type { SGD } from '../optim/sgd.ts';
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
  /** SGD.state().momentumBuffers */
  momentum: (Float32Array | null)[];
}

interface Entry {
  name: string;
  kind: 'weight' | 'momentum';
  /** index of the momentum buffer */
  index?: number;
  offset: number;
  length: number;
}

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
  s.momentum.forEach((a, index) => a && add({ name: `momentum.${index}`, kind: 'momentum', index }, a));
  const { weights, momentum, ...rest } = s;
  const header = new TextEncoder().encode(JSON.stringify({ version: VERSION, ...rest, momentumCount: momentum.length, entries }));
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

export function decodeTrainingState(bytes: Uint8Array, source = 'training state'): TrainingState {
  const bad = (why: string) => new Error(`${source}: not a gpunet training-state file (${why})`);
  if (bytes.length < 12 || new TextDecoder().decode(bytes.subarray(0, 8)) !== MAGIC) throw bad('wrong magic');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const len = view.getUint32(8, true);
  const headerBytes = 8 + 4 + Math.ceil(len / 4) * 4;
  if (headerBytes > bytes.length) throw bad('truncated header');
  const h = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + len)));
  if (h.version !== VERSION) throw bad(`version ${h.version}, expected ${VERSION}`);
  // an aligned copy (a Node Buffer's slice() is a view into a shared pool)
  const body = new Uint8Array(bytes.length - headerBytes);
  body.set(bytes.subarray(headerBytes));
  const floats = new Float32Array(body.buffer, 0, body.length / 4);
  const weights = new Map<string, Float32Array>();
  const momentum: (Float32Array | null)[] = Array.from({ length: h.momentumCount }, () => null);
  for (const e of h.entries as Entry[]) {
    if (e.offset + e.length > floats.length) throw bad(`truncated data for '${e.name}'`);
    const a = floats.slice(e.offset, e.offset + e.length);
    if (e.kind === 'weight') weights.set(e.name, a);
    else momentum[e.index!] = a;
  }
  const { version, entries, momentumCount, ...rest } = h;
  return { ...rest, weights, momentum } as TrainingState;
}

export function saveTrainingState(path: string, s: TrainingState, write?: WriteChunk): void {
  writeFileAtomic(path, encodeTrainingState(s), write);
}

export function loadTrainingState(path: string): TrainingState {
  return decodeTrainingState(readFileSync(path), path);
}

/** The model's parameters and buffers by state-dict name, read back from the GPU. */
export async function readWeights(model: Module): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, t] of model.stateDict()) out.set(name, await t.toArray());
  return out;
}

/** Writes saved weights into the model; every name must match in both directions, with its size. */
export function writeWeights(model: Module, weights: Map<string, Float32Array>, source: string): void {
  const dict = model.stateDict();
  const missing = [...dict.keys()].filter((n) => !weights.has(n));
  const extra = [...weights.keys()].filter((n) => !dict.has(n));
  if (missing.length || extra.length) {
    throw new Error(`${source}: the saved weights do not fit the model (missing ${missing.slice(0, 3).join(', ') || 'none'}; unexpected ${extra.slice(0, 3).join(', ') || 'none'})`);
  }
  for (const [name, t] of dict) {
    const a = weights.get(name)!;
    if (a.length !== t.size) throw new Error(`${source}: '${name}' holds ${a.length} values, the model's ${t.size}`);
    t.set(a);
  }
}

/** The full state to save, from the live model and optimizer. */
export async function captureState(model: Module, opt: SGD, rest: Omit<TrainingState, 'weights' | 'momentum'>): Promise<TrainingState> {
  return { ...rest, weights: await readWeights(model), momentum: (await opt.state()).momentumBuffers };
}
