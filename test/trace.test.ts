// gpunet trace: ResNet18 at 224 px op by op, its parameters and multiply-accumulates totalled as
// torchvision's and ptflops' tables give them; the backward's gradient norms; the command's output.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { traceCommand } from '../src/cli/trace.ts';
import { resnet18 } from '../src/nn/resnet.ts';
import { smallCnn } from '../src/nn/smallcnn.ts';
import { Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { traceModel } from '../src/train/trace.ts';
import { runCommand, useGpu } from './helpers.ts';

useGpu();
const shared = join(import.meta.dirname, '..', '..', 'shared');

describe('trace', () => {
  it('ResNet18 at 224 px: 69 ops, 11.7 M parameters, 1.81 G multiply-accumulates in conv and fc (1.82 G as ptflops counts)', async () => {
    const model = resnet18({ rng: new Rng(1) });
    const t = await tidy(() => traceModel(model, Tensor.randn([1, 3, 224, 224], new Rng(2))));
    model.release();
    expect(t.rows).toHaveLength(69);
    const sum = (f: (r: (typeof t.rows)[number]) => number) => t.rows.reduce((a, r) => a + f(r), 0);
    expect(sum((r) => r.params)).toBe(11_689_512);
    const convs = t.rows.filter((r) => r.op === 'conv2d');
    expect(convs).toHaveLength(20);
    // torchvision's table: 1.81 GFLOPS, counting a multiply-add once; its convolutions alone 1,813,561,344
    expect(convs.reduce((a, r) => a + r.flops / 2, 0)).toBe(1_813_561_344);
    expect(sum((r) => r.flops) / 2 / 1e9).toBeCloseTo(1.814, 3);
    expect(Math.abs(sum((r) => r.macs) / 1.82e9 - 1)).toBeLessThan(0.002);
    expect(t.rows[0]).toMatchObject({ op: 'conv2d', layer: 'conv1', inputs: [[1, 3, 224, 224], [64, 3, 7, 7]], output: [1, 64, 112, 112], params: 9408 });
    expect(t.rows.at(-1)).toMatchObject({ op: 'linear', layer: 'fc', output: [1, 1000], params: 513_000 });
    expect(t.rows.every((r) => r.gpuMs >= 0 && Number.isFinite(r.stats.std))).toBe(true);
    expect(sum((r) => r.gpuMs)).toBeGreaterThan(0);
    // the last op's statistics are the logits'
    const mean = t.logits.reduce((a, v) => a + v, 0) / t.logits.length;
    expect(t.rows.at(-1)!.stats.mean).toBeCloseTo(mean, 5);
    expect(t.rows.at(-1)!.stats.max).toBe(Math.max(...t.logits));
  });

  it('--backward: every parameter gets its gradient norm, the loss is the cross-entropy of the chosen class', async () => {
    const model = smallCnn(4, { rng: new Rng(3) });
    const x = Tensor.randn([1, 3, 9, 9], new Rng(4));
    const t = await tidy(() => traceModel(model, x, { backward: true, label: 2 }));
    expect(t.backward!.label).toBe(2);
    const l = Array.from(t.logits);
    const lse = Math.log(l.reduce((a, v) => a + Math.exp(v), 0));
    expect(t.backward!.loss).toBeCloseTo(lse - l[2], 5);
    expect(t.backward!.grads.map((g) => g.name)).toEqual(model.namedParameters().map(([n]) => n));
    expect(t.backward!.grads.every((g) => g.norm > 0 && Number.isFinite(g.norm))).toBe(true);
    expect(model.parameters().every((p) => p.grad === null)).toBe(true);
    x.release();
    model.release();
  });

  it('gpunet trace prints a line per op, the totals and, with --backward, the gradient norms', async () => {
    const image = join(shared, 'data', 'imagenet', 'samoyed.jpg');
    // Darknet-tiny, an ONNX graph that records no preprocessing: given by flags
    const checkpoint = join(shared, 'weights', 'darknet-tiny-imagenet.onnx');
    const flags = ['--means', '0,0,0', '--stds', '1,1,1', '--size', '64', '--resize', 'fill'];
    const { code, out } = await runCommand(traceCommand, ['--checkpoint', checkpoint, '--input', image, ...flags, '--backward', '--label', '3']);
    expect(code).toBe(0);
    expect(out[0]).toMatch(/^#\s+op\s+layer\s+inputs\s+output\s+params\s+FLOPs\s+GPU ms\s+mean\s+std\s+min\s+max$/);
    expect(out[2]).toMatch(/^1\s+conv2d\s+\S+\s+\[1,3,64,64\] \[16,3,3,3\] \[16\]\s+\[1,16,64,64\]\s+448\s+3\.54M\s/);
    expect(out).toContainEqual(expect.stringMatching(/^ops: \d+   parameters: 1,039,912   GPU time: [\d.]+ ms$/));
    expect(out).toContainEqual(expect.stringMatching(/^backward of cross-entropy against class 3, loss [\d.]+: gradient norm per parameter$/));
    const err = async (args: string[]) => (await runCommand(traceCommand, args).catch((e: Error) => ({ err: [e.message] }))).err.join(' ');
    expect(await err(['--input', image])).toMatch(/give --checkpoint FILE or --arch/);
    expect(await err(['--checkpoint', checkpoint, '--input', image, ...flags, '--label', '1000'])).toMatch(/--label 1000: \S+darknet-tiny-imagenet\.onnx has 1000 classes/);
    expect(await err(['--checkpoint', checkpoint, '--input', image])).toMatch(/does not record its preprocessing: pass --means --stds --resize \(/);
  });
});
