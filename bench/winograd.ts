// Winograd F(2x2,3x3) for the 3x3 stride-1 convolutions against the other kernels (on a CPU
// adapter im2col + GEMM), A/B interleaved in one process (src/ops/conv2d.ts, setConv2dWinograd,
// setConv2dWinogradCache): ResNet18 inference at batch 1 (infer<size>, or infer<size>b<batch>) and
// training steps at batch 8, per step the wall time and the CPU time of lavapipe's worker threads
// (the process's CPU less the main thread's: what the shaders took, which other jobs on the
// machine barely change), medians of the rounds, with the load average. Modes: direct (no
// Winograd), transformed (Winograd by the default rule with U transformed every call, as before
// bench/NOTES.md section 13), auto (the default: inference keeps U).
//   npx tsx bench/winograd.ts [--rounds 3] [--steps 2] [--tasks infer224,train112,train224] [--modes direct,transformed,auto]
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { threadCpuMs } from '../src/gpu/index.ts';
import { resnet18 } from '../src/nn/resnet.ts';
import { setConv2dWinograd, setConv2dWinogradCache, type WinogradMode } from '../src/ops/conv2d.ts';
import { benchmarkModel, median } from '../src/train/benchmark.ts';
import { Rng } from '../src/tensor/index.ts';
import { openGpu } from './harness.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    steps: { type: 'string', default: '2' },
    tasks: { type: 'string', default: 'infer224,train112,train224' },
    modes: { type: 'string', default: 'direct,transformed,auto' },
  },
});
const rounds = Number(values.rounds);
const steps = Number(values.steps);
const tasks = values.tasks.split(',').map((t) => {
  const m = /^(infer|train)(\d+)(?:b(\d+))?$/.exec(t);
  if (!m) throw new Error(`--tasks: ${t} is not infer<size>[b<batch>] or train<size>[b<batch>]`);
  return { name: t, train: m[1] === 'train', size: Number(m[2]), batch: Number(m[3] ?? (m[1] === 'train' ? 8 : 1)) };
});
const MODES: Record<string, { winograd: WinogradMode; keepU: boolean }> = {
  direct: { winograd: 'never', keepU: false },
  transformed: { winograd: 'auto', keepU: false },
  auto: { winograd: 'auto', keepU: true },
};
const modes = values.modes.split(',').map((name) => {
  if (!(name in MODES)) throw new Error(`--modes: ${name} is not one of ${Object.keys(MODES).join(', ')}`);
  return { name, ...MODES[name] };
});
const setMode = (mode: (typeof modes)[number]) => {
  setConv2dWinograd(mode.winograd);
  setConv2dWinogradCache(mode.keepU);
};

await openGpu();
const model = resnet18({ rng: new Rng(1), numClasses: 10 });
console.log(`ResNet18, medians of ${rounds} rounds of ${steps} steps per mode, interleaved`);
console.log(`${'task'.padEnd(26)} ${'mode'.padEnd(16)} ${'wall ms'.padStart(9)} ${'img/s'.padStart(7)} ${'lavapipe CPU ms'.padStart(16)}`);
for (const task of tasks) {
  const res = new Map<string, { wall: number[]; cpu: number[] }>();
  const opts = { batch: task.batch, size: task.size, classes: 10, train: task.train };
  for (const mode of modes) {
    setMode(mode);
    await benchmarkModel(model, { ...opts, warmup: 1, steps: 1 }); // compiles its pipelines
  }
  for (let r = 0; r < rounds; r++) {
    for (const mode of modes) {
      setMode(mode);
      const main0 = threadCpuMs();
      const cpu0 = process.cpuUsage();
      const b = await benchmarkModel(model, { ...opts, warmup: 0, steps });
      const cpu = process.cpuUsage(cpu0);
      const lavapipe = ((cpu.user + cpu.system) / 1e3 - (threadCpuMs() - main0)) / steps;
      const e = res.get(mode.name) ?? { wall: [], cpu: [] };
      e.wall.push(b.medianMs);
      e.cpu.push(lavapipe);
      res.set(mode.name, e);
    }
  }
  const what = `${task.train ? 'train' : 'inference'} b${task.batch} ${task.size} px`;
  for (const [name, e] of res) {
    const wall = median(e.wall);
    console.log(`${what.padEnd(26)} ${name.padEnd(16)} ${wall.toFixed(0).padStart(9)} ${((1000 * task.batch) / wall).toFixed(2).padStart(7)} ${median(e.cpu).toFixed(0).padStart(16)}`);
  }
}
setMode({ name: 'auto', ...MODES.auto });
console.log(`load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
model.release();
process.exit(0);
