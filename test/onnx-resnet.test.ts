// torchvision ResNets exported to ONNX by PyTorch itself (tools/export_torchvision.py: random
// weights, random batchnorm statistics) map onto gpunet's ResNet module by graph structure, with
// batchnorm folded into the convs (eval-mode export) or kept (training-mode export), and reproduce
// PyTorch's logits; graphs that are not a ResNet are refused (null).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm2d } from '../src/nn/layers.ts';
import { readOnnx } from '../src/onnx/read.ts';
import { importResNet } from '../src/onnx/resnet.ts';
import { batchNorm2d } from '../src/ops/batchnorm.ts';
import { noGrad, Rng, Tensor } from '../src/tensor/index.ts';
import { randomArray, relError, useGpu } from './helpers.ts';
import { exportTorchvision, readFloats } from './torch.ts';

useGpu();

const SIZE = 64;
const CLASSES = 10;
const BATCH = 2;
const EXPORTS = [
  { arch: 'resnet18', mode: 'eval', seed: 1 },
  { arch: 'resnet18', mode: 'train', seed: 2 },
  { arch: 'resnet34', mode: 'train', seed: 3 },
] as const;

const dir = mkdtempSync(join(tmpdir(), 'gpunet-onnx-resnet-'));
const exportDir = (e: (typeof EXPORTS)[number]) => join(dir, `${e.arch}-${e.mode}`);
beforeAll(() => exportTorchvision(EXPORTS.map((e) => ({ dir: exportDir(e), args: ['--arch', e.arch, '--mode', e.mode, '--seed', String(e.seed), '--classes', String(CLASSES), '--size', String(SIZE), '--batch', String(BATCH)] }))), 60_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('importResNet', () => {
  for (const e of EXPORTS) {
    it(`maps a PyTorch ${e.arch} exported in ${e.mode} mode (BN ${e.mode === 'eval' ? 'folded' : 'kept'}) and matches its logits`, async () => {
      const model = readOnnx(join(exportDir(e), 'model.onnx'));
      const ops = new Set(model.graph.nodes.map((n) => n.opType));
      expect(ops.has('BatchNormalization')).toBe(e.mode === 'train');
      const net = importResNet(model);
      expect(net).not.toBeNull();
      expect(net!.arch).toBe(e.arch);
      expect(net!.numClasses).toBe(CLASSES);
      expect(net!.training).toBe(false);
      const x = Tensor.from(readFloats(join(exportDir(e), 'input.bin')), [BATCH, 3, SIZE, SIZE]);
      const y = noGrad(() => net!.forward(x));
      const logits = await y.toArray();
      const expected = readFloats(join(exportDir(e), 'logits.bin'));
      expect(relError(logits, expected)).toBeLessThan(1e-4);
      x.release();
      y.release();
      net!.release();
    });
  }

  it('the folded-BN scheme (gamma 1, beta b, mean 0, var f32(1 - eps)) is exactly x + b in eval mode', async () => {
    const C = 7;
    const shape = [2, C, 5, 3];
    const rng = new Rng(11);
    const xs = Float32Array.from(randomArray(shape, rng, -3, 3));
    const bs = Float32Array.from(randomArray([C], rng));
    const eps = new BatchNorm2d(C).eps;
    const x = Tensor.from(xs, shape);
    const y = batchNorm2d(x, Tensor.ones([C]), Tensor.from(bs, [C]), Tensor.zeros([C]), Tensor.full([C], Math.fround(1 - Math.fround(eps))), { training: false, eps });
    const out = await y.toArray();
    const plane = 5 * 3;
    const expected = xs.map((v, i) => Math.fround(v + bs[Math.floor(i / plane) % C]));
    expect(Array.from(out)).toEqual(Array.from(expected));
  });

  it('returns null for graphs that are not a ResNet', () => {
    // a real classifier of another architecture (LeakyRelu, no residual Adds)
    expect(importResNet(readOnnx(join(import.meta.dirname, '..', '..', 'shared', 'weights', 'darknet-tiny-imagenet.onnx')))).toBeNull();

    const resnet = readOnnx(join(exportDir(EXPORTS[0]), 'model.onnx'));
    const g = resnet.graph;
    // a Softmax after the logits: a node the ResNet module does not have
    const withSoftmax = {
      ...resnet,
      graph: {
        ...g,
        nodes: [...g.nodes, { name: 'softmax', opType: 'Softmax', domain: '', inputs: [g.outputs[0].name], outputs: ['probs'], attrs: { axis: 1 } }],
        outputs: [{ ...g.outputs[0], name: 'probs' }],
      },
    };
    expect(importResNet(withSoftmax)).toBeNull();
    // a residual Add dropped (the block's Relu reads the conv branch alone)
    const add = g.nodes.find((n) => n.opType === 'Add')!;
    const noResidual = {
      ...resnet,
      graph: {
        ...g,
        nodes: g.nodes
          .filter((n) => n !== add)
          .map((n) => (n.inputs.includes(add.outputs[0]) ? { ...n, inputs: n.inputs.map((v) => (v === add.outputs[0] ? add.inputs[0] : v)) } : n)),
      },
    };
    expect(importResNet(noResidual)).toBeNull();
    // strided stem conv changed to stride 1
    const stem = g.nodes.find((n) => n.opType === 'Conv')!;
    const stride1 = { ...resnet, graph: { ...g, nodes: g.nodes.map((n) => (n === stem ? { ...n, attrs: { ...n.attrs, strides: [1, 1] } } : n)) } };
    expect(importResNet(stride1)).toBeNull();
    // an Identity between an initializer and its conv (PyTorch's export deduplicates equal
    // initializers that way) still maps
    const withIdentity = {
      ...resnet,
      graph: {
        ...g,
        nodes: [
          { name: 'dedup', opType: 'Identity', domain: '', inputs: [stem.inputs[1]], outputs: ['stem_weight_alias'], attrs: {} },
          ...g.nodes.map((n) => (n === stem ? { ...n, inputs: [n.inputs[0], 'stem_weight_alias', ...n.inputs.slice(2)] } : n)),
        ],
      },
    };
    const net = importResNet(withIdentity);
    expect(net).not.toBeNull();
    net!.release();
  });
});
