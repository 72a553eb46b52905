// The per-dispatch profiler and what reads it: per-op and per-layer times that add up to the step,
// the Chrome trace (one event per dispatch), gpunet bench and --profile on bench, predict and train.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { benchCommand } from '../src/cli/bench.ts';
import { predictCommand } from '../src/cli/predict.ts';
import { traceCommand } from '../src/cli/trace.ts';
import { parseOptions } from '../src/cli/options.ts';
import { getGpu, measureCeilings } from '../src/gpu/index.ts';
import { smallCnn } from '../src/nn/smallcnn.ts';
import { chromeTrace, formatProfile, summarizeProfile, writeTrace } from '../src/report/profile.ts';
import { Rng } from '../src/tensor/index.ts';
import { benchmarkModel } from '../src/train/benchmark.ts';
import { runCommand, useGpu } from './helpers.ts';

useGpu();

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'gpunet-profile-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const run = runCommand;

describe('profiling a training step', () => {
  let model: ReturnType<typeof smallCnn>;
  beforeAll(() => {
    model = smallCnn(4, { rng: new Rng(3), width: 16 });
  });

  it('per-op and per-layer GPU times add up to the step, every dispatch is attributed to its layer', async () => {
    const gpu = getGpu();
    const layers = new Set(model.namedModules().map(([name]) => name).filter(Boolean));
    const steps = 2;
    const r = await benchmarkModel(model, { batch: 4, size: 32, classes: 4, train: true, warmup: 1, steps, profile: true });
    const profile = r.profile!;
    const s = summarizeProfile(profile, steps, await measureCeilings(gpu));
    // one submit per step, each with the same dispatches
    const perSubmit = [0, 1].map((i) => profile.events.filter((e) => e.submit === i).map((e) => e.label));
    expect(perSubmit[0].length).toBeGreaterThan(20);
    expect(perSubmit[1]).toEqual(perSubmit[0]);
    expect(s.dispatches).toBe(perSubmit[0].length);
    const byKind = s.byKind.reduce((a, k) => a + k.ms, 0);
    const byLayer = s.byLayer.reduce((a, k) => a + k.ms, 0);
    expect(Math.abs(byKind - s.spanMs)).toBeLessThan(0.1 * s.spanMs);
    expect(byLayer).toBeCloseTo(byKind, 6);
    expect(byKind).toBeLessThan(s.wallMs); // the GPU's time fits in the step's wall time
    expect(s.byKind.reduce((a, k) => a + k.share, 0)).toBeCloseTo(1, 6);
    expect(s.submits).toBe(1); // one submit per step (the read-back rides on it)
    expect(s.cpuMs).toBeGreaterThan(0);
    // forward and backward kernels of a layer land on the layer, the optimizer on its own
    for (const kind of ['conv2d.forward', 'conv2d.backwardWeight', 'batchNorm2d', 'linear.backwardW']) {
      const scopes = new Set(profile.events.filter((e) => e.kind === kind).map((e) => e.scope));
      expect(scopes.size, kind).toBeGreaterThan(0);
      for (const sc of scopes) expect(layers.has(sc), `${kind} in '${sc}'`).toBe(true);
    }
    expect(profile.events.filter((e) => e.kind === 'sgd').every((e) => e.scope === 'optimizer')).toBe(true);
    const conv = s.byKind.find((k) => k.name === 'conv2d.forward')!;
    expect(conv.gflops).toBeGreaterThan(0);
    expect(conv.ofCeiling).toBeGreaterThan(0);
    const text = formatProfile(s);
    expect(text).toMatch(/^profile of 2 steps, per step: GPU [\d.]+ ms in \d+ dispatches/);
    expect(text).toMatch(/^conv2d\.forward +[\d.]+ +[\d.]+%/m);

    // the Chrome trace: JSON with one complete event per dispatch
    const file = join(dir, 'step.json');
    writeTrace(file, profile);
    const trace = JSON.parse(readFileSync(file, 'utf8'));
    const complete = trace.traceEvents.filter((e: { ph: string }) => e.ph === 'X');
    expect(complete).toHaveLength(profile.events.length);
    expect(complete.every((e: { ts: number; dur: number; name: string }) => e.dur >= 0 && Number.isFinite(e.ts) && e.name.length > 0)).toBe(true);
    expect(chromeTrace(profile).traceEvents).toHaveLength(trace.traceEvents.length);
  });

  afterAll(() => model.release());
});

describe('gpunet bench and --profile', () => {
  it('--profile takes an optional .json file', () => {
    const parse = (args: string[]) => parseOptions('bench', benchCommand.options, args).values.profile;
    expect(parse(['--batch', '2', '--profile'])).toBe('');
    expect(parse(['--profile', 't.json', '--train'])).toBe('t.json');
    expect(parse(['--profile=t.json'])).toBe('t.json');
    expect(parse(['--train'])).toBeUndefined();
  });

  it('bench --json prints images/s; with --profile the tables go to stderr and the trace to its file', async () => {
    const trace = join(dir, 'bench.json');
    const r = await run(benchCommand, ['--arch', 'resnet18', '--size', '32', '--batch', '2', '--train', '--steps', '2', '--warmup', '1', '--classes', '10', '--json', '--profile', trace]);
    expect(r.code).toBe(0);
    expect(r.out).toHaveLength(1);
    const row = JSON.parse(r.out[0]);
    expect(row).toMatchObject({ model: 'resnet18', task: 'train', batch: 2, size: 32, steps: 2 });
    expect(row.imagesPerSec).toBeCloseTo((1000 * 2) / row.medianMs, 6);
    expect(row.stepsMs).toHaveLength(2);
    expect(r.err.join('\n')).toMatch(/^op kind +ms\/step/m);
    // which layers are the slowest 25 depends on timing: any ResNet layer row will do
    expect(r.err.join('\n')).toMatch(/^layer\d\.\d\.(conv|bn)\d /m);
    const events = JSON.parse(readFileSync(trace, 'utf8')).traceEvents.filter((e: { ph: string }) => e.ph === 'X');
    // the backward's kernels carry their layer too (direct, or Winograd's, whose label names the pass)
    const backwardOf = (layer: string) => events.some((e: { name: string; cat: string; args: { label: string } }) =>
      e.cat === layer && (e.name === 'conv2d.backwardWeight' || (e.name.startsWith('conv2d.winograd') && e.args.label.includes('(backwardWeight'))));
    expect(backwardOf('layer1.0.conv1')).toBe(true);
  });

  it('bench: bad options are one line', async () => {
    await expect(run(benchCommand, ['--batch', '0'])).rejects.toThrow(/^--batch must be an integer in 1\.\.4096, got '0'$/);
    await expect(run(benchCommand, ['--arch', 'vgg'])).rejects.toThrow(/^--arch must be one of resnet18, resnet34, got 'vgg'$/);
    await expect(run(benchCommand, ['--arch', 'resnet18', '--checkpoint', 'x.onnx'])).rejects.toThrow(/not both/);
  });

  it('trace --profile prints the tables after the trace and writes the trace file', async () => {
    const file = join(dir, 'trace.json');
    const samoyed = join(import.meta.dirname, '..', '..', 'shared', 'data', 'imagenet', 'samoyed.jpg');
    const r = await run(traceCommand, ['--arch', 'resnet18', '--classes', '10', '--size', '32', '--input', samoyed, '--profile', file]);
    expect(r.code).toBe(0);
    expect(r.out.join('\n')).toMatch(/^profile of 1 step, per step: GPU [\d.]+ ms in \d+ dispatches/m);
    expect(r.out.join('\n')).toMatch(/^layer\d\.\d\.(conv|bn)\d /m);
    expect(JSON.parse(readFileSync(file, 'utf8')).traceEvents.filter((e: { ph: string }) => e.ph === 'X').length).toBeGreaterThan(40);
  });

  it('predict --profile prints the tables after the predictions (Samoyed is ImageNet class 258)', async () => {
    const shared = join(import.meta.dirname, '..', '..', 'shared');
    const r = await run(predictCommand, [
      '--input', join(shared, 'data', 'imagenet', 'samoyed.jpg'), '--checkpoint', join(shared, 'weights', 'darknet-tiny-imagenet.onnx'),
      '--means', '0,0,0', '--stds', '1,1,1', '--resize', 'fill', '--size', '224', '--top-k', '1', '--profile',
    ]);
    expect(r.code).toBe(0);
    const header = r.out.findIndex((l) => /^profile of 1 step, per step: GPU/.test(l));
    expect(header).toBeGreaterThan(0);
    expect(r.out.slice(0, header).some((l) => /samoyed\.jpg +1 +258 /.test(l))).toBe(true);
    expect(r.out.some((l) => /^conv2d\.forward /.test(l))).toBe(true);
  });
});
