// The GPU layer on its own: the pool's size classes and reuse, the pipeline cache, the profiler.
import { describe, expect, it } from 'vitest';
import { getGpu, GpuError, paramFields, sizeClass } from '../src/gpu/index.ts';
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

  it("reads a shader's Params fields from its source, comments and all", () => {
    const src = 'struct Params {\n  n: u32,   // elements, of T\n  offset: i32, scale: f32, // the rest\n}\n@group(0) @binding(0) var<uniform> p: Params;';
    expect(paramFields(src)).toEqual([{ name: 'n', type: 'u32' }, { name: 'offset', type: 'i32' }, { name: 'scale', type: 'f32' }]);
    expect(paramFields('fn main() {}')).toEqual([]);
    expect(() => paramFields('struct Params { v: vec4<f32> }', 'bad.wgsl')).toThrow(/bad.wgsl: Params field 'v: vec4<f32>' is not a u32, i32 or f32 scalar/);
  });

  it('passes Params by name and refuses a missing, unknown or out-of-range value', async () => {
    const gpu = getGpu();
    const t = Tensor.empty([5]);
    const fill = (params: Record<string, number | boolean>) =>
      gpu.dispatch({ kernel: { shader: 'tensor', entry: 'fill', bindings: ['write'] }, buffers: [t.buffer], params, workgroups: [1], label: 'fill test' });
    fill({ value: -2.5, n: 5 }); // any order
    expect(Array.from(await t.toArray())).toEqual([-2.5, -2.5, -2.5, -2.5, -2.5]);
    expect(() => fill({ n: 5 })).toThrow(GpuError);
    expect(() => fill({ n: 5 })).toThrow(/fill test: no value for Params.value/);
    expect(() => fill({ n: 5, value: 1, count: 5 })).toThrow(/fill test: Params has no field count/);
    expect(() => fill({ n: -1, value: 1 })).toThrow(/Params.n = -1 is not a u32/);
    expect(() => fill({ n: 2.5, value: 1 })).toThrow(/Params.n = 2.5 is not a u32/);
    t.release();
  });

  it('dry runs compute shapes and check launches without touching the device', async () => {
    const gpu = getGpu();
    const x = Tensor.from([1, -2, 3], [3]);
    await gpu.sync();
    const before = { dispatches: gpu.dispatchCount, pool: gpu.pool.stats() };
    const shape = gpu.dryRun(() =>
      tidy(() => {
        const y = relu(Tensor.from(new Float32Array(12), [3, 4]));
        expect(() => gpu.dispatch({ kernel: { shader: 'tensor', entry: 'fill', bindings: ['write'] }, buffers: [y.buffer], workgroups: [1e9] })).toThrow(GpuError);
        return [...relu(x).shape, ...y.shape];
      }),
    );
    expect(shape).toEqual([3, 3, 4]);
    expect(gpu.dispatchCount).toBe(before.dispatches);
    expect(gpu.pool.stats()).toEqual(before.pool);
    let read!: Promise<ArrayBuffer>;
    gpu.dryRun(() => void (read = gpu.read(x.buffer)));
    await expect(read).rejects.toThrow(/dry run/);
    expect(() => gpu.dryRun(() => Promise.resolve())).toThrow(/synchronous/);
    expect(Array.from(await x.toArray())).toEqual([1, -2, 3]); // the device works as before
    x.release();
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

  it('profiles every dispatch with timestamp queries, across submits, with its layer and work', async () => {
    const gpu = getGpu();
    const before = gpu.dispatchCount;
    gpu.startProfiling();
    tidy(() => {
      const x = Tensor.ones([1 << 16]);
      for (let i = 0; i < 20; i++) {
        gpu.withScope(`layer${i % 2}`, () => relu(x));
        gpu.flush(); // past 16 pairs, a resolve starts at a 256-byte offset
      }
    });
    const { events, submits } = await gpu.stopProfiling();
    expect(events).toHaveLength(gpu.dispatchCount - before);
    expect(submits).toBeGreaterThanOrEqual(20);
    const relus = events.filter((e) => e.label === 'relu [65536]');
    expect(relus).toHaveLength(20);
    expect(relus.map((e) => e.scope)).toEqual(Array.from({ length: 20 }, (_, i) => `layer${i % 2}`));
    expect(relus.every((e) => e.kind === 'relu' && e.endNs > e.beginNs && e.bytes === 2 * 4 * (1 << 16))).toBe(true);
    for (let i = 1; i < events.length; i++) expect(events[i].beginNs).toBeGreaterThanOrEqual(events[i - 1].endNs);
    expect(events.find((e) => e.label.startsWith('fill'))?.scope).toBe('');
  });
});
