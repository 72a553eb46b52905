// How many pipelines one model step creates: what a cold shader cache (a fresh machine, CI, a
// user's first run) compiles with LLVM, each costing seconds on lavapipe (bench/NOTES.md sections
// 12 and 15). Runs one step of each task on a fresh process's pipeline cache and prints the count of
// distinct pipelines per shader entry point and, for the GEMMs, per tiling.
//
//   npx tsx bench/pipelines.ts [--arch resnet18] [--tasks infer,train] [--verbose: each pipeline's constants]
//
// The tasks: inference at batch 1, 224 px, and a training step at batch 8, 112 px (each in its
// own pipeline cache would need its own device; here the training step counts what it adds to the
// inference's, and both totals print).
import { parseArgs } from 'node:util';
import { getGpu, initGpu } from '../src/gpu/index.ts';
import { ResNet, type ResNetArch } from '../src/nn/resnet.ts';
import { Rng } from '../src/tensor/index.ts';
import { benchmarkModel } from '../src/train/benchmark.ts';

const { values } = parseArgs({ options: { arch: { type: 'string', default: 'resnet18' }, tasks: { type: 'string', default: 'infer,train' }, verbose: { type: 'boolean', default: false } } });
const gpu = await initGpu(process.env.GPUNET_DEVICE);
const TASKS = {
  infer: { batch: 1, size: 224, train: false },
  train: { batch: 8, size: 112, train: true },
};

/** A pipeline's group in the table: its entry point, and a GEMM's tiling. */
function group(spec: { shader: string; entry: string; constants?: Record<string, number>; defines?: Record<string, string> }): string {
  const c = spec.constants ?? {};
  if (spec.entry === 'gemmShared') return `matmul.gemmShared TM ${spec.defines?.TM} NB ${spec.defines?.NB} SG ${c.SG}`;
  if (spec.entry === 'gemm') return `matmul.gemm ${c.WG_N}x${c.WG_M}`;
  return `${spec.shader}.${spec.entry}`;
}

/** What else tells a pipeline from the others of its group: override constants and operand types. */
function variant(spec: { constants?: Record<string, number>; defines?: Record<string, string> }): string {
  const d = spec.defines ?? {};
  const types = ['A_TYPE', 'B_TYPE', 'C_TYPE'].filter((t) => d[t]).map((t) => `${t[0]} ${d[t] === 'f32' ? 'scalar' : 'vec4'}`);
  return [...types, ...Object.entries(spec.constants ?? {}).map(([k, v]) => `${k} ${v}`)].join(', ');
}

let seen = 0;
for (const name of values.tasks!.split(',') as (keyof typeof TASKS)[]) {
  const task = TASKS[name];
  if (!task) throw new Error(`unknown task ${name}: infer or train`);
  const model = new ResNet(values.arch as ResNetArch, { numClasses: 1000, rng: new Rng(0) });
  const t0 = performance.now();
  await benchmarkModel(model, { ...task, classes: 1000, warmup: 0, steps: 1 });
  const ms = performance.now() - t0;
  model.release();
  const all = gpu.pipelines.all();
  const added = all.slice(seen);
  seen = all.length;
  const counts = new Map<string, number>();
  for (const k of added) counts.set(group(k.spec), (counts.get(group(k.spec)) ?? 0) + 1);
  console.log(`${values.arch} ${name} (batch ${task.batch}, ${task.size} px): ${added.length} new pipelines (${all.length} in all), first step ${(ms / 1000).toFixed(1)} s`);
  for (const [g, n] of [...counts].sort((a, b) => b[1] - a[1])) console.log(`  ${String(n).padStart(3)}  ${g}`);
  if (values.verbose) for (const k of added) console.log(`  ${group(k.spec)}: ${variant(k.spec)}`);
}
getGpu().pool.trim();
