// Autotuning: shapes run without a cached choice are noted, tuning times every candidate and writes
// the adapter's cache file, later launches use the choice, a fresh cache object reads it back.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tuneCommand } from '../src/cli/tune.ts';
import { chooseFastest, getGpu, TuneCache, tuneCache, type TuneConfig, type TuneTimer } from '../src/gpu/index.ts';
import { CONV2D_CANDIDATES, conv2d, conv2dTiling } from '../src/ops/conv2d.ts';
import { noGrad, Tensor, tidy } from '../src/tensor/index.ts';
import { runCommand, useGpu } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'gpunet-tune-'));
process.env.GPUNET_CACHE_DIR = dir; // before the first tuneCache(): this file's process only
afterAll(() => rmSync(dir, { recursive: true, force: true }));

useGpu();

describe('the tuning cache', () => {
  it('notes untuned shapes, tunes them over every candidate, saves, and launches use the choice', async () => {
    const cache = tuneCache(getGpu());
    tidy(() => noGrad(() => void conv2d(Tensor.ones([1, 8, 6, 6]), Tensor.ones([16, 8, 3, 3]), null, { padding: 1 })));
    const pending = cache.pending().filter((t) => t.key.includes('x[1,8,6,6]'));
    expect(pending.map((t) => t.key)).toEqual(['forward x[1,8,6,6] w[16,8,3,3] s1x1 p1x1 d1x1 g1']);
    // a 3x3 stride-1 convolution: Winograd with 2x2 and 4x4 tiles, and im2col + GEMM, are candidates
    // beside the tile shapes
    expect(pending[0].candidates).toEqual([...CONV2D_CANDIDATES, { winograd: 2 }, { winograd: 4 }, { im2col: 1 }]);
    const choice = await cache.tune(pending[0], { rounds: 1 });
    expect(pending[0].candidates.includes(choice.config) || choice.config === pending[0].defaultConfig).toBe(true);
    expect(choice.ms).toBeLessThanOrEqual(choice.defaultMs);
    expect(cache.pending().some((t) => t.key === pending[0].key)).toBe(false);
    cache.save();
    const saved = JSON.parse(readFileSync(cache.file, 'utf8'));
    expect(saved.adapter.name).toBe(getGpu().adapter.name);
    expect(saved.version).toBe(2);
    expect(saved.choices[`conv2d ${pending[0].key}`].timer).toBe(getGpu().isCpu ? 'worker-cpu' : 'timestamps');
    expect(saved.choices[`conv2d ${pending[0].key}`].config).toEqual(choice.config);
    if (choice.config.TM !== undefined) expect(conv2dTiling(pending[0].key)).toMatchObject({ TM: choice.config.TM, TN: choice.config.TN });
    // a new process (here: a new cache object) reads it back
    expect(new TuneCache(getGpu()).lookup('conv2d', pending[0].key)).toEqual(choice.config);
  });

  it('times a Winograd forward as inference runs it: the weight transformed by the untimed launch, kept for the timed ones', () => {
    const gpu = getGpu();
    tidy(() => noGrad(() => void conv2d(Tensor.ones([1, 16, 12, 12]), Tensor.ones([16, 16, 3, 3]), null, { padding: 1 })));
    const task = tuneCache(gpu).pending().find((t) => t.key.startsWith('forward x[1,16,12,12]'))!;
    const { launch, dispose } = task.setup();
    const dispatches = () => {
      const before = gpu.dispatchCount;
      launch({ winograd: 2 });
      return gpu.dispatchCount - before;
    };
    const first = dispatches();
    // no weight transform, nor the NaN fill of its output (the tests poison every new tensor)
    expect(dispatches()).toBe(first - 2);
    dispose();
  });

  it('a cache file of another version is read as empty, and tuning replaces it', () => {
    const file = new TuneCache(getGpu()).file;
    const current = readFileSync(file, 'utf8');
    const old = JSON.parse(current);
    delete old.version; // version 1 had none
    writeFileSync(file, JSON.stringify(old));
    try {
      const cache = new TuneCache(getGpu());
      expect(cache.outdated).toBe(1);
      expect(cache.choices()).toEqual({});
      expect(new TuneCache(getGpu()).lookup('conv2d', Object.keys(old.choices)[0].replace(/^conv2d /, ''))).toBeNull();
    } finally {
      writeFileSync(file, current);
    }
    expect(new TuneCache(getGpu()).outdated).toBeNull();
  });

  it('gpunet tune: bad options are one line', async () => {
    await expect(runCommand(tuneCommand, ['--arch', 'resnet18', '--checkpoint', 'm.onnx'])).rejects.toThrow(/not both/);
    await expect(runCommand(tuneCommand, ['--batch', '0'])).rejects.toThrow(/^--batch must be an integer in 1\.\.4096, got '0'$/);
  });
});

describe("the tuner's choice, from injected timings", () => {
  it('takes the lowest median: one slow round (a preempted launch) does not decide', () => {
    // the default's fastest round is the lowest sample, but its median is not
    expect(chooseFastest([[10, 4, 10, 11, 10], [8, 8, 9, 8, 30], [9, 9, 9, 9, 9]]).index).toBe(1);
    expect(chooseFastest([[10, 10, 10], [9, 40, 9], [12, 12, 12]]).medians).toEqual([10, 9, 12]);
  });

  it('keeps the default unless a candidate is more than the margin faster', () => {
    expect(chooseFastest([[10, 10, 10], [9.8, 9.8, 9.8]]).index).toBe(0);
    expect(chooseFastest([[10, 10, 10], [9.6, 9.6, 9.6]]).index).toBe(1);
    expect(chooseFastest([[10, 10, 10], [9.8, 9.8, 9.8]], 0).index).toBe(1);
  });

  it('interleaves the candidates over the rounds, so that load rising through the run hits them alike', async () => {
    // true costs: the default 10 ms, 'b' 8 (the fastest), 'c' 9; the load doubles every launch's
    // time by the end of the run, and one launch is preempted (3x). Timed one after the other,
    // 'b' (timed after the default) would read slower than it is.
    const cost: Record<string, number> = { a: 10, b: 8, c: 9 };
    const order: string[] = [];
    let current = '';
    const task = {
      family: 'test',
      key: 'injected',
      candidates: [{ v: 'a' }, { v: 'b' }, { v: 'c' }] as TuneConfig[],
      defaultConfig: { v: 'a' } as TuneConfig,
      setup: () => ({ launch: (config: TuneConfig) => void (current = String(config.v)), dispose: () => {} }),
    };
    const rounds = 5;
    const total = rounds * 3;
    const timer: TuneTimer = {
      name: 'worker-cpu',
      time: async (launch) => {
        launch();
        order.push(current);
        const load = 1 + order.length / total;
        return cost[current] * load * (order.length === 5 ? 3 : 1);
      },
    };
    const cache = new TuneCache(getGpu());
    const choice = await cache.tune(task, { rounds, timer });
    expect(choice.config).toEqual({ v: 'b' });
    expect(choice.timer).toBe('worker-cpu');
    expect(choice.ms).toBeLessThan(choice.defaultMs);
    // the default once, not twice (it is among the candidates too), each timed in every round, and
    // each round starting at another one
    expect(order).toHaveLength(total);
    expect(order.slice(0, 6)).toEqual(['a', 'b', 'c', 'b', 'c', 'a']);
    expect(cache.lookup('test', 'injected')).toEqual({ v: 'b' });
  });
});
