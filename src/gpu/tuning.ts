// Autotuning: kernel configurations (tile shapes, workgroup sizes, vector widths) chosen per adapter
// and per shape by timing a short list of candidates, cached on disk per adapter. A kernel family
// declares its knobs and candidates once (e.g. CONV2D_CANDIDATES in src/ops/conv2d.ts); without a
// cached choice it runs its safe default, and every candidate is correct (the tests run them all).
//
// How candidates are timed: all of them in each of a few rounds (each round starting at another
// one), and each one's median over the rounds, so that load which comes and goes hits them alike.
// On a CPU adapter a launch's time is the CPU time of lavapipe's worker threads (a preempted
// thread's wait does not count; a timestamp counts it: one configuration read 25.4 then 15.6 ms
// in one run, bench/NOTES.md section 12), elsewhere the timestamp queries' GPU time. A candidate
// replaces the default only when it is faster by more than the noise a median still has (3%).
//
// The cache is one JSON file per adapter (its name, vendor, architecture and limits hashed into the
// file name) in $GPUNET_CACHE_DIR, else $XDG_CACHE_HOME/gpunet, else ~/.cache/gpunet:
//   { version: 2, adapter: {...}, choices: { '<family> <shape key>': { config, ms, defaultMs, timer } } }
// A file of another version (1: timed sequentially by timestamps, choices that were often the
// load's) is read as empty and replaced when tuning saves.
// Shapes seen without a cached choice are remembered (pending()), so that a command given --tune
// tunes them after its first step and `gpunet tune` tunes a whole model's.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { ensureDir, writeFileAtomic } from '../io/files.ts';
import type { Gpu } from './gpu.ts';
import { workerCpuMs } from './wait.ts';

export type TuneConfig = Record<string, number | boolean | string>;

export interface TuneChoice {
  config: TuneConfig;
  /** the chosen candidate's time and the default's, ms per launch (medians over the rounds) */
  ms: number;
  defaultMs: number;
  /** what timed them: lavapipe's worker CPU or timestamp queries */
  timer: 'worker-cpu' | 'timestamps';
}

/** Times one launch (it records dispatches; the timer submits and waits), ms. */
export interface TuneTimer {
  name: TuneChoice['timer'];
  time: (launch: () => void) => Promise<number>;
}

/** GPU time of a launch's dispatches by timestamp queries (the sum when it is several). */
export function timestampTimer(gpu: Gpu): TuneTimer {
  return {
    name: 'timestamps',
    time: async (launch) => {
      gpu.startProfiling();
      launch();
      const { events } = await gpu.stopProfiling();
      return events.reduce((ms, e) => ms + (e.endNs - e.beginNs) / 1e6, 0);
    },
  };
}

/** CPU time of the worker threads during a launch (workerCpuMs), ms. A launch of W workgroups on T
 *  threads keeps them busy for ceil(W / T) rounds, so its CPU counts T * ceil(W / T) / W times: a
 *  tile too big to give every thread work is not cheaper for the idle threads' share. */
export function workerCpuTimer(gpu: Gpu): TuneTimer {
  return {
    name: 'worker-cpu',
    time: async (launch) => {
      const w0 = gpu.workgroupCount;
      const before = workerCpuMs();
      launch();
      await gpu.sync();
      const after = workerCpuMs();
      const workgroups = gpu.workgroupCount - w0;
      const threads = Math.max(1, after.threads);
      const idle = workgroups > 0 ? (threads * Math.ceil(workgroups / threads)) / workgroups : 1;
      return (after.ms - before.ms) * idle;
    },
  };
}

/** The timer tune() uses on `gpu`: worker CPU on a CPU adapter where it can be read, else timestamps. */
function defaultTimer(gpu: Gpu): TuneTimer {
  return gpu.isCpu && Number.isFinite(workerCpuMs().ms) ? workerCpuTimer(gpu) : timestampTimer(gpu);
}

/** How much faster than the default a candidate's median must be to replace it. */
const MARGIN = 0.03;

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/**
 * Which configuration wins, from `samples[i]`, configuration i's times over the rounds (0: the
 * default): the lowest median, unless it is within `margin` of the default's, which then stays.
 */
export function chooseFastest(samples: readonly (readonly number[])[], margin = MARGIN): { index: number; medians: number[] } {
  const medians = samples.map(median);
  let index = 0;
  for (let i = 1; i < medians.length; i++) if (medians[i] < medians[index]) index = i;
  if (medians[index] > medians[0] * (1 - margin)) index = 0;
  return { index, medians };
}

const VERSION = 2;

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
  version: number;
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
  /** the version of a cache file found with another one (its choices were not read), else null */
  readonly outdated: number | null = null;

  constructor(private readonly gpu: Gpu) {
    const { name, vendor, architecture, limits } = gpu.adapter;
    const adapter = { name, vendor, architecture, limits };
    const id = createHash('sha256').update(JSON.stringify(adapter)).digest('hex').slice(0, 16);
    this.file = join(cacheDir(), `tuning-${id}.json`);
    this.data = { version: VERSION, adapter, choices: {} };
    if (existsSync(this.file)) {
      try {
        const read = JSON.parse(readFileSync(this.file, 'utf8')) as CacheFile;
        if (read && (read.version ?? 1) !== VERSION) this.outdated = read.version ?? 1;
        else if (read && typeof read.choices === 'object') this.data.choices = read.choices;
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

  /** Times the default and every candidate of `task` in `rounds` interleaved rounds (each launch
   *  once, after one untimed launch of each that compiles its pipelines) and caches the winner
   *  (chooseFastest). `timer`: worker CPU on CPU adapters, else timestamps. */
  async tune(task: TuneTask, opts: { rounds?: number; timer?: TuneTimer } = {}): Promise<TuneChoice> {
    const { rounds = 5, timer = defaultTimer(this.gpu) } = opts;
    const same = (a: TuneConfig, b: TuneConfig) => JSON.stringify(a) === JSON.stringify(b);
    const configs = [task.defaultConfig, ...task.candidates.filter((c) => !same(c, task.defaultConfig))];
    const samples = configs.map(() => [] as number[]);
    const { launch, dispose } = task.setup();
    try {
      for (const config of configs) launch(config);
      await this.gpu.sync();
      for (let r = 0; r < rounds; r++) {
        for (let j = 0; j < configs.length; j++) {
          const i = (r + j) % configs.length;
          samples[i].push(await timer.time(() => launch(configs[i])));
        }
      }
    } finally {
      dispose();
    }
    const { index, medians } = chooseFastest(samples);
    const choice: TuneChoice = { config: configs[index], ms: medians[index], defaultMs: medians[0], timer: timer.name };
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
