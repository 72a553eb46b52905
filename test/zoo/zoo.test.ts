// The torchvision zoo (npm run test:zoo): the smallest variant of every classification family
// PyTorch 1.13 exports, with seeded random weights, exported to ONNX by PyTorch itself
// (tools/export_zoo.py: eval mode, opset 14, cached under the system's temp folder by torch
// version, so a rerun exports nothing), loaded as a user's file is (loadClassifier), must give
// PyTorch's logits, and `gpunet summary --model` must list it; the layer norms PyTorch writes out
// (ConvNeXt, ViT, Swin) must all run fused, as LayerNormalization. The models at small inputs also
// take one backward pass in training mode, which must reach every parameter with a finite
// gradient (the 224-px ones would add a minute: ViT's encoder block is checked against PyTorch's
// gradients in test/onnx-blocks.test.ts). CNNs run at small inputs (64 px;
// Inception v3 at 80, VGG and AlexNet at 224, whose adaptive pools export only there), the
// transformers at their native 224.
//
// The reference is PyTorch's forward in float64. Deep nets with random weights and batchnorm
// amplify rounding, so float32 itself cannot always come within 1e-4 of it (PyTorch's own float32
// logits are 1.0e-4 and 1.35e-4 from it in Wide ResNet and Inception v3 here, onnxruntime's
// 0.8e-4 and 1.3e-4): the bound is 1e-4 relative plus twice the error of PyTorch's float32 forward
// on the same input (which is below 1e-5 in 10 of the 20 models).
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { summaryCommand } from '../../src/cli/summary.ts';
import { GraphModule } from '../../src/onnx/graph.ts';
import { loadClassifier } from '../../src/onnx/load.ts';
import { noGrad, relError, Tensor, tidy } from '../../src/tensor/index.ts';
import { runCommand, useGpu } from '../helpers.ts';
import { PYTHON, readFloats } from '../torch.ts';

useGpu();

/** The tested list (README's "Supported models" is this list). */
const ZOO = [
  { family: 'ResNet', arch: 'resnet18', size: 64, batch: 2 },
  { family: 'ResNeXt', arch: 'resnext50_32x4d', size: 64, batch: 2 },
  { family: 'Wide ResNet', arch: 'wide_resnet50_2', size: 64, batch: 2 },
  { family: 'VGG', arch: 'vgg11', size: 224, batch: 1 },
  { family: 'AlexNet', arch: 'alexnet', size: 224, batch: 1 },
  { family: 'SqueezeNet', arch: 'squeezenet1_0', size: 64, batch: 2 },
  { family: 'DenseNet', arch: 'densenet121', size: 64, batch: 2 },
  { family: 'GoogLeNet', arch: 'googlenet', size: 64, batch: 2 },
  { family: 'Inception v3', arch: 'inception_v3', size: 80, batch: 2 },
  { family: 'MobileNetV2', arch: 'mobilenet_v2', size: 64, batch: 2 },
  { family: 'MobileNetV3', arch: 'mobilenet_v3_small', size: 64, batch: 2 },
  { family: 'EfficientNet', arch: 'efficientnet_b0', size: 64, batch: 2 },
  { family: 'EfficientNetV2', arch: 'efficientnet_v2_s', size: 64, batch: 2 },
  { family: 'MnasNet', arch: 'mnasnet0_5', size: 64, batch: 2 },
  { family: 'ShuffleNetV2', arch: 'shufflenet_v2_x0_5', size: 64, batch: 2 },
  { family: 'RegNetX', arch: 'regnet_x_400mf', size: 64, batch: 2 },
  { family: 'RegNetY', arch: 'regnet_y_400mf', size: 64, batch: 2 },
  // layerNorms: the nn.LayerNorm modules, each written out by the exporter (opset 14) and fused
  { family: 'ConvNeXt', arch: 'convnext_tiny', size: 64, batch: 2, layerNorms: 23 },
  { family: 'ViT', arch: 'vit_b_32', size: 224, batch: 1, layerNorms: 25 },
  { family: 'Swin', arch: 'swin_t', size: 224, batch: 1, layerNorms: 29 },
] as const;

const CACHE = join(tmpdir(), 'gpunet-zoo');
const dirs = new Map<string, string>();

beforeAll(async () => {
  // two export processes (two cores), each importing torch once; the heavy exports (VGG, ViT,
  // Swin, ConvNeXt) alternate between them
  const script = join(import.meta.dirname, '..', '..', 'tools', 'export_zoo.py');
  const halves = [0, 1].map((h) => ZOO.filter((_, i) => i % 2 === h));
  const run = promisify(execFile);
  const printed = await Promise.all(halves.map((h) => run(PYTHON, [script, CACHE, ...h.map((m) => `${m.arch}:${m.size}:${m.batch}`)], { maxBuffer: 1 << 20 })));
  halves.forEach((h, k) => printed[k].stdout.trim().split('\n').forEach((dir, i) => dirs.set(h[i].arch, dir)));
}, 600_000);

describe('torchvision classifiers exported by PyTorch 1.13', () => {
  for (const m of ZOO) {
    it(`${m.family} (${m.arch}, ${m.size} px): PyTorch's logits${m.size < 224 ? ', a backward pass' : ''}, and summary lists it`, async () => {
      const dir = dirs.get(m.arch)!;
      const path = join(dir, 'model.onnx');
      const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as { classes: number };
      const expected = readFloats(join(dir, 'logits.bin'));
      const c = await loadClassifier(path);
      try {
        expect(c.classes).toHaveLength(meta.classes);
        if (c.model instanceof GraphModule) {
          // every written-out layer norm runs as one LayerNormalization: none of its Pow or Sqrt is left
          const steps = c.model.describe({ input: [m.batch, 3, m.size, m.size] }).steps;
          expect(steps.filter((n) => n.opType === 'LayerNormalization')).toHaveLength('layerNorms' in m ? m.layerNorms : 0);
          expect(steps.filter((n) => n.opType === 'Pow' || n.opType === 'Sqrt')).toEqual([]);
        }
        const x = Tensor.from(readFloats(join(dir, 'input.bin')), [m.batch, 3, m.size, m.size]);
        const y = noGrad(() => c.model.forward(x));
        expect(y.shape).toEqual([m.batch, meta.classes]);
        const logits = await y.toArray();
        x.release();
        y.release();
        // the comparison means something only if the logits depend on the input and on the class
        if (m.batch > 1) expect(relError(expected.subarray(0, meta.classes), expected.subarray(meta.classes))).toBeGreaterThan(0.05);
        expect(Math.max(...expected) - Math.min(...expected)).toBeGreaterThan(0.05 * Math.max(...expected.map(Math.abs)));
        const float32 = relError(readFloats(join(dir, 'logits_f32.bin')), expected);
        expect(relError(logits, expected)).toBeLessThan(1e-4 + 2 * float32);
        if (m.size < 224) {
          c.model.train();
          await tidy(async () => {
            const xt = Tensor.from(readFloats(join(dir, 'input.bin')), [m.batch, 3, m.size, m.size]);
            const yt = c.model.forward(xt);
            yt.backward(Tensor.ones(yt.shape));
            for (const [name, p] of c.model.namedParameters()) {
              expect(p.grad, name).not.toBeNull();
              expect((await p.grad!.toArray()).every(Number.isFinite), name).toBe(true);
            }
          });
        }
      } finally {
        c.model.release();
      }
      const summary = await runCommand(summaryCommand, ['--model', path, '--size', String(m.size)]);
      expect(summary.err).toEqual([]);
      expect(summary.code).toBe(0);
      expect(summary.out.find((l) => l.startsWith('Total params: '))).toMatch(/^Total params: [1-9][\d,]*$/);
    });
  }
});
