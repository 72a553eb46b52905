// Timestamp-query profiler: while on, every dispatch runs in its own compute pass whose begin and
// end timestamps land in a query set, with what the dispatch is (its label, op kind, the layer
// that launched it, the work it does). collect() returns one event per dispatch, in order;
// src/report/profile.ts turns them into tables and a Chrome trace.
import { MapMode, Usage } from './usage.ts';
import { quietly } from './wait.ts';

/** What a dispatch computes, for achieved GFLOP/s and GB/s. */
export interface DispatchWork {
  /** floating-point operations (a multiply-add counts 2) */
  flops?: number;
  /** bytes read and written at the least (default: the sizes of the bound buffer ranges) */
  bytes?: number;
}

export interface DispatchInfo {
  label: string;
  /** the op and kernel, the label's first word: 'conv2d.forward', 'batchNorm2d', 'relu.grad0' */
  kind: string;
  /** the layer (module path) that launched it, '' outside any */
  scope: string;
  /** index of the submit it went out in, from the start of profiling */
  submit: number;
  flops: number;
  bytes: number;
}

export interface ProfileEvent extends DispatchInfo {
  /** GPU timestamps, ns from the first profiled dispatch's begin */
  beginNs: number;
  endNs: number;
}

const CAPACITY = 2048; // query pairs per set (sets hold at most 4096 queries)

export class Profiler {
  private sets: { querySet: GPUQuerySet; resolve: GPUBuffer; infos: DispatchInfo[]; resolved: number }[] = [];

  constructor(private readonly device: GPUDevice) {}

  next(info: DispatchInfo): GPUComputePassTimestampWrites {
    let set = this.sets[this.sets.length - 1];
    if (!set || set.infos.length === CAPACITY) {
      set = {
        querySet: this.device.createQuerySet({ type: 'timestamp', count: CAPACITY * 2 }),
        resolve: this.device.createBuffer({ size: CAPACITY * 16, usage: Usage.QUERY_RESOLVE | Usage.COPY_SRC }),
        infos: [],
        resolved: 0,
      };
      this.sets.push(set);
    }
    const i = set.infos.length;
    set.infos.push(info);
    return { querySet: set.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  /** Resolves the queries written since the last call into the resolve buffers. */
  resolve(encoder: GPUCommandEncoder): void {
    for (const set of this.sets) {
      // the destination offset must be a multiple of 256 bytes (16 pairs): resolving a few pairs
      // again is harmless, their timestamps stay in the query set
      const from = set.resolved - (set.resolved % 16);
      const to = set.infos.length;
      if (to > set.resolved) encoder.resolveQuerySet(set.querySet, 2 * from, 2 * (to - from), set.resolve, 16 * from);
      set.resolved = to;
    }
  }

  /** Every profiled dispatch with its timestamps, in submission order. Frees the query sets. */
  async collect(): Promise<ProfileEvent[]> {
    const events: ProfileEvent[] = [];
    let base: bigint | null = null; // ns since some epoch exceed a double's 2^53
    for (const set of this.sets) {
      const n = set.infos.length;
      const staging = this.device.createBuffer({ size: n * 16, usage: Usage.MAP_READ | Usage.COPY_DST });
      const enc = this.device.createCommandEncoder();
      enc.copyBufferToBuffer(set.resolve, 0, staging, 0, n * 16);
      this.device.queue.submit([enc.finish()]);
      await quietly(staging.mapAsync(MapMode.READ));
      const t = new BigUint64Array(staging.getMappedRange());
      base ??= t[0];
      set.infos.forEach((info, i) => events.push({ ...info, beginNs: Number(t[2 * i] - base!), endNs: Number(t[2 * i + 1] - base!) }));
      staging.destroy();
      set.querySet.destroy();
      set.resolve.destroy();
    }
    this.sets = [];
    return events;
  }
}
