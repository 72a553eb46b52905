// Training through the new ops inside real graphs: building blocks of torchvision models, exported
// to ONNX by PyTorch itself (tools/export_block.py: seeded weights, opset 14), run as GraphModules
// with a tape. Output, parameter gradients (by state-dict name) and the input's gradient match
// PyTorch's for the same dy: EfficientNet's MBConv (SiLU, Sigmoid, squeeze-excitation), MobileNetV3's
// inverted residual (HardSwish, HardSigmoid), a LayerNorm written out by the exporter (fused into
// one op) with GELU through Erf, ConvNeXt's CNBlock (Transpose, the fused LayerNorm, MatMul on 4-D,
// layer scale) and ViT's encoder block (attention: batched MatMul, Softmax along the last axis,
// reshapes whose shape arithmetic folds, slices of the fused in-projection weight).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GraphModule } from '../src/onnx/graph.ts';
import { readOnnx } from '../src/onnx/read.ts';
import { Tensor, tidy } from '../src/tensor/index.ts';
import { relError, useGpu } from './helpers.ts';
import { PYTHON, readFloats } from './torch.ts';

useGpu();

const BLOCKS = [
  { block: 'layernorm', fused: 1 },
  { block: 'mbconv', fused: 0 },
  { block: 'mobilenet_v3', fused: 0 },
  { block: 'convnext', fused: 1 },
  { block: 'vit', fused: 2 },
];

const dir = mkdtempSync(join(tmpdir(), 'gpunet-onnx-blocks-'));
const script = join(import.meta.dirname, '..', 'tools', 'export_block.py');
beforeAll(async () => {
  const run = promisify(execFile);
  for (let i = 0; i < BLOCKS.length; i += 2) {
    await Promise.all(BLOCKS.slice(i, i + 2).map((b, k) => run(PYTHON, [script, join(dir, b.block), '--block', b.block, '--seed', String(i + k + 1)])));
  }
}, 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('gradients through torchvision blocks exported by PyTorch', () => {
  for (const { block, fused } of BLOCKS) {
    it(`${block}: output and every gradient match PyTorch`, async () => {
      const out = join(dir, block);
      const meta = JSON.parse(readFileSync(join(out, 'meta.json'), 'utf8')) as { input_shape: number[]; output_shape: number[] };
      const grads = JSON.parse(readFileSync(join(out, 'grads.json'), 'utf8')) as Record<string, number[]>;
      const net = new GraphModule(readOnnx(join(out, 'model.onnx')), { source: `${block}.onnx`, inputShapes: { input: meta.input_shape } });
      try {
        // the decomposed layer norms run as one fused op each
        const plan = net.describe({ input: meta.input_shape });
        expect(plan.steps.filter((n) => n.opType === 'LayerNormalization')).toHaveLength(fused);
        expect(plan.steps.some((n) => n.opType === 'ReduceMean')).toBe(false);
        const params = new Map(net.namedParameters());
        expect([...params.keys()].sort()).toEqual(Object.keys(grads).filter((k) => k !== 'input').sort());
        await tidy(async () => {
          const x = Tensor.from(readFloats(join(out, 'input.bin')), meta.input_shape);
          x.requiresGrad = true;
          const y = net.forward(x);
          expect(y.shape).toEqual(meta.output_shape);
          expect(relError(await y.toArray(), readFloats(join(out, 'output.bin')))).toBeLessThan(1e-4);
          y.backward(Tensor.from(readFloats(join(out, 'dy.bin')), meta.output_shape));
          expect(relError(await x.grad!.toArray(), grads.input), 'input').toBeLessThan(1e-4);
          for (const [name, p] of params) {
            expect(relError(await p.grad!.toArray(), grads[name]), name).toBeLessThan(1e-4);
            p.grad!.release();
            p.grad = null;
          }
          x.grad!.release();
        });
      } finally {
        net.release();
      }
    });
  }
});
