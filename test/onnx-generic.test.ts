// torchvision classifiers that are not a ResNet18/34, exported to ONNX by PyTorch itself in eval mode
// (tools/export_torchvision.py: random weights, random batchnorm affine parameters), load through
// loadClassifier as a generic GraphModule and reproduce PyTorch's logits: SqueezeNet 1.1 (Concat,
// MaxPool with ceil_mode, Identity-deduplicated biases), ResNet50 (bottleneck blocks, which the
// ResNet module does not have) and MobileNetV2 (depthwise grouped convs, ReLU6 as Clip).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ResNet } from '../src/nn/resnet.ts';
import type { OnnxNode } from '../src/onnx/ir.ts';
import { GraphModule } from '../src/onnx/graph.ts';
import { loadClassifier } from '../src/onnx/load.ts';
import { readOnnx } from '../src/onnx/read.ts';
import { noGrad, Tensor } from '../src/tensor/index.ts';
import { relError, useGpu } from './helpers.ts';
import { exportTorchvision, readFloats } from './torch.ts';

useGpu();

const SIZE = 64;
const CLASSES = 10;
const BATCH = 2;
const EXPORTS = [
  {
    arch: 'squeezenet1_1',
    seed: 1,
    args: [],
    // Fire modules concatenate their two expand branches; its max pools use ceil_mode (63 -> 31 -> 15 -> 7 at 64 px)
    features: (nodes: OnnxNode[]) => {
      expect(nodes.filter((n) => n.opType === 'Concat')).toHaveLength(8);
      const pools = nodes.filter((n) => n.opType === 'MaxPool');
      expect(pools.length).toBeGreaterThan(0);
      expect(pools.every((n) => n.attrs.ceil_mode === 1)).toBe(true);
      // the export deduplicates the equal (zero) conv biases through Identity nodes
      expect(nodes.some((n) => n.opType === 'Identity')).toBe(true);
    },
  },
  {
    arch: 'resnet50',
    seed: 2,
    args: [],
    // bottleneck blocks: 1x1, 3x3, 1x1 convs around each residual Add (3 + 4 + 6 + 3 blocks), BN folded
    features: (nodes: OnnxNode[]) => {
      expect(nodes.filter((n) => n.opType === 'Add')).toHaveLength(16);
      expect(nodes.filter((n) => n.opType === 'Conv')).toHaveLength(53);
      expect(nodes.some((n) => n.opType === 'BatchNormalization')).toBe(false);
    },
  },
  {
    arch: 'mobilenet_v2',
    seed: 3,
    // with random running statistics the signal fades through its narrow layers and the logits hardly
    // depend on the input; statistics of the input itself keep it normalized
    // (the exported graph, batchnorm folded into the convs, is ~5e-5 from PyTorch's eager logits: so is onnxruntime)
    args: ['--bn-stats', 'batch'],
    features: (nodes: OnnxNode[]) => {
      expect(nodes.filter((n) => n.opType === 'Clip')).toHaveLength(35);
      expect(nodes.some((n) => n.opType === 'Conv' && ((n.attrs.group as number | undefined) ?? 1) > 1)).toBe(true);
    },
  },
] as const;

const dir = mkdtempSync(join(tmpdir(), 'gpunet-onnx-generic-'));
const exportDir = (e: (typeof EXPORTS)[number]) => join(dir, e.arch);
beforeAll(() => exportTorchvision(EXPORTS.map((e) => ({ dir: exportDir(e), args: ['--arch', e.arch, '--seed', String(e.seed), '--classes', String(CLASSES), '--size', String(SIZE), '--batch', String(BATCH), ...e.args] }))), 60_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('loadClassifier on torchvision exports that are not a ResNet18/34', () => {
  for (const e of EXPORTS) {
    it(`runs a PyTorch ${e.arch} as a GraphModule and matches its logits`, async () => {
      const path = join(exportDir(e), 'model.onnx');
      e.features(readOnnx(path).graph.nodes);
      const c = await loadClassifier(path);
      expect(c.model).toBeInstanceOf(GraphModule);
      expect(c.model).not.toBeInstanceOf(ResNet);
      expect(c.classes).toHaveLength(CLASSES);
      expect(c.model.training).toBe(false);
      const x = Tensor.from(readFloats(join(exportDir(e), 'input.bin')), [BATCH, 3, SIZE, SIZE]);
      const y = noGrad(() => c.model.forward(x));
      expect(y.shape).toEqual([BATCH, CLASSES]);
      const logits = await y.toArray();
      const expected = readFloats(join(exportDir(e), 'logits.bin'));
      // the comparison means something only if the logits depend on the input: the two images differ
      expect(relError(expected.subarray(0, CLASSES), expected.subarray(CLASSES))).toBeGreaterThan(0.05);
      expect(relError(logits, expected)).toBeLessThan(1e-4);
      x.release();
      y.release();
      c.model.release();
    });
  }
});
