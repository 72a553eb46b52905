// The torchvision zoo (npm run test:zoo): the smallest variant of every classification family
// PyTorch 1.13 exports, with seeded random weights, exported to ONNX by PyTorch itself
// (tools/export_zoo.py: eval mode, opset 14, cached under the system's temp folder by torch
// version, so a rerun exports nothing), loaded as a user's file is (loadClassifier), must give
// PyTorch's logits, and `gpunet summary --model` must list it; the layer norms PyTorch writes out
// (ConvNeXt, ViT, Swin) must all run fused, as LayerNormalization. The models at small inputs also
// take one backward pass in training mode, which must reach every parameter with a finite
// gradient (the 224-px ones would add a minute: ViT's encoder block is checked against PyTorch's
// gradients in test/onnx-blocks.test.ts); all but VGG and AlexNet are fine-tuned as
// `train --weights` does them (new head, a frozen and an unfrozen step, the checkpoint written and
// reloaded). CNNs run at small inputs (64 px;
// Inception v3 at 80, VGG and AlexNet at 224, whose adaptive pools export only there), the
// transformers at their native 224.
//
// The reference is PyTorch's forward in float64. Deep nets with random weights and batchnorm
// amplify rounding, so float32 itself cannot always come within 1e-4 of it (PyTorch's own float32
// logits are 1.0e-4 and 1.35e-4 from it in Wide ResNet and Inception v3 here, onnxruntime's
// 0.8e-4 and 1.3e-4): the bound is 1e-4 relative plus twice the error of PyTorch's float32 forward
// on the same input (which is below 1e-5 in 10 of the 20 models).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summaryCommand } from '../../src/cli/summary.ts';
import { GraphModule } from '../../src/onnx/graph.ts';
import { loadClassifier, saveClassifier } from '../../src/onnx/load.ts';
import type { Network } from '../../src/onnx/network.ts';
import { trainEpoch } from '../../src/train/classifier.ts';
import { makeOptimizer, paramGroups, type Phase, setTrainable } from '../../src/train/trainer.ts';
import { concat, matmul } from '../../src/ops/index.ts';
import { noGrad, relError, Rng, Tensor, tidy } from '../../src/tensor/index.ts';
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
const scratch = mkdtempSync(join(tmpdir(), 'gpunet-zoo-transfer-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

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

/** Device copies of every parameter, to compare with after a step. */
function paramCopies(model: Network): Map<string, Tensor> {
  return new Map(model.namedParameters().map(([n, p]) => [n, p.clone()]));
}

/** The parameters whose values differ from `copies` (per parameter, the sum of its squared changes,
 *  computed on the device and read back at once: reading ResNet-50-size weights back would cost
 *  seconds); releases the copies. The squares' rows are summed by a GEMM (ones [1, rows] x [rows,
 *  rest]), which binds them in row slices, as the elementwise ops bind theirs in pieces: this works on
 *  VGG's 411 MB fc weight, beyond one storage binding. */
async function changedSince(model: Network, copies: Map<string, Tensor>): Promise<string[]> {
  const names = [...copies.keys()];
  const params = new Map(model.namedParameters());
  const sums = noGrad(() => tidy(() => concat(names.map((n) => {
    const d = params.get(n)!.sub(copies.get(n)!);
    const rows = d.shape[0] ?? 1;
    return matmul(Tensor.ones([1, rows]), d.mul(d).reshape([rows, -1])).sum().reshape([1]);
  }), 0)));
  const values = await sums.toArray();
  sums.release();
  for (const t of copies.values()) t.release();
  return names.filter((_, i) => values[i] > 0);
}

/** Eval-mode logits of images [N, 3, S, S]. */
async function logitsOf(model: Network, images: Float32Array, shape: number[]): Promise<Float32Array> {
  model.eval();
  const x = Tensor.from(images, shape);
  const y = noGrad(() => model.forward(x));
  const out = await y.toArray();
  x.release();
  y.release();
  return out;
}

// What `gpunet train --weights model.onnx` does with each of them (src/train/setup.ts buildModel):
// a new 2-class head on the backbone (Network.withNewHead), trained through the trainer's split
// (src/train/trainer.ts: the frozen phase trains the head and the normalization layers, the
// unfrozen one everything), one step of each, and written as the checkpoint that
// predict and eval load.
// VGG's and AlexNet's first fc weights (411 and 151 MB) are larger than one storage binding on
// lavapipe (128 MiB): the GEMMs, the optimizers and the same-shape elementwise ops bind them in pieces.
describe('fine-tuning them as train --weights does', () => {
  for (const m of ZOO) {
    it(`${m.family} (${m.arch}): a new 2-class head, a frozen step moves only it, an unfrozen one the backbone; the checkpoint reloads`, async () => {
      const dir = dirs.get(m.arch)!;
      const c = await loadClassifier(join(dir, 'model.onnx'));
      const model = c.model.withNewHead(2, { rng: new Rng(5), size: m.size });
      let reloaded: Network | undefined;
      try {
        expect(model.numClasses).toBe(2);
        const split = model.split();
        const head = new Set(split.groups.at(-1));
        expect(head.size).toBeGreaterThan(0);
        expect(split.groups.length).toBeGreaterThan(1);
        // one image (the backward passes take half the time at batch 1), labelled as
        // the class the new head ranks last: a right label on a random deep net's confident logits
        // can leave no gradient within float32
        const shape = [1, 3, m.size, m.size];
        const images = readFloats(join(dir, 'input.bin')).subarray(0, 3 * m.size * m.size);
        const start = await logitsOf(model, images, shape);
        const labels = [start[0] < start[1] ? 0 : 1];
        const step = async (phase: Phase) => {
          setTrainable(split, phase);
          // AdamW's first step moves each parameter with a gradient by about lr, whatever the
          // gradient's scale (SGD's, at a rate that moves a stem, diverges on RegNet's large features)
          const opt = makeOptimizer('adamw', paramGroups(split, 1e-4, 1, 0).groups, 1e-4, 0.9);
          const before = paramCopies(model);
          const r = await trainEpoch(model, opt, [{ images, labels, paths: [] }], shape.slice(1));
          expect(Number.isFinite(r.meanLoss)).toBe(true);
          return changedSince(model, before);
        };

        // the head moves; of the backbone, only normalization scales and shifts may (fastai's train_bn)
        const frozen = await step('frozen');
        expect(frozen.filter((n) => head.has(n)).sort()).toEqual([...head].sort());
        expect(frozen.filter((n) => !head.has(n) && !split.batchNormParams.has(n))).toEqual([]);
        // unfrozen, every layer group of the backbone moves, the stem's first parameter among them
        const unfrozen = new Set(await step('unfrozen'));
        for (const g of split.groups.slice(0, -1)) expect(g.some((n) => unfrozen.has(n)), g[0]).toBe(true);
        const stem = split.groups[0][0];
        expect(unfrozen.has(stem), stem).toBe(true);

        // the checkpoint: written as train writes best.onnx, loaded as predict and eval load it
        const file = join(scratch, `${m.arch}.onnx`);
        const classes = ['ants', 'bees'];
        await saveClassifier({ model, classes, preprocessing: { size: m.size, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25], resize: 'crop' }, source: m.arch }, file);
        const expected = await logitsOf(model, images, shape);
        const back = await loadClassifier(file, { expectClasses: 2 });
        reloaded = back.model;
        expect(back.classes).toEqual(classes);
        expect(relError(await logitsOf(reloaded, images, shape), expected)).toBeLessThan(1e-5);
      } finally {
        model.release();
        reloaded?.release();
      }
    });
  }
});
