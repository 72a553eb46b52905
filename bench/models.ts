// `npm run bench:models [-- --json FILE] [--quick] [--only SYSTEM,...]`: ResNet18 (torchvision's,
// random weights) on one adapter in one run, gpunet beside its peers:
//   gpunet                       (this engine, WebGPU)
//   TF.js WebGPU                 (@tensorflow/tfjs-backend-webgpu on the same Dawn adapter)
//   ONNX Runtime Web WebGPU      (onnxruntime-web's JSEP build on the same adapter; gpunet's export)
//   TF.js WASM                   (the CPU, 1 thread, for scale)
//   onnxruntime-node             (the CPU, its default threads, gpunet's export, for scale)
// Tasks: inference at batch 1 and 8 (224 px); training step (forward, loss, backward, SGD with
// momentum) at batch 8 and 112 and 224 px for those that train. Every row runs in a child process
// of its own (a hung or crashed peer costs its row only, and no row inherits another's memory or
// threads), with gpunet's timing loop (src/train/benchmark.ts: warm-up, then the median of timed
// steps, each ending with a read-back). A whole run writes bench/RESULTS.md (the table, the
// machine and the adapter; a partial one prints its table and keeps the file) and, with --json,
// one row per system, task, batch and size.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { initGpu } from '../src/gpu/index.ts';
import { writeFileAtomic } from '../src/io/files.ts';
import { ResNet } from '../src/nn/resnet.ts';
import { exportResNet } from '../src/onnx/resnet.ts';
import { encodeOnnx } from '../src/onnx/write.ts';
import { Rng } from '../src/tensor/index.ts';
import { benchmarkModel, timeSteps, type StepTimes } from '../src/train/benchmark.ts';

const SYSTEMS = ['gpunet', 'tfjs-webgpu', 'ort-web-webgpu', 'tfjs-wasm', 'ort-node'] as const;
type System = (typeof SYSTEMS)[number];
const LABEL: Record<System, string> = {
  gpunet: 'gpunet (WebGPU)',
  'tfjs-webgpu': 'TF.js WebGPU',
  'ort-web-webgpu': 'ONNX Runtime Web WebGPU',
  'tfjs-wasm': 'TF.js WASM (CPU, 1 thread)',
  'ort-node': 'onnxruntime-node (CPU)',
};
const TRAINS: ReadonlySet<System> = new Set(['gpunet', 'tfjs-webgpu']);

interface Task {
  task: 'inference' | 'train';
  batch: number;
  size: number;
}
const TASKS: Task[] = [
  { task: 'inference', batch: 1, size: 224 },
  { task: 'inference', batch: 8, size: 224 },
  { task: 'train', batch: 8, size: 112 },
  { task: 'train', batch: 8, size: 224 },
];
const CLASSES = 1000;

export interface Row extends Task {
  system: System;
  imagesPerSec?: number;
  medianMs?: number;
  minMs?: number;
  maxMs?: number;
  /** (max - min) / median of the timed steps */
  spread?: number;
  steps?: number;
  error?: string;
}

// ---- one row, in a child process ----------------------------------------------------------------

async function gpunetOnnx(size: number): Promise<Uint8Array> {
  const net = new ResNet('resnet18', { numClasses: CLASSES, rng: new Rng(0) }).eval();
  const bytes = encodeOnnx(await exportResNet(net, { size }));
  net.release();
  return bytes;
}

async function measure(system: System, t: Task, warmup: number, steps: number, budgetMs: number): Promise<StepTimes> {
  const train = t.task === 'train';
  await initGpu(process.env.GPUNET_DEVICE);
  if (system === 'gpunet') {
    return benchmarkModel(new ResNet('resnet18', { numClasses: CLASSES, rng: new Rng(0) }), { ...t, classes: CLASSES, train, warmup, steps, budgetMs });
  }
  if (system === 'tfjs-webgpu' || system === 'tfjs-wasm') {
    const tfjs = await import('./peers/tfjs.ts');
    await tfjs.useTfBackend(system === 'tfjs-webgpu' ? 'webgpu' : 'wasm');
    const { step } = tfjs.tfStep(t.batch, t.size, CLASSES, train);
    return timeSteps(step, warmup, steps, { budgetMs });
  }
  const ort = await import('./peers/ort.ts');
  const runner = await (system === 'ort-node' ? ort.ortNode : ort.ortWebGpu)(await gpunetOnnx(t.size), t.batch, t.size);
  return timeSteps(runner.run, warmup, steps, { budgetMs });
}

async function childRow(spec: string, warmup: number, steps: number, budgetMs: number): Promise<void> {
  const [system, task, batch, size] = spec.split(':');
  const t: Task = { task: task as Task['task'], batch: Number(batch), size: Number(size) };
  const r = await measure(system as System, t, warmup, steps, budgetMs);
  console.log(`ROW ${JSON.stringify(r)}`);
}

// ---- the run ------------------------------------------------------------------------------------

function runChild(system: System, t: Task, args: string[], timeoutMs: number): Promise<Row> {
  const row: Row = { system, ...t };
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...process.execArgv, import.meta.filename, '--row', `${system}:${t.task}:${t.batch}:${t.size}`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const line = out.split('\n').find((l) => l.startsWith('ROW '));
      if (line) {
        const r = JSON.parse(line.slice(4)) as StepTimes;
        resolve({ ...row, imagesPerSec: (1000 * t.batch) / r.medianMs, medianMs: r.medianMs, minMs: r.minMs, maxMs: r.maxMs, spread: (r.maxMs - r.minMs) / r.medianMs, steps: r.stepsMs.length });
      } else {
        const why = signal === 'SIGKILL' ? `no result within ${timeoutMs / 1000} s` : err.split('\n').find((l) => /Error|error:/.test(l))?.trim() ?? `exit code ${code}`;
        resolve({ ...row, error: why.slice(0, 160) });
      }
    });
  });
}

/** A dependency's version, from its package.json beside its entry point (some export none). */
function versionOf(pkg: string): string {
  try {
    let dir = dirname(createRequire(import.meta.url).resolve(pkg));
    while (!existsSync(join(dir, 'package.json')) || JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).name !== pkg) dir = dirname(dir);
    return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).version;
  } catch {
    return '?';
  }
}

function machine(adapter: string, loads: { start: number[]; end: number[] }): string[] {
  const cpu = cpus();
  return [
    `- CPU: ${cpu[0]?.model ?? '?'}, ${cpu.length} cores; ${(totalmem() / 2 ** 30).toFixed(0)} GiB`,
    `- adapter (every WebGPU row): ${adapter}`,
    `- Node ${process.version}; TF.js ${versionOf('@tensorflow/tfjs-core')}, onnxruntime-web ${versionOf('onnxruntime-web')}, onnxruntime-node ${versionOf('onnxruntime-node')}`,
    `- load average (1 min) at the start ${loads.start[0].toFixed(2)}, at the end ${loads.end[0].toFixed(2)}: other jobs on the same cores lower every figure`,
  ];
}

function cell(r: Row | undefined): string {
  if (!r) return '';
  if (r.error) return `(${r.error})`;
  return `${r.imagesPerSec!.toFixed(r.imagesPerSec! < 1 ? 2 : 1)} (±${(50 * r.spread!).toFixed(0)}%)`;
}

function resultsTable(rows: Row[], systems: readonly System[]): string[] {
  const name = (t: Task) => `${t.task === 'train' ? 'training step' : 'inference'} b${t.batch} ${t.size} px`;
  return [
    `| images/s | ${systems.map((s) => LABEL[s]).join(' | ')} |`,
    `| --- |${systems.map(() => ' --- |').join('')}`,
    ...TASKS.map((t) => `| ${name(t)} | ${systems.map((s) => (t.task === 'train' && !TRAINS.has(s) ? '–' : cell(rows.find((r) => r.system === s && r.task === t.task && r.batch === t.batch && r.size === t.size)))).join(' | ')} |`),
  ];
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      row: { type: 'string' },
      json: { type: 'string' },
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      warmup: { type: 'string' },
      steps: { type: 'string' },
      budget: { type: 'string' },
      timeout: { type: 'string', default: '600' },
    },
  });
  const warmup = Number(values.warmup ?? (values.quick ? 1 : 2));
  const steps = Number(values.steps ?? (values.quick ? 2 : 5));
  const budgetMs = 1000 * Number(values.budget ?? (values.quick ? 20 : 60));
  if (values.row) {
    await childRow(values.row, warmup, steps, budgetMs);
    process.exit(0);
  }
  const systems = values.only ? (values.only.split(',') as System[]) : [...SYSTEMS];
  const unknown = systems.filter((s) => !SYSTEMS.includes(s));
  if (unknown.length) throw new Error(`--only: no system ${unknown.join(', ')} (have ${SYSTEMS.join(', ')})`);
  const gpu = await initGpu(process.env.GPUNET_DEVICE);
  const adapter = `${gpu.adapter.name} (${gpu.adapter.backend})`;
  gpu.destroy();
  const loads = { start: loadavg(), end: loadavg() };
  console.log(`ResNet18, random weights, ${adapter}; warm-up ${warmup}, then the median of up to ${steps} steps (${budgetMs / 1000} s per row); load average ${loads.start[0].toFixed(2)}`);
  const rows: Row[] = [];
  const childArgs = ['--warmup', String(warmup), '--steps', String(steps), '--budget', String(budgetMs / 1000)];
  for (const t of TASKS) {
    for (const s of systems) {
      if (t.task === 'train' && !TRAINS.has(s)) continue;
      const r = await runChild(s, t, childArgs, 1000 * Number(values.timeout));
      rows.push(r);
      console.log(`${LABEL[s].padEnd(28)} ${t.task.padEnd(9)} b${t.batch} ${t.size} px: ${r.error ? r.error : `${r.imagesPerSec!.toFixed(2)} images/s (median ${r.medianMs!.toFixed(0)} ms, ${r.steps} steps, spread ${(100 * r.spread!).toFixed(0)}%)`}`);
    }
  }
  loads.end = loadavg();
  const md = [
    '# ResNet18 side by side',
    '',
    'Regenerated by `npm run bench:models` (bench/models.ts): torchvision\'s ResNet18 with random weights, 1000',
    'classes; images per second of the median step (± half the spread of the timed steps), every step ending with',
    'a read-back of its result. The ONNX peers run gpunet\'s own ResNet18 export; TF.js builds the same network from',
    'its ops (its momentum optimizer has no weight decay). – : cannot train.',
    '',
    ...resultsTable(rows, systems),
    '',
    `Measured ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC (warm-up ${warmup}, then the median of up to ${steps} steps, at most ${budgetMs / 1000} s of them per row, ${values.timeout} s per row at most) on:`,
    ...machine(adapter, loads),
    '',
  ].join('\n');
  // only a whole run (every system, full length) replaces the committed table; a partial one prints it
  const whole = !values.quick && !values.only && values.warmup === undefined && values.steps === undefined && values.budget === undefined;
  if (whole) writeFileAtomic(join(import.meta.dirname, 'RESULTS.md'), md);
  else console.log(`\n${resultsTable(rows, systems).join('\n')}`);
  if (values.json) writeFileAtomic(values.json, JSON.stringify(rows, null, 1));
  const wrote = [whole ? 'bench/RESULTS.md' : '', values.json ?? ''].filter(Boolean);
  const kept = whole ? '' : 'bench/RESULTS.md kept (a partial run: --quick, --only or changed lengths)';
  console.log(`\n${[wrote.length ? `wrote ${wrote.join(' and ')}` : '', kept].filter(Boolean).join('; ')}`);
}

await main();
