// The adapter's measured ceilings (shaders/ceiling.wgsl): multiply-add GFLOP/s of a pure-FMA
// kernel and GB/s of streaming vec4 loads. The profiler and the benchmarks report each kernel's
// share of them. Timed with timestamp queries (the fastest of a few runs: other jobs on a shared
// machine only ever add time), once per device.
import { grid, type Gpu } from './gpu.ts';

export interface Ceilings {
  /** GFLOP/s of the pure-FMA kernel (a multiply-add counts 2) */
  fmaGflops: number;
  /** GB/s of vec4 storage loads */
  loadGbs: number;
}

const WORKGROUPS = 64;
const INVOCATIONS = WORKGROUPS * 64;
const FMA_ITERS = 2048;
const LOAD_BYTES = 64 << 20;
const RUNS = 3;

const measured = new WeakMap<GPUDevice, Ceilings>();

export async function measureCeilings(gpu: Gpu): Promise<Ceilings> {
  const known = measured.get(gpu.device);
  if (known) return known;
  const out = gpu.pool.acquire(INVOCATIONS * 16, 'ceiling out');
  const src = gpu.pool.acquire(LOAD_BYTES, 'ceiling src');
  try {
    const fmaFlops = INVOCATIONS * FMA_ITERS * 8 * 4 * 2;
    gpu.startProfiling();
    for (let r = 0; r < RUNS; r++) {
      for (const entry of ['fmaPeak', 'loadPeak']) {
        gpu.dispatch({
          kernel: { shader: 'ceiling', entry, bindings: ['write', 'read'] },
          buffers: [out, src],
          params: { iters: FMA_ITERS, n: LOAD_BYTES / 16, m: 0.9999 },
          workgroups: entry === 'fmaPeak' ? [WORKGROUPS] : grid(LOAD_BYTES / 16, 64 * 4),
          label: `ceiling.${entry}`,
        });
      }
      gpu.flush();
    }
    const { events } = await gpu.stopProfiling();
    const fastest = (kind: string) => Math.min(...events.filter((e) => e.kind === kind).map((e) => e.endNs - e.beginNs)) / 1e9;
    const c = { fmaGflops: fmaFlops / fastest('ceiling.fmaPeak') / 1e9, loadGbs: LOAD_BYTES / fastest('ceiling.loadPeak') / 1e9 };
    measured.set(gpu.device, c);
    return c;
  } finally {
    gpu.pool.release(out);
    gpu.pool.release(src);
  }
}
