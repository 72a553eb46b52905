// Timestamp-query profiler: while on, every dispatch runs in its own compute pass whose begin and
// end timestamps land in a query set; collect() adds them up per label.
import { MapMode, Usage } from './usage.ts';
import { quietly } from './wait.ts';

export interface ProfileEntry {
  label: string;
  count: number;
  ms: number;
}

const CAPACITY = 2048; // query pairs per set (sets hold at most 4096 queries)

export class Profiler {
  private sets: { querySet: GPUQuerySet; resolve: GPUBuffer; labels: string[]; resolved: number }[] = [];

  constructor(private readonly device: GPUDevice) {}

  next(label: string, _encoder: GPUCommandEncoder): GPUComputePassTimestampWrites {
    let set = this.sets[this.sets.length - 1];
    if (!set || set.labels.length === CAPACITY) {
      set = {
        querySet: this.device.createQuerySet({ type: 'timestamp', count: CAPACITY * 2 }),
        resolve: this.device.createBuffer({ size: CAPACITY * 16, usage: Usage.QUERY_RESOLVE | Usage.COPY_SRC }),
        labels: [],
        resolved: 0,
      };
      this.sets.push(set);
    }
    const i = set.labels.length;
    set.labels.push(label);
    return { querySet: set.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  /** Resolves the queries written since the last call into the resolve buffers. */
  resolve(encoder: GPUCommandEncoder): void {
    for (const set of this.sets) {
      const from = set.resolved;
      const to = set.labels.length;
      if (to > from) encoder.resolveQuerySet(set.querySet, 2 * from, 2 * (to - from), set.resolve, 16 * from);
      set.resolved = to;
    }
  }

  async collect(): Promise<ProfileEntry[]> {
    const totals = new Map<string, ProfileEntry>();
    for (const set of this.sets) {
      const n = set.labels.length;
      if (n === 0) continue;
      const staging = this.device.createBuffer({ size: n * 16, usage: Usage.MAP_READ | Usage.COPY_DST });
      const enc = this.device.createCommandEncoder();
      enc.copyBufferToBuffer(set.resolve, 0, staging, 0, n * 16);
      this.device.queue.submit([enc.finish()]);
      await quietly(staging.mapAsync(MapMode.READ));
      const t = new BigUint64Array(staging.getMappedRange());
      for (let i = 0; i < n; i++) {
        const ns = Number(t[2 * i + 1] - t[2 * i]);
        const e = totals.get(set.labels[i]) ?? { label: set.labels[i], count: 0, ms: 0 };
        e.count++;
        e.ms += ns / 1e6;
        totals.set(set.labels[i], e);
      }
      staging.destroy();
      set.querySet.destroy();
      set.resolve.destroy();
    }
    return [...totals.values()].sort((a, b) => b.ms - a.ms);
  }
}
