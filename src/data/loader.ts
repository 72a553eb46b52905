// The training loader: samples in, batches of decoded, augmented, normalised images out, with the
// decoding and augmentation in worker threads and a few batches prefetched, so the GPU does not wait.
//
// Reproducibility: an epoch's order is a shuffle seeded by (seed, epoch) and each sample's
// augmentation is seeded by (seed, epoch, sample index), never by the worker or the order in which
// results arrive. So any epoch can be replayed on its own (exact resume), and the batches are the
// same for any number of workers, including none (workers: 0 decodes on the calling thread).
//
// A file that fails to decode in the middle of an epoch (its header passed scanDataset's check but
// its data is broken) is left out of its batch, reported once through `onSkip`/`failed` and not
// tried again; the epoch goes on.
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Rng } from '../tensor/random.ts';
import { augmentImage, type AugmentOptions } from './augment.ts';
import { weightedDraws } from './sampler.ts';
import { type Batch, type Sample, type SkippedFile, trainingBatchCount } from './dataset.ts';
import { ImageError } from './image.ts';

export interface LoaderOptions {
  /** square output side in pixels */
  size: number;
  batchSize: number;
  /** null: the validation transform (resize + center crop) */
  augment: AugmentOptions | null;
  mean: [number, number, number];
  std: [number, number, number];
  shuffle: boolean;
  seed: number;
  /** worker threads (default: the core count, at most 4); 0 decodes on the calling thread */
  workers?: number;
  /** batches decoded ahead of the one being consumed (default 2) */
  prefetch?: number;
  /** the training set's batch count, trainingBatchCount (a last batch of one image left out);
   *  default false: every sample is served (validation, test) */
  training?: boolean;
  /** called once per file that fails to decode during an epoch */
  onSkip?: (file: SkippedFile) => void;
  /** draw each epoch's samples with replacement by these weights (sampler.ts; balanced classes)
   *  instead of visiting each once */
  sampleWeights?: readonly number[];
}

/** One image to decode (main thread -> worker). */
export interface ImageTask {
  id: number;
  path: string;
  size: number;
  augment: AugmentOptions | null;
  mean: [number, number, number];
  std: [number, number, number];
  /** the sample's Rng seed */
  seed: number;
}

/** A decoded image or the reason it failed (worker -> main thread). */
export type ImageResult = { id: number; image: Float32Array; error?: undefined } | { id: number; image?: undefined; error: string };

/** A 32-bit integer finaliser (murmur3's fmix32-like): a well-mixed hash of one word. */
function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The augmentation seed of sample `index` in epoch `epoch`. */
export function sampleSeed(seed: number, epoch: number, index: number): number {
  return mix32(mix32(mix32(seed >>> 0) ^ epoch) ^ index);
}

/** The seed of epoch `epoch`'s shuffle (a different stream from every sample's). */
function orderSeed(seed: number, epoch: number): number {
  return mix32(mix32((seed ^ 0x5bd1e995) >>> 0) ^ epoch);
}

/** Why an image task failed, in one line, without the file name (the skip report names it). */
export function failureReason(e: unknown): string {
  return e instanceof ImageError ? e.reason : String((e as Error)?.message ?? e).split('\n')[0];
}

/** Runs image tasks, at most `slots` at a time, in submission order. */
interface Executor {
  slots: number;
  run(task: ImageTask): Promise<ImageResult>;
  close(): Promise<void>;
}

/** Decoding on the calling thread (workers: 0). */
function inlineExecutor(): Executor {
  return {
    slots: 2,
    async run(task) {
      try {
        const image = await augmentImage(task.path, task.size, task.augment, task.mean, task.std, new Rng(task.seed));
        return { id: task.id, image };
      } catch (e) {
        return { id: task.id, error: failureReason(e) };
      }
    },
    async close() {},
  };
}

/** Run from the sources (tsx, vitest), the worker entry is TypeScript: each worker registers tsx's
 *  loader, as bin/gpunet.mjs does, then imports it (a hook given by `--import` does not apply to a
 *  worker's entry on Node 20). tsx is resolved from this file, so it works from any working
 *  directory; its ESM API file sits beside the CommonJS one that require.resolve names. Run from
 *  the built package (dist/), the entry is plain JavaScript beside this file. */
function startWorker(): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./worker.js', import.meta.url));
  const tsxApi = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm/api').replace(/\.cjs$/, '.mjs')).href;
  const entry = new URL('./worker.ts', import.meta.url).href;
  const boot = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`;
  return new Worker(boot, { eval: true });
}

/** A pool of worker threads, two tasks in flight per worker (one decoding while one warps). */
function workerExecutor(count: number): Executor {
  const workers = Array.from({ length: count }, startWorker);
  const waiting = new Map<number, { worker: Worker; resolve: (r: ImageResult) => void; reject: (e: Error) => void }>();
  const busy = new Map<Worker, number>(workers.map((w) => [w, 0]));
  let closing = false;
  for (const w of workers) {
    w.unref(); // an idle pool must not keep the process alive
    w.on('message', (r: ImageResult) => {
      const entry = waiting.get(r.id);
      if (!entry) return;
      waiting.delete(r.id);
      busy.set(w, busy.get(w)! - 1);
      if (busy.get(w) === 0) w.unref();
      entry.resolve(r);
    });
    const fail = (e: Error) => {
      if (closing) return;
      for (const [id, entry] of waiting) {
        if (entry.worker !== w) continue;
        waiting.delete(id);
        entry.reject(new Error(`image loader worker failed: ${e.message}`));
      }
    };
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`exited with code ${code}`)));
  }
  return {
    slots: 2 * count,
    run(task) {
      // the least busy worker
      let worker = workers[0];
      for (const w of workers) if (busy.get(w)! < busy.get(worker)!) worker = w;
      busy.set(worker, busy.get(worker)! + 1);
      worker.ref();
      return new Promise((resolve, reject) => {
        waiting.set(task.id, { worker, resolve, reject });
        worker.postMessage(task);
      });
    },
    async close() {
      closing = true;
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}

interface Queued {
  task: ImageTask;
  cancelled: () => boolean;
  resolve: (r: ImageResult) => void;
  reject: (e: Error) => void;
}

export class ImageLoader {
  /** files that failed to decode during an epoch (each listed once) */
  readonly failed: SkippedFile[] = [];
  private readonly opts: Required<Omit<LoaderOptions, 'onSkip' | 'sampleWeights'>> & Pick<LoaderOptions, 'onSkip' | 'sampleWeights'>;
  private executor: Executor | null = null;
  private queue: Queued[] = [];
  private running = 0;
  private nextId = 0;
  private epochToken = 0;

  constructor(
    readonly samples: Sample[],
    opts: LoaderOptions,
  ) {
    const positiveInt = (name: string, v: number) => {
      if (!Number.isInteger(v) || v <= 0) throw new Error(`ImageLoader: ${name} must be a positive integer, got ${v}`);
    };
    positiveInt('size', opts.size);
    positiveInt('batchSize', opts.batchSize);
    const workers = opts.workers ?? Math.min(4, availableParallelism());
    if (!Number.isInteger(workers) || workers < 0) throw new Error(`ImageLoader: workers must be an integer >= 0, got ${workers}`);
    if (opts.sampleWeights && opts.sampleWeights.length !== samples.length) throw new Error(`ImageLoader: ${opts.sampleWeights.length} sample weights for ${samples.length} samples`);
    const prefetch = opts.prefetch ?? 2;
    if (!Number.isInteger(prefetch) || prefetch < 0) throw new Error(`ImageLoader: prefetch must be an integer >= 0, got ${prefetch}`);
    this.opts = { ...opts, workers, prefetch, training: opts.training ?? false };
  }

  get batchesPerEpoch(): number {
    const [n, b] = [this.samples.length, this.opts.batchSize];
    return this.opts.training ? trainingBatchCount(n, b) : Math.ceil(n / b);
  }

  /** The sample indices of epoch `index` in the order they are served. */
  order(index: number): number[] {
    const rng = new Rng(orderSeed(this.opts.seed, index));
    if (this.opts.sampleWeights) return weightedDraws(this.opts.sampleWeights, this.samples.length, rng);
    const order = this.samples.map((_, i) => i);
    return this.opts.shuffle ? rng.shuffle(order) : order;
  }

  /**
   * The batches of epoch `index` (0-based or not: any integer names one epoch). Breaking out of the
   * loop early cancels the prefetched work. One epoch at a time per loader: starting another, or
   * close(), ends this one.
   */
  async *epoch(index: number): AsyncGenerator<Batch> {
    const token = ++this.epochToken;
    const cancelled = () => this.epochToken !== token;
    const { batchSize, prefetch } = this.opts;
    const order = this.order(index);
    const nBatches = this.batchesPerEpoch;
    const pending: Promise<{ sample: Sample; result: ImageResult }[]>[] = [];
    let submitted = 0;
    try {
      for (let b = 0; b < nBatches; b++) {
        if (cancelled()) return; // close() or a newer epoch took over
        for (; submitted < nBatches && submitted <= b + prefetch; submitted++) {
          const first = submitted * batchSize;
          const batch = order
            .slice(first, first + batchSize)
            .map((i, k) => ({ i, position: first + k }))
            .filter(({ i }) => !this.failedPaths.has(this.samples[i].path));
          const p = Promise.all(batch.map(async ({ i, position }) => ({ sample: this.samples[i], result: await this.submit(this.task(i, index, position), cancelled) })));
          p.catch(() => {}); // awaited below; an abandoned one must not be an unhandled rejection
          pending.push(p);
        }
        const results = await pending.shift()!;
        const ok: { sample: Sample; image: Float32Array }[] = [];
        for (const { sample, result } of results) {
          if (result.image) ok.push({ sample, image: result.image });
          else this.fail(sample.path, result.error!);
        }
        if (ok.length === 0) continue;
        const plane = 3 * this.opts.size * this.opts.size;
        const images = new Float32Array(ok.length * plane);
        ok.forEach((r, k) => images.set(r.image, k * plane));
        yield { images, labels: ok.map((r) => r.sample.label), paths: ok.map((r) => r.sample.path) };
      }
    } finally {
      if (!cancelled()) this.epochToken++; // drops this epoch's queued tasks
    }
  }

  /** Stops the worker threads. The loader can still be used afterwards (they restart). */
  async close(): Promise<void> {
    this.epochToken++;
    this.queue = [];
    const ex = this.executor;
    this.executor = null;
    this.running = 0;
    await ex?.close();
  }

  private readonly failedPaths = new Set<string>();

  private fail(path: string, reason: string): void {
    if (this.failedPaths.has(path)) return;
    this.failedPaths.add(path);
    const file = { path, reason };
    this.failed.push(file);
    this.opts.onSkip?.(file);
  }

  /** The task of the sample at `position` of epoch `epoch`'s order; a sample drawn twice in an
   *  epoch (sampleWeights) is augmented differently each time. */
  private task(sampleIndex: number, epoch: number, position: number): ImageTask {
    const { size, augment, mean, std, seed } = this.opts;
    const taskSeed = sampleSeed(seed, epoch, sampleIndex) ^ (this.opts.sampleWeights ? mix32(position + 1) : 0);
    return { id: this.nextId++, path: this.samples[sampleIndex].path, size, augment, mean, std, seed: taskSeed >>> 0 };
  }

  private submit(task: ImageTask, cancelled: () => boolean): Promise<ImageResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ task, cancelled, resolve, reject });
      this.pump();
    });
  }

  /** Starts queued tasks while the executor has free slots, oldest first. */
  private pump(): void {
    this.executor ??= this.opts.workers === 0 ? inlineExecutor() : workerExecutor(this.opts.workers);
    const ex = this.executor;
    while (this.running < ex.slots && this.queue.length) {
      const q = this.queue.shift()!;
      if (q.cancelled()) continue;
      this.running++;
      ex.run(q.task).then(
        (r) => {
          if (this.executor !== ex) return;
          this.running--;
          q.resolve(r);
          this.pump();
        },
        (e: Error) => {
          if (this.executor !== ex) return;
          this.running--;
          q.reject(e);
          this.pump();
        },
      );
    }
  }
}
