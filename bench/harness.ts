// Kernel timing with benchmark.js: each sample records `repeat` launches into one submit and waits
// for the GPU once (Dawn busy-polls a core while waiting, so waiting per launch would time the
// wait). Prints ms per launch, GFLOP/s and GB/s with the adapter's name.
import Benchmark from 'benchmark';
import { getGpu, initGpu } from '../src/gpu/index.ts';
import { tidy } from '../src/tensor/index.ts';

export interface BenchCase {
  name: string;
  /** floating-point operations of one launch (multiply-add = 2) */
  flops?: number;
  /** bytes read and written by one launch, at the least */
  bytes?: number;
  /** allocates inputs, returns the function that records one launch and a cleanup */
  setup(): { run: () => void; dispose: () => void };
}

export interface BenchRow {
  name: string;
  ms: number;
  rme: number;
  gflops?: number;
  gbs?: number;
}

export interface BenchOptions {
  /** launches per sample */
  repeat?: number;
  /** seconds per case */
  maxTime?: number;
  /** only cases whose name contains this */
  filter?: string;
}

function runOne(c: BenchCase, repeat: number, maxTime: number): Promise<BenchRow> {
  const gpu = getGpu();
  const { run, dispose } = c.setup();
  // warm-up: compiles pipelines, fills the pool
  tidy(run);
  return new Promise((resolve, reject) => {
    const bench = new Benchmark(c.name, {
      defer: true,
      minSamples: 3,
      maxTime,
      fn(deferred: { resolve(): void }) {
        for (let i = 0; i < repeat; i++) tidy(run);
        gpu.sync().then(() => deferred.resolve(), reject);
      },
      onComplete() {
        const s = (bench.stats.mean as number) / repeat;
        dispose();
        resolve({
          name: c.name,
          ms: s * 1e3,
          rme: bench.stats.rme as number,
          gflops: c.flops ? c.flops / s / 1e9 : undefined,
          gbs: c.bytes ? c.bytes / s / 1e9 : undefined,
        });
      },
      onError(e: { message?: string }) {
        reject(new Error(`${c.name}: ${e.message ?? 'benchmark failed'}`));
      },
    });
    bench.run({ async: true });
  });
}

export function formatRows(rows: BenchRow[]): string {
  const w = Math.max(10, ...rows.map((r) => r.name.length));
  const lines = [`${'kernel'.padEnd(w)}  ${'ms'.padStart(9)}  ${'±%'.padStart(5)}  ${'GFLOP/s'.padStart(8)}  ${'GB/s'.padStart(7)}`];
  for (const r of rows) {
    lines.push(
      `${r.name.padEnd(w)}  ${r.ms.toFixed(3).padStart(9)}  ${r.rme.toFixed(1).padStart(5)}  ` +
        `${(r.gflops !== undefined ? r.gflops.toFixed(2) : '').padStart(8)}  ${(r.gbs !== undefined ? r.gbs.toFixed(2) : '').padStart(7)}`,
    );
  }
  return lines.join('\n');
}

export async function runBench(title: string, cases: BenchCase[], opts: BenchOptions = {}): Promise<BenchRow[]> {
  const gpu = await initGpu(process.env.GPUNET_DEVICE);
  const selected = cases.filter((c) => !opts.filter || c.name.includes(opts.filter));
  console.log(`${title} on ${gpu.adapter.name} (${gpu.adapter.backend})`);
  const rows: BenchRow[] = [];
  for (const c of selected) {
    const row = await runOne(c, opts.repeat ?? 2, opts.maxTime ?? 1.5);
    rows.push(row);
    console.log(formatRows([row]).split('\n')[1]);
  }
  return rows;
}
