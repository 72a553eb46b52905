// The GPU layer on its own: the pool's size classes and reuse, the pipeline cache, the profiler.
import { describe, expect, it } from 'vitest';
import { getGpu, sizeClass } from '../src/gpu/index.ts';
import { relu } from '../src/ops/elementwise.ts';
import { Tensor, tidy } from '../src/tensor/index.ts';
import { useGpu } from './helpers.ts';

useGpu();

describe('gpu layer', () => {
  it('rounds buffer sizes into classes that waste at most 1/8 above 1 MiB', () => {
    expect(sizeClass(1)).toBe(16);
    expect(sizeClass(100)).toBe(128);
    expect(sizeClass(1 << 20)).toBe(1 << 20);
    for (const bytes of [(1 << 20) + 1, 3_000_000, 12_845_056, 100_000_000]) {
      const c = sizeClass(bytes);
      expect(c).toBeGreaterThanOrEqual(bytes);
      expect(c / bytes).toBeLessThan(1.125);
    }
  });

  it('reuses released buffers instead of creating new ones', () => {
    const pool = getGpu().pool;
    const step = () => tidy(() => void Tensor.zeros([1000]));
    step();
    const created = pool.stats().created;
    for (let i = 0; i < 10; i++) step();
    expect(pool.stats().created).toBe(created);
  });

  it('caches pipelines by shader, entry point and constants', () => {
    const gpu = getGpu();
    tidy(() => void relu(Tensor.ones([8])));
    const n = gpu.pipelines.size;
    tidy(() => void relu(Tensor.ones([16])));
    expect(gpu.pipelines.size).toBe(n);
    tidy(() => void relu(Tensor.ones([7]))); // scalar path: another kernel
    expect(gpu.pipelines.size).toBe(n + 1);
  });

  it('profiles dispatches with timestamp queries, per label', async () => {
    const gpu = getGpu();
    gpu.startProfiling();
    tidy(() => {
      const x = Tensor.ones([1 << 16]);
      for (let i = 0; i < 3; i++) relu(x);
    });
    const entries = await gpu.stopProfiling();
    const r = entries.find((e) => e.label === 'relu [65536]');
    expect(r?.count).toBe(3);
    expect(r!.ms).toBeGreaterThan(0);
    expect(entries.find((e) => e.label.startsWith('fill'))).toBeDefined();
  });
});
