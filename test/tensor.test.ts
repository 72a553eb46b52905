import { describe, expect, it } from 'vitest';
import { getGpu, GpuError } from '../src/gpu/index.ts';
import { add, mul, relu } from '../src/ops/elementwise.ts';
import { keep, noGrad, OpError, setPoison, Tensor, tidy } from '../src/tensor/index.ts';
import { useGpu } from './helpers.ts';

useGpu();

describe('tensor core', () => {
  it('round-trips data and checks shapes and types', async () => {
    const t = Tensor.from([1, 2, 3, 4, 5, 6], [2, 3]);
    expect(Array.from(await t.toArray())).toEqual([1, 2, 3, 4, 5, 6]);
    expect(() => Tensor.from([1, 2, 3], [2, 2])).toThrow(/Tensor.from: 3 values do not fill shape \[2,2\]/);
    expect(() => Tensor.from(new Float64Array(4) as unknown as Float32Array, [4])).toThrow(/only f32/);
    expect(() => Tensor.empty([2, -1])).toThrow(/invalid shape/);
    t.release();
  });

  it('poisons uninitialised tensors with NaN while testing', async () => {
    const t = Tensor.empty([5]);
    expect(Array.from(await t.toArray()).every(Number.isNaN)).toBe(true);
    t.release();
  });

  it('fills every element of lengths that are not whole vec4s (fill writes vec4s)', async () => {
    for (const n of [1, 5, 7, 1022, 1023]) {
      const t = Tensor.full([n], -2.5);
      expect(Array.from(await t.toArray()).every((v) => v === -2.5), `[${n}]`).toBe(true);
      t.release();
    }
  });

  it('fills a tensor larger than one storage binding (VGG\'s classifier weight, poisoned on upload)', async () => {
    const perBinding = getGpu().limits.maxStorageBufferBindingSize / 4;
    const t = Tensor.full([perBinding + 300], 3);
    const a = await t.toArray();
    expect(a[0]).toBe(3);
    expect(a[perBinding - 1]).toBe(3);
    expect(a.subarray(perBinding).every((v) => v === 3)).toBe(true);
    t.release();
  });

  it('tidy releases what it created, except what it returns', async () => {
    const before = getGpu().pool.stats().liveBuffers;
    const kept = tidy(() => {
      const a = Tensor.ones([3]);
      const b = add(a, a);
      return mul(b, b);
    });
    expect(getGpu().pool.stats().liveBuffers).toBe(before + 1);
    expect(Array.from(await kept.toArray())).toEqual([4, 4, 4]);
    kept.release();
    expect(getGpu().pool.stats().liveBuffers).toBe(before);
  });

  it('discard releases an intermediate unless the tape or its owner still reads it', () => {
    tidy(() => {
      const w = keep(Tensor.ones([3]));
      w.requiresGrad = true;
      const frozen = keep(Tensor.ones([3]));
      const x = Tensor.ones([3]);
      // not on any tape: released at once
      const plain = relu(x);
      plain.discard();
      expect(plain.released).toBe(true);
      // kept tensors (parameters, buffers) stay, frozen or not
      frozen.discard();
      w.discard();
      expect(frozen.released || w.released).toBe(false);
      // an input of a recorded op, and the recorded output, stay for backward
      const h = relu(x);
      const y = mul(h, w);
      h.discard();
      y.discard();
      expect(h.released || y.released).toBe(false);
      // under noGrad nothing is recorded, so the same intermediate goes
      const h2 = relu(x);
      noGrad(() => mul(h2, w));
      h2.discard();
      expect(h2.released).toBe(true);
      y.backward(Tensor.ones([3]));
      w.grad!.release();
      for (const t of [w, frozen]) t.release();
    });
  });

  it('raises a clear error for a tensor used after release', () => {
    const t = Tensor.ones([2, 2]);
    t.name = 'activations';
    t.release();
    expect(() => relu(t)).toThrow(/tensor 'activations' \[2,2\] used after release/);
  });

  it('reshape is a view and passes gradients back', async () => {
    await tidy(async () => {
      const x = Tensor.from([1, -2, 3, -4, 5, -6], [2, 3]);
      x.requiresGrad = true;
      const y = relu(x.reshape([3, 2]));
      y.backward(Tensor.from([1, 2, 3, 4, 5, 6], [3, 2]));
      expect(Array.from(await x.grad!.toArray())).toEqual([1, 0, 3, 0, 5, 0]);
      expect(x.grad!.shape).toEqual([2, 3]);
      expect(() => x.reshape([4, -1])).toThrow(/cannot reshape \[2,3\] to \[4,-1\]/);
      x.grad!.release();
    });
  });

  it('sums gradients of a tensor used twice and accumulates across backward calls', async () => {
    await tidy(async () => {
      const x = Tensor.from([1, 2, 3], [3]);
      x.requiresGrad = true;
      // y = x*x + x: dy/dx = 2x + 1
      const seed = Tensor.ones([3]);
      add(mul(x, x), x).backward(seed);
      expect(Array.from(await x.grad!.toArray())).toEqual([3, 5, 7]);
      add(mul(x, x), x).backward(seed);
      expect(Array.from(await x.grad!.toArray())).toEqual([6, 10, 14]);
      x.grad!.release();
    });
  });

  it('never computes the gradient of a frozen tensor', async () => {
    await tidy(async () => {
      const w = Tensor.from([1, 2], [2]); // frozen: requiresGrad false
      const x = Tensor.from([3, 4], [2]);
      x.requiresGrad = true;
      const y = mul(x, w);
      const seed = Tensor.from([1, 1], [2]);
      const gpu = getGpu();
      setPoison(false); // count kernels only, not NaN fills
      const before = gpu.dispatchCount;
      y.backward(seed);
      setPoison(true);
      // backward launches exactly one kernel: dy*w for x, none for w
      expect(gpu.dispatchCount - before).toBe(1);
      expect(Array.from(await x.grad!.toArray())).toEqual([1, 2]);
      expect(w.grad).toBeNull();
      x.grad!.release();
    });
  });

  it('records nothing under noGrad and refuses backward without a graph', () => {
    tidy(() => {
      const x = Tensor.ones([2]);
      x.requiresGrad = true;
      const y = noGrad(() => relu(x));
      expect(y.requiresGrad).toBe(false);
      expect(y.node).toBeNull();
      expect(() => y.backward()).toThrow(/does not require grad/);
      expect(() => relu(x).backward()).toThrow(/not a scalar/);
    });
  });

  it('rejects mismatched shapes with the op and shapes named', () => {
    tidy(() => {
      expect(() => add(Tensor.ones([2, 3]), Tensor.ones([3, 2]))).toThrow(OpError);
      expect(() => add(Tensor.ones([2, 3]), Tensor.ones([3, 2]))).toThrow('add: shapes [2,3] and [3,2] do not broadcast');
    });
  });

  it('reports a kernel that fails to compile by name', async () => {
    const gpu = getGpu();
    const out = keep(Tensor.zeros([4]));
    const kernel = gpu.pipelines.get({ shader: 'elementwise', entry: 'main', bindings: ['write'], defines: { T: 'f32', U: 'u32', BODY: 'out[i] = undefined_name;' } });
    gpu.dispatch({
      kernel,
      buffers: [out.buffer],
      params: Object.fromEntries(kernel.params.map((f) => [f.name, f.name === 'n' ? 4 : 0])), // the broadcast fields unused
      workgroups: [1],
      label: 'broken',
    });
    const err = await gpu.sync().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GpuError);
    expect((err as Error).message).toMatch(/kernel elementwise.main failed to compile: elementwise.wgsl:\d+:\d+: .*undefined_name/);
    // reported once; the device keeps working
    await gpu.sync();
    expect(Array.from(await out.fill(2).toArray())).toEqual([2, 2, 2, 2]);
    out.release();
  });

  it('changes version on every write into its memory, shared with its views', () => {
    tidy(() => {
      const t = Tensor.from([1, 2, 3, 4], [4]);
      const view = t.reshape([2, 2]);
      const other = Tensor.from([5, 6, 7, 8], [4]);
      const versions = [t.version];
      const writes: [string, () => void][] = [
        ['fill', () => t.fill(1)],
        ['set', () => t.set(new Float32Array(4))],
        ['copyFrom', () => t.copyFrom(other)],
        ['a kernel writing into it (a view bound)', () => getGpu().dispatch({ kernel: { shader: 'tensor', entry: 'fill', bindings: ['write'] }, buffers: [view.buffer], params: { n: 1, value: 2 }, workgroups: [1] })],
      ];
      for (const [what, write] of writes) {
        const o = other.version;
        write();
        expect(t.version, what).not.toBe(versions.at(-1));
        expect(view.version, what).toBe(t.version);
        expect(other.version, `${what}: the source is only read`).toBe(o);
        versions.push(t.version);
      }
      add(t, other); // reads only
      expect(t.version).toBe(versions.at(-1));
    });
  });

  it('derived: made once, made again after a write, released with the memory', async () => {
    const gpu = getGpu();
    const t = keep(Tensor.from([1, 2, 3, 4], [4]));
    let made = 0;
    const doubled = () => tidy(() => t.derived('doubled', () => (made++, add(t, t))));
    const first = doubled();
    expect(doubled()).toBe(first);
    expect(tidy(() => t.reshape([2, 2]).derived('doubled', () => Tensor.zeros([4])))).toBe(first); // a view shares it
    expect(made).toBe(1);
    expect(first.released).toBe(false); // kept out of the tidy scopes
    t.set(Float32Array.from([5, 6, 7, 8]));
    const second = doubled();
    expect(made).toBe(2);
    expect(first.released).toBe(true); // the stale one went back to the pool
    expect(Array.from(await second.toArray())).toEqual([10, 12, 14, 16]);
    expect(gpu.dryRun(() => t.derived('doubled', () => (made++, Tensor.zeros([4]))))).not.toBe(second); // a dry run keeps nothing
    expect(doubled()).toBe(second);
    const live = gpu.pool.stats().liveBuffers;
    t.release();
    expect(second.released).toBe(true);
    expect(gpu.pool.stats().liveBuffers).toBe(live - 2);
  });

  it('keeps the pool flat over many scoped steps', async () => {
    const gpu = getGpu();
    const x = keep(Tensor.from([1, 2, 3, 4], [4]));
    x.requiresGrad = true;
    const step = () =>
      tidy(() => {
        add(mul(x, x), x).backward(Tensor.ones([4]));
        x.grad!.release();
        x.grad = null;
      });
    step();
    const live = gpu.pool.stats().liveBuffers;
    for (let i = 0; i < 50; i++) step();
    expect(gpu.pool.stats().liveBuffers).toBe(live);
    await gpu.sync();
    x.release();
  });
});
