// Autotuning: kernel configurations (tile shapes, workgroup sizes, vector widths) chosen per adapter
// and per shape by timing a short list of candidates, cached on disk per adapter. A kernel family
// declares its knobs and candidates once (e.g. CONV2D_CANDIDATES in src/ops/conv2d.ts); without a
// cached choice it runs its safe default, and every candidate is correct (the tests run them all).
//
// The cache is one JSON file per adapter (its name, vendor, architecture and limits hashed into the
// file name) in $GPUNET_CACHE_DIR, else $XDG_CACHE_HOME/gpunet, else ~/.cache/gpunet:
//   { adapter: {...}, choices: { '<family> <shape key>': { config, ms, defaultMs } } }
// Shapes seen without a cached choice are remembered (pending()), so that a command given --tune
// tunes them after its first step and `gpunet tune` tunes a whole model's.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { ensureDir, writeFileAtomic } from '../io/files.ts';
import type { Gpu } from './gpu.ts';

export type TuneConfig = Record<string, number | boolean | string>;

export interface TuneChoice {
  config: TuneConfig;
  /** the chosen candidate's time and the default's, ms (the fastest of a few runs) */
  ms: number;
  defaultMs: number;
}

/** A shape to tune: setup() allocates operands of the shape; launch(config) records one launch of
 *  the kernel (or kernels) with that configuration. */
export interface TuneTask {
  family: string;
  key: string;
  candidates: readonly TuneConfig[];
  defaultConfig: TuneConfig;
  setup: () => { launch: (config: TuneConfig) => void; dispose: () => void };
}

interface CacheFile {
  adapter: Record<string, unknown>;
  choices: Record<string, TuneChoice>;
}

function cacheDir(): string {
  return process.env.GPUNET_CACHE_DIR || join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'gpunet');
}

export class TuneCache {
  readonly file: string;
  private data: CacheFile;
  private readonly pendingTasks = new Map<string, TuneTask>();

  constructor(private readonly gpu: Gpu) {
    const { name, vendor, architecture, limits } = gpu.adapter;
    const adapter = { name, vendor, architecture, limits };
    const id = createHash('sha256').update(JSON.stringify(adapter)).digest('hex').slice(0, 16);
    this.file = join(cacheDir(), `tuning-${id}.json`);
    this.data = { adapter, choices: {} };
    if (existsSync(this.file)) {
      try {
        const read = JSON.parse(readFileSync(this.file, 'utf8')) as CacheFile;
        if (read && typeof read.choices === 'object') this.data.choices = read.choices;
      } catch {
        // a damaged cache is a cache miss: tuning writes a good one
      }
    }
  }

  /** The cached configuration of `family` at `key`, or null (the caller runs its default). */
  lookup(family: string, key: string): TuneConfig | null {
    return this.data.choices[`${family} ${key}`]?.config ?? null;
  }

  choices(): Record<string, TuneChoice> {
    return { ...this.data.choices };
  }

  /** Remembers a shape that ran without a cached choice, for tunePending(). */
  notePending(task: TuneTask): void {
    const id = `${task.family} ${task.key}`;
    if (!(id in this.data.choices)) this.pendingTasks.set(id, task);
  }

  pending(): TuneTask[] {
    return [...this.pendingTasks.values()];
  }

  /** Times every candidate of `task` (fastest of `runs` launches each, timestamp queries) and caches the fastest. */
  async tune(task: TuneTask, runs = 3): Promise<TuneChoice> {
    const gpu = this.gpu;
    const { launch, dispose } = task.setup();
    const timeOf = async (config: TuneConfig): Promise<number> => {
      launch(config); // compiles the pipeline and warms the caches, untimed
      await gpu.sync();
      gpu.startProfiling();
      for (let r = 0; r < runs; r++) {
        launch(config);
        gpu.flush();
      }
      const { events } = await gpu.stopProfiling();
      // a launch may be several dispatches (one per submit here): its time is their sum
      const perRun = new Map<number, number>();
      for (const e of events) perRun.set(e.submit, (perRun.get(e.submit) ?? 0) + (e.endNs - e.beginNs) / 1e6);
      return Math.min(...perRun.values());
    };
    let defaultMs: number;
    let best: { config: TuneConfig; ms: number };
    try {
      defaultMs = await timeOf(task.defaultConfig);
      best = { config: task.defaultConfig, ms: defaultMs };
      for (const config of task.candidates) {
        const ms = await timeOf(config);
        if (ms < best.ms) best = { config, ms };
      }
    } finally {
      dispose();
    }
    const choice = { ...best, defaultMs };
    this.data.choices[`${task.family} ${task.key}`] = choice;
    this.pendingTasks.delete(`${task.family} ${task.key}`);
    return choice;
  }

  /** Tunes every shape noted since the last call (onTuned reports each), then saves the cache. */
  async tunePending(onTuned?: (task: TuneTask, choice: TuneChoice) => void): Promise<void> {
    for (const task of this.pending()) onTuned?.(task, await this.tune(task));
    this.save();
  }

  save(): void {
    ensureDir(dirname(this.file));
    writeFileAtomic(this.file, JSON.stringify(this.data, null, 1));
  }
}

const caches = new WeakMap<Gpu, TuneCache>();

/** The tuning cache of `gpu`'s adapter (read from disk the first time). */
export function tuneCache(gpu: Gpu): TuneCache {
  let c = caches.get(gpu);
  if (!c) caches.set(gpu, (c = new TuneCache(gpu)));
  return c;
}
