// The memory-bound kernels against the vec4-load ceiling, measured so that a loaded machine
// distorts the ratio little: the CPU time lavapipe's threads take per launch (the process's CPU
// less the main thread's), for the ceiling kernel (shaders/ceiling.wgsl loadPeak, 64 MiB) and for
// max pooling and the batchnorm passes at ResNet18's shapes in a training step (batch 8, 224 and
// 112 px), and an optimizer step over ResNet18's parameters, rounds interleaved, medians. GB/s counts the bytes that must move (bench/pool.ts and
// bench/batchnorm.ts say which); "% load" is the kernel's bytes per lavapipe CPU-second against
// the ceiling's. Wall GB/s (the median round) is printed beside it, loaded as it may be.
//   npx tsx bench/bandwidth.ts [filter] [--rounds N]
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { getGpu, grid, threadCpuMs } from '../src/gpu/index.ts';
import { tidy } from '../src/tensor/index.ts';
import * as batchnorm from './batchnorm.ts';
import { openGpu, type BenchCase } from './harness.ts';
import * as pool from './pool.ts';
import * as sgd from './sgd.ts';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { rounds: { type: 'string', default: '5' } } });
const ROUNDS = Number(values.rounds);
const filter = positionals[0];

const LOAD_BYTES = 64 << 20;

/** The ceiling kernel as a case: vec4 loads of 64 MiB, nothing stored. */
const ceiling: BenchCase = {
  name: 'vec4 load ceiling (loadPeak, 64 MiB)',
  bytes: LOAD_BYTES,
  setup() {
    const gpu = getGpu();
    const out = gpu.pool.acquire(64 * 64 * 16, 'ceiling out');
    const src = gpu.pool.acquire(LOAD_BYTES, 'ceiling src');
    return {
      run: () =>
        gpu.dispatch({
          kernel: { shader: 'ceiling', entry: 'loadPeak', bindings: ['write', 'read'] },
          buffers: [out, src],
          params: { iters: 0, n: LOAD_BYTES / 16, m: 1 },
          workgroups: grid(LOAD_BYTES / 16, 64 * 4),
          label: 'ceiling.loadPeak',
        }),
      dispose: () => (gpu.pool.release(out), gpu.pool.release(src)),
    };
  },
};

const cases = [
  ...pool.cases.filter((c) => c.name.includes('maxPool2d')),
  ...batchnorm.cases.filter((c) => !c.name.startsWith('eval')),
  ...sgd.cases.filter((c) => c.name.includes('resnet18')),
].filter((c) => !filter || c.name.includes(filter));

const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

const gpu = await openGpu();
console.log(`load average ${loadavg()[0].toFixed(1)}; ${ROUNDS} rounds, interleaved`);
const all = [ceiling, ...cases];
const live = all.map((c) => ({ c, ...c.setup(), cpu: [] as number[], wall: [] as number[], repeat: 1 }));
for (const l of live) {
  // warm-up (compiles), then the launches per round: about 100 ms of GPU work
  tidy(l.run);
  await gpu.sync();
  const t0 = performance.now();
  tidy(l.run);
  await gpu.sync();
  l.repeat = Math.max(1, Math.min(50, Math.round(100 / (performance.now() - t0))));
}
for (let r = 0; r < ROUNDS; r++) {
  for (const l of live) {
    const main0 = threadCpuMs();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (let k = 0; k < l.repeat; k++) tidy(l.run);
    await gpu.sync();
    const wall = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    l.cpu.push(((cpu.user + cpu.system) / 1e3 - (threadCpuMs() - main0)) / l.repeat);
    l.wall.push(wall / l.repeat);
  }
}
const ceilingCpu = median(live[0].cpu);
const perCpuSecond = (l: (typeof live)[number]) => l.c.bytes! / (median(l.cpu) / 1e3) / 1e9;
const ceilingRate = perCpuSecond(live[0]);
const width = Math.max(...all.map((c) => c.name.length)) + 2;
console.log(`${'kernel'.padEnd(width)}  ${'lavapipe CPU ms'.padStart(15)}  ${'GB per CPU-s'.padStart(12)}  ${'% load'.padStart(6)}  ${'wall ms'.padStart(8)}  ${'wall GB/s'.padStart(9)}`);
for (const l of live) {
  const rate = perCpuSecond(l);
  console.log(
    `${l.c.name.padEnd(width)}  ${median(l.cpu).toFixed(2).padStart(15)}  ${rate.toFixed(2).padStart(12)}  ${((100 * rate) / ceilingRate).toFixed(0).padStart(6)}  ` +
      `${median(l.wall).toFixed(2).padStart(8)}  ${(l.c.bytes! / median(l.wall) / 1e6).toFixed(2).padStart(9)}`,
  );
  l.dispose();
}
console.log(`ceiling: ${ceilingCpu.toFixed(2)} ms of lavapipe CPU per 64 MiB; load average now ${loadavg()[0].toFixed(1)}`);
