// How the process waits for the GPU, A/B interleaved in one process: ResNet18 inference (batch 1,
// 224 px) ending with a plain `await queue.onSubmittedWorkDone()` (Dawn's Node binding polls it
// in a setImmediate loop: a core spins) against gpunet's Gpu.sync(), which waits quietly
// (src/gpu/wait.ts). Per step: wall time, the process's CPU time (lavapipe's worker threads run
// in this process) and the main thread's alone, medians of the rounds, with the load average.
//   npx tsx bench/wait.ts [--rounds 5] [--steps 4]
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { resnet18 } from '../src/nn/resnet.ts';
import { noGrad, Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { threadCpuMs } from '../src/gpu/index.ts';
import { median } from '../src/train/benchmark.ts';
import { openGpu } from './harness.ts';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, steps: { type: 'string', default: '4' } } });
const rounds = Number(values.rounds);
const steps = Number(values.steps);

const gpu = await openGpu();
const model = resnet18().eval();
const x = Tensor.randn([1, 3, 224, 224], new Rng(1));
const step = () => tidy(() => noGrad(() => void model.forward(x)));
const waits: Record<string, () => Promise<void>> = {
  'spinning (plain onSubmittedWorkDone)': async () => {
    gpu.flush();
    await gpu.device.queue.onSubmittedWorkDone();
  },
  'quiet (Gpu.sync)': () => gpu.sync(),
};
step();
await gpu.sync();

const results = new Map<string, { wall: number[]; cpu: number[]; main: number[] }>();
for (let r = 0; r < rounds; r++) {
  for (const [name, wait] of Object.entries(waits)) {
    const main0 = threadCpuMs();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) {
      step();
      await wait();
    }
    const cpu = process.cpuUsage(cpu0);
    const res = results.get(name) ?? { wall: [], cpu: [], main: [] };
    res.wall.push((performance.now() - t0) / steps);
    res.cpu.push((cpu.user + cpu.system) / 1e3 / steps);
    res.main.push((threadCpuMs() - main0) / steps);
    results.set(name, res);
  }
}
console.log(`ResNet18 inference, batch 1, 224 px; medians of ${rounds} rounds of ${steps} steps; load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
console.log(`${'wait'.padEnd(38)}  ${'wall ms'.padStart(8)}  ${'process CPU ms'.padStart(14)}  ${'main thread CPU ms'.padStart(18)}`);
for (const [name, r] of results) {
  console.log(`${name.padEnd(38)}  ${median(r.wall).toFixed(1).padStart(8)}  ${median(r.cpu).toFixed(1).padStart(14)}  ${median(r.main).toFixed(1).padStart(18)}`);
}
model.release();
x.release();
process.exit(0);
