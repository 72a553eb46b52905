// The public surface (src/index.ts, what `import * as gpunet from 'gpunet'` gives) as a PyTorch user
// would call it: tensors from nested arrays, tensor methods with their gradients, the global seed,
// layer constructors with torch's positional and optional arguments, state dicts, cross-entropy
// with labels as an array or a tensor.
import { describe, expect, it } from 'vitest';
import { getGpu } from '../src/gpu/index.ts';
import * as gpunet from '../src/index.ts';
import { relError, useGpu } from './helpers.ts';

useGpu();
const { nn, ops } = gpunet;

const values = async (t: gpunet.Tensor) => Array.from(await t.toArray());

describe('making tensors', () => {
  it('from nested arrays, a number, a Float32Array with a shape', async () => {
    await gpunet.tidy(async () => {
      const t = gpunet.tensor([[1, 2, 3], [4, 5, 6]]);
      expect(t.shape).toEqual([2, 3]);
      expect(await values(t)).toEqual([1, 2, 3, 4, 5, 6]);
      const s = gpunet.tensor(2.5);
      expect(s.shape).toEqual([]);
      expect(await s.item()).toBe(2.5);
      const f = gpunet.tensor(new Float32Array([1, 2, 3, 4, 5, 6]), { shape: [3, 2], name: 'f' });
      expect(f.shape).toEqual([3, 2]);
      expect(f.describe()).toContain("'f'");
      expect(gpunet.tensor([1, 2, 3, 4], { shape: [2, 2] }).shape).toEqual([2, 2]);
    });
  });

  it('refuses ragged nesting, non-numbers and a shape that contradicts the nesting, naming the place', () => {
    expect(() => gpunet.tensor([[1, 2], [3]])).toThrow(/ragged nested array: \[1\] has 1 elements where shape \[2,2\] needs 2/);
    expect(() => gpunet.tensor([[1, 2], [3, [4]]] as never)).toThrow(/expected a number at \[1\]\[1\]/);
    expect(() => gpunet.tensor('abc' as never)).toThrow(/tensor: expected nested arrays/);
    expect(() => gpunet.tensor([[1, 2]], { shape: [2] })).toThrow(/give one or the other/);
  });

  it('zeros, ones, full; randn and rand repeat after manualSeed and differ without it', async () => {
    await gpunet.tidy(async () => {
      expect(await values(gpunet.zeros([2, 2]))).toEqual([0, 0, 0, 0]);
      expect(await values(gpunet.ones([3]))).toEqual([1, 1, 1]);
      expect(await values(gpunet.full([2], 7))).toEqual([7, 7]);
      gpunet.manualSeed(5);
      const a = await values(gpunet.randn([1000]));
      const b = await values(gpunet.randn([1000]));
      gpunet.manualSeed(5);
      expect(await values(gpunet.randn([1000]))).toEqual(a);
      expect(b).not.toEqual(a);
      const mean = a.reduce((s, v) => s + v, 0) / a.length;
      const variance = a.reduce((s, v) => s + (v - mean) ** 2, 0) / a.length;
      expect(Math.abs(mean)).toBeLessThan(0.15);
      expect(Math.abs(variance - 1)).toBeLessThan(0.15);
      const u = await values(gpunet.rand([1000], { rng: new gpunet.Rng(3) }));
      expect(Math.min(...u)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...u)).toBeLessThan(1);
      expect(gpunet.randn([2], { requiresGrad: true }).requiresGrad).toBe(true);
    });
  });
});

describe('tensor methods and autograd', () => {
  it('add, sub, mul with tensors and numbers, matmul, sum, mean, relu, reshape: values and gradients', async () => {
    await gpunet.tidy(async () => {
      const a = gpunet.tensor([[1, -2], [3, 4]], { requiresGrad: true });
      const b = gpunet.tensor([[0.5, 1], [-1, 2]], { requiresGrad: true });
      expect(await values(a.add(b))).toEqual([1.5, -1, 2, 6]);
      expect(await values(a.sub(1))).toEqual([0, -3, 2, 3]);
      expect(await values(a.add(1).mul(2))).toEqual([4, -2, 8, 10]);
      expect(await values(a.matmul(b))).toEqual([1 * 0.5 + -2 * -1, 1 * 1 + -2 * 2, 3 * 0.5 + 4 * -1, 3 * 1 + 4 * 2]);
      expect(await a.mean().item()).toBe(1.5);
      expect(await values(a.relu())).toEqual([1, 0, 3, 4]);
      // L = sum(relu(a) * b) + mean(a @ b)*4 ; dL/da = (a > 0) * b + 1 b^T, dL/db = relu(a) + a^T 1
      const loss = a.relu().mul(b).sum().add(a.matmul(b).reshape([4]).mean().mul(4));
      loss.backward();
      // (1 b^T)[i,k] = sum_j b[k,j]: row sums of b = [1.5, 1]
      expect(await values(a.grad!)).toEqual([0.5 + 1.5, 0 + 1, -1 + 1.5, 2 + 1]);
      // (a^T 1)[k,j] = sum_i a[i,k]: column sums of a = [4, 2]
      expect(await values(b.grad!)).toEqual([1 + 4, 0 + 4, 3 + 2, 4 + 2]);
      const p = gpunet.tensor([[1, 2, 3]]).softmax();
      const e = [1, 2, 3].map(Math.exp);
      expect(relError(await p.toArray(), e.map((v) => v / (e[0] + e[1] + e[2])))).toBeLessThan(1e-6);
    });
  });

  it('noGrad records nothing; tidy gives the memory back', async () => {
    const pool = getGpu().pool;
    const before = pool.stats().liveBuffers;
    const x = gpunet.tensor([1, 2], { requiresGrad: true });
    const y = gpunet.noGrad(() => x.mul(3));
    expect(y.requiresGrad).toBe(false);
    expect(() => y.backward()).toThrow(/does not require grad/);
    const kept = gpunet.tidy(() => x.mul(2).add(1).sum());
    expect(pool.stats().liveBuffers).toBe(before + 3); // x, y and the kept sum
    expect(await kept.item()).toBe(8);
    for (const t of [x, y, kept]) t.release();
    expect(pool.stats().liveBuffers).toBe(before);
  });
});

describe('cross-entropy labels', () => {
  it('a number array and an [N] tensor of class indices give the same loss and gradient', async () => {
    await gpunet.tidy(async () => {
      const logits = gpunet.randn([5, 3], { rng: new gpunet.Rng(2), requiresGrad: true });
      const labels = [2, 0, 1, 1, 0];
      const fromArray = ops.crossEntropy(logits, labels);
      fromArray.backward();
      const g1 = await logits.grad!.toArray();
      logits.grad!.release();
      logits.grad = null;
      const fromTensor = ops.crossEntropy(logits, gpunet.tensor(labels));
      fromTensor.backward();
      expect(await fromTensor.item()).toBe(await fromArray.item());
      expect(relError(await logits.grad!.toArray(), g1)).toBe(0);
    });
  });

  it('a bad label: an array is refused naming the row; a tensor gives that row a NaN loss', async () => {
    await gpunet.tidy(async () => {
      const logits = gpunet.randn([3, 4], { rng: new gpunet.Rng(3) });
      expect(() => ops.crossEntropy(logits, [0, 4, 1])).toThrow(/label 4 at row 1 is not a class index in \[0, 4\)/);
      expect(() => ops.crossEntropy(logits, gpunet.tensor([0, 1]))).toThrow(/target \[2\] is neither class indices \[3\]/);
      const rows = await Promise.all([[0, 4, 1], [0, 1.5, 1], [0, -1, 1], [0, 3, 1]].map((l) => ops.crossEntropy(logits, gpunet.tensor(l), { reduction: 'sum' }).item()));
      expect(rows.slice(0, 3).every(Number.isNaN)).toBe(true);
      expect(Number.isFinite(rows[3])).toBe(true);
    });
  });
});

describe('nn modules', () => {
  it('constructors take torch\'s required arguments positionally and the rest as options', () => {
    gpunet.tidy(() => {
      const conv = new nn.Conv2d(3, 8, 3, { stride: 2, padding: 1, bias: false });
      expect(conv.weight.shape).toEqual([8, 3, 3, 3]);
      expect(conv.bias).toBeNull();
      expect(conv.opts).toEqual({ stride: 2, padding: 1, dilation: 1, groups: 1 });
      expect(new nn.Conv2d(4, 8, [1, 3], { groups: 2 }).weight.shape).toEqual([8, 2, 1, 3]);
      expect(new nn.Linear(4, 2).bias!.shape).toEqual([2]);
      expect(new nn.Linear(4, 2, { bias: false }).bias).toBeNull();
      const bn = new nn.BatchNorm2d(4, { eps: 1e-3 });
      expect([bn.eps, bn.momentum]).toEqual([1e-3, 0.1]);
      expect(new nn.MaxPool2d(2).opts).toEqual({ kernel: 2 });
      expect(new nn.AvgPool2d(3, { stride: 1, padding: 1 }).opts).toEqual({ kernel: 3, stride: 1, padding: 1 });
      expect(new nn.Dropout().p).toBe(0.5);
      const r = nn.resnet18({ numClasses: 3 });
      expect(r.numClasses).toBe(3);
      r.release();
    });
  });

  it('the global seed makes initialisation reproducible; an own generator leaves it alone', async () => {
    await gpunet.tidy(async () => {
      gpunet.manualSeed(11);
      const a = await values(new nn.Linear(3, 2).weight);
      gpunet.manualSeed(11);
      new nn.Linear(3, 2, { rng: new gpunet.Rng(99) }); // draws from its own generator
      expect(await values(new nn.Linear(3, 2).weight)).toEqual(a);
    });
  });

  it('stateDict / loadStateDict copy weights by name; strict refuses a mismatch', async () => {
    await gpunet.tidy(async () => {
      const make = (seed: number) => new nn.Sequential(new nn.Linear(3, 4, { rng: new gpunet.Rng(seed) }), new nn.ReLU(), new nn.BatchNorm2d(4));
      const src = make(1);
      const dst = make(2);
      expect([...src.stateDict().keys()]).toEqual(['0.weight', '0.bias', '2.weight', '2.bias', '2.running_mean', '2.running_var']);
      expect(dst.loadStateDict(src.stateDict())).toEqual({ missing: [], unexpected: [] });
      expect(await values(dst.stateDict().get('0.weight')!)).toEqual(await values(src.stateDict().get('0.weight')!));
      // read-back values work as well, as a plain object
      const saved = Object.fromEntries(await Promise.all([...src.stateDict()].map(async ([k, t]) => [k, await t.toArray()] as const)));
      dst.loadStateDict(saved);
      const partial = { '0.weight': saved['0.weight'], extra: new Float32Array(1) };
      expect(() => dst.loadStateDict(partial)).toThrow(/do not fit the model \(missing 0\.bias, 2\.weight, 2\.bias; unexpected extra\)/);
      expect(dst.loadStateDict(partial, { strict: false }).unexpected).toEqual(['extra']);
      expect(() => dst.loadStateDict({ ...saved, '0.bias': new Float32Array(3) })).toThrow(/'0\.bias' holds 3 values, the model's \[4\] holds 4/);
      expect(dst.train().training).toBe(true);
      expect(dst.eval().namedModules().every(([, m]) => !m.training)).toBe(true);
      expect(dst.parameters()).toHaveLength(4);
    });
  });
});

describe('defineOp: an op with its own WGSL', () => {
  const WGSL = `
struct Params { n: u32, k: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
// x: [n] -> out: [n] = k * x * x
@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) id: vec3u) {
  if (id.x < p.n) { out[id.x] = p.k * x[id.x] * x[id.x]; }
}`;
  // k x^2, its gradient 2 k x dy composed of built-in ops
  const scaledSquare = gpunet.defineOp({
    name: 'scaled-square',
    wgsl: WGSL,
    forward: (k, x: gpunet.Tensor, scale: number) => k.run('forward', { output: x.shape, inputs: [x], params: { n: x.size, k: scale }, workgroups: [Math.ceil(x.size / 64)] }),
    backward: (_, dy, { args: [x, scale] }) => [ops.mul(dy, x.mul(2 * scale))],
  });

  it('is recorded on the tape, takes non-tensor arguments, and tidy frees what it makes', async () => {
    const pool = getGpu().pool;
    const before = pool.stats().liveBuffers;
    const x = gpunet.tensor([1, -2, 3], { requiresGrad: true });
    const y = await gpunet.tidy(async () => {
      const out = scaledSquare(x, 0.5);
      out.sum().backward();
      return out.toArray();
    });
    expect(Array.from(y)).toEqual([0.5, 2, 4.5]);
    expect(Array.from(await x.grad!.toArray())).toEqual([1, -2, 3]);
    x.grad!.release();
    x.release();
    expect(pool.stats().liveBuffers).toBe(before);
  });

  it('names the op in its errors: a WGSL compile error with its line, a bad backward', async () => {
    const broken = gpunet.defineOp({
      name: 'broken',
      wgsl: WGSL.replace('p.k * x[id.x]', 'p.k * y[id.x]'),
      forward: (k, x: gpunet.Tensor) => k.run('forward', { output: x.shape, inputs: [x], params: { n: x.size, k: 1 }, workgroups: [1] }),
      backward: () => [],
    });
    await expect(gpunet.tidy(() => broken(gpunet.tensor([1])).toArray())).rejects.toThrow(/kernel broken \(custom op\)\.forward failed to compile: broken \(custom op\):9:\d+: .*y/);
    const noGrads = gpunet.defineOp({ name: 'no-grads', wgsl: WGSL, forward: (k, x: gpunet.Tensor) => scaledSquare(x, 1), backward: () => [] });
    expect(() => gpunet.tidy(() => noGrads(gpunet.tensor([1], { requiresGrad: true })).sum().backward())).toThrow(/no-grads: backward must return one gradient \(or null\) per tensor input, 1, got 0/);
    expect(() => gpunet.defineOp({ name: 'a b', wgsl: WGSL, forward: (k, x: gpunet.Tensor) => x, backward: () => [] })).toThrow(/defineOp: an op needs a name/);
  });
});
