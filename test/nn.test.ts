import { describe, expect, it } from 'vitest';
import { getGpu } from '../src/gpu/index.ts';
import { resnet18, resnet34 } from '../src/nn/resnet.ts';
import { noGrad, Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { useGpu } from './helpers.ts';

useGpu();

describe('modules and ResNet', () => {
  it('ResNet18 and ResNet34 have torchvision parameter counts and state-dict names', () => {
    const r18 = resnet18();
    expect(r18.countParameters().total).toBe(11_689_512);
    const names = [...r18.stateDict().keys()];
    for (const n of ['conv1.weight', 'bn1.running_mean', 'layer1.0.conv1.weight', 'layer2.0.downsample.0.weight', 'layer2.0.downsample.1.running_var', 'layer4.1.bn2.bias', 'fc.weight', 'fc.bias']) {
      expect(names).toContain(n);
    }
    expect(names.filter((n) => n.includes('downsample'))).toHaveLength(3 * 5); // layers 2-4: conv weight + bn (2 params, 2 buffers)

    // freezing by prefix: only the head stays trainable
    r18.freeze().unfreeze('fc');
    expect(r18.countParameters()).toEqual({ total: 11_689_512, trainable: 512 * 1000 + 1000, frozen: 11_689_512 - 513_000 });
    r18.replaceHead(7, { rng: new Rng(1) });
    expect(r18.numClasses).toBe(7);
    expect(r18.countParameters().trainable).toBe(512 * 7 + 7);
    r18.release();

    const r34 = resnet34();
    expect(r34.countParameters().total).toBe(21_797_672);
    r34.release();
  });

  it('inference frees every intermediate at once and gives finite logits', async () => {
    const model = resnet18({ numClasses: 10, rng: new Rng(3) }).eval();
    const pool = getGpu().pool;
    const x = Tensor.randn([2, 3, 32, 32], new Rng(4));
    const before = pool.stats().liveBuffers;
    // the first inference keeps Winograd's transformed weights with the weights (layer1's 3x3
    // convs here, unless a tuning cache chose otherwise); a second one leaves only its logits
    noGrad(() => model.forward(x)).release();
    const kept = pool.stats().liveBuffers - before;
    const y = noGrad(() => model.forward(x));
    expect(pool.stats().liveBuffers).toBe(before + kept + 1);
    expect(y.shape).toEqual([2, 10]);
    const logits = await y.toArray();
    expect(logits.every(Number.isFinite)).toBe(true);
    expect(new Set(logits).size).toBeGreaterThan(1);
    y.release();
    x.release();

    // training mode: a backward reaches the stem, and tidy returns the pool to where it was
    // before the inference (the trained weights' forward dropped what inference kept)
    model.train();
    await tidy(async () => {
      const xs = Tensor.randn([2, 3, 32, 32], new Rng(5));
      model.forward(xs).backward(Tensor.ones([2, 10]));
      const g = await model.stateDict().get('conv1.weight')!.grad!.toArray();
      expect(g.every(Number.isFinite) && g.some((v) => v !== 0)).toBe(true);
    });
    for (const t of model.parameters()) t.grad?.release(), (t.grad = null);
    expect(pool.stats().liveBuffers).toBe(before - 1);
    model.release();
  });
});
