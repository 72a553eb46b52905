// How stable the tuner's choice is under load: the same GEMM shapes tuned several times in one run
// by three methods, the methods interleaved in every repetition so that load hits them alike:
//   v1  the tuner before bench/NOTES.md section 16: the default, then each candidate, timed one
//       after the other by timestamp queries, the fastest of 3 launches each (reproduced here)
//   v2  src/gpu/tuning.ts with timestamps: the candidates interleaved over 5 rounds, medians
//   v3  src/gpu/tuning.ts on a CPU adapter: the same, timed by lavapipe's worker CPU
// And a reference per shape: every candidate's lavapipe worker CPU per launch, the median of
// --ref-rounds interleaved rounds spread over the repetitions (this VM's CPU time per call itself
// drifts 20-50% over minutes, bench/NOTES.md section 12). Printed per method and shape: how often the picks agree (the
// most frequent pick's share) and how far each pick is from the reference's best (its reference
// time over the best's, less 1; mean and worst).
//   npx tsx bench/tune-stability.ts [--reps 4] [--ref-rounds 12] [--shapes 512x16x512x16,...]
import { mkdtempSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { getGpu, timestampTimer, TuneCache, tuneCache, workerCpuTimer, type TuneConfig, type TuneTask } from '../src/gpu/index.ts';
import { gemmStrided } from '../src/ops/matmul.ts';
import { Tensor } from '../src/tensor/index.ts';
import { median } from '../src/train/benchmark.ts';
import { openGpu } from './harness.ts';

// read when the first cache object is made: no cached choice is read or written
process.env.GPUNET_CACHE_DIR = mkdtempSync(join(tmpdir(), 'gpunet-tune-stability-'));

const { values } = parseArgs({
  options: {
    reps: { type: 'string', default: '4' },
    'ref-rounds': { type: 'string', default: '12' },
    // ResNet18's Winograd GEMMs at batch 1, 224 px: layer4 (N = 16 tiles), layer3, layer2, layer1
    shapes: { type: 'string', default: '512x16x512x16,256x49x256x16,128x196x128x16,64x784x64x16' },
  },
});
const reps = Number(values.reps);
const refRounds = Number(values['ref-rounds']);

await openGpu();
const gpu = getGpu();
const name = (c: TuneConfig) => Object.entries(c).filter(([k]) => k !== 'kernel').map(([k, v]) => `${k}${v}`).join(' ');

/** The tuner's task for a batched GEMM [M,N,K] x batch, as a first launch of it notes it. */
function taskOf(M: number, N: number, K: number, batch: number): TuneTask {
  const [a, b, c] = [Tensor.zeros([batch * M * K]), Tensor.zeros([batch * K * N]), Tensor.empty([batch * M * N])];
  gemmStrided('tune-stability', 'tune-stability', { M, N, K, batch }, { t: a, stride: M * K }, { t: b, stride: K * N }, { t: c, stride: M * N });
  [a, b, c].forEach((t) => t.release());
  const task = tuneCache(gpu).pending().find((t) => t.family === 'gemm' && t.key === `A B [${M},${N},${K}] x${batch}`);
  if (!task) throw new Error(`no pending GEMM task for [${M},${N},${K}] x${batch}`);
  return task;
}

/** v1: the tuner before section 16 (src/gpu/tuning.ts at d157142). */
async function tuneSequential(task: TuneTask): Promise<TuneConfig> {
  const { launch, dispose } = task.setup();
  const timeOf = async (config: TuneConfig): Promise<number> => {
    launch(config);
    await gpu.sync();
    gpu.startProfiling();
    for (let r = 0; r < 3; r++) {
      launch(config);
      gpu.flush();
    }
    const { events } = await gpu.stopProfiling();
    const perRun = new Map<number, number>();
    for (const e of events) perRun.set(e.submit, (perRun.get(e.submit) ?? 0) + (e.endNs - e.beginNs) / 1e6);
    return Math.min(...perRun.values());
  };
  try {
    let best = { config: task.defaultConfig, ms: await timeOf(task.defaultConfig) };
    for (const config of task.candidates) {
      const ms = await timeOf(config);
      if (ms < best.ms) best = { config, ms };
    }
    return best.config;
  } finally {
    dispose();
  }
}

const methods: { name: string; tune: (task: TuneTask) => Promise<TuneConfig> }[] = [
  { name: 'v1 sequential timestamps, fastest of 3', tune: tuneSequential },
  { name: 'v2 interleaved timestamps, medians of 5', tune: async (task) => (await new TuneCache(gpu).tune(task, { timer: timestampTimer(gpu) })).config },
  { name: 'v3 interleaved worker CPU, medians of 5', tune: async (task) => (await new TuneCache(gpu).tune(task, { timer: workerCpuTimer(gpu) })).config },
];

/** `rounds` interleaved rounds of every configuration's worker CPU per launch, added to `samples`. */
async function referenceRounds(task: TuneTask, samples: Map<string, number[]>, rounds: number): Promise<void> {
  const configs = [task.defaultConfig, ...task.candidates.filter((c) => JSON.stringify(c) !== JSON.stringify(task.defaultConfig))];
  const timer = workerCpuTimer(gpu);
  const { launch, dispose } = task.setup();
  try {
    for (const c of configs) launch(c);
    await gpu.sync();
    for (let r = 0; r < rounds; r++) {
      for (const c of configs) {
        const key = JSON.stringify(c);
        if (!samples.has(key)) samples.set(key, []);
        samples.get(key)!.push(await timer.time(() => launch(c)));
      }
    }
  } finally {
    dispose();
  }
}

const load: number[] = [loadavg()[0]];
for (const shape of values.shapes.split(',')) {
  const [M, N, K, batch] = shape.split('x').map(Number);
  const task = taskOf(M, N, K, batch);
  const picks = methods.map(() => [] as TuneConfig[]);
  const refSamples = new Map<string, number[]>();
  for (let r = 0; r < reps; r++) {
    for (const [i, m] of methods.entries()) picks[i].push(await m.tune(task));
    // the reference's rounds spread over the run as the tuning runs are
    await referenceRounds(task, refSamples, Math.ceil(refRounds / reps));
    load.push(loadavg()[0]);
  }
  const ref = new Map([...refSamples].map(([k, xs]) => [k, median(xs)]));
  const best = Math.min(...ref.values());
  const bestName = [...ref].find(([, ms]) => ms === best)![0];
  console.log(`\n[${M},${N},${K}] x${batch}: reference best ${name(JSON.parse(bestName))} ${best.toFixed(2)} ms worker CPU (default ${name(task.defaultConfig)} ${ref.get(JSON.stringify(task.defaultConfig))!.toFixed(2)})`);
  for (const [i, m] of methods.entries()) {
    const keys = picks[i].map((c) => JSON.stringify(c));
    const counts = new Map<string, number>();
    for (const k of keys) counts.set(k, (counts.get(k) ?? 0) + 1);
    const agree = Math.max(...counts.values());
    const off = keys.map((k) => ref.get(k)! / best - 1);
    const mean = off.reduce((s, x) => s + x, 0) / off.length;
    console.log(
      `  ${m.name.padEnd(42)} agree ${agree}/${reps}, from the best: mean ${(100 * mean).toFixed(1)}%, worst ${(100 * Math.max(...off)).toFixed(1)}%   picks: ${picks[i].map(name).join(' | ')}`,
    );
  }
}
console.log(`\nload average (1 min) during the run: ${Math.min(...load).toFixed(1)}-${Math.max(...load).toFixed(1)}`);
process.exit(0);
