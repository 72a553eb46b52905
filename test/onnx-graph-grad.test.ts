// Training through a generic ONNX graph: the gradients GraphModule's parameters receive for a
// Darknet-like graph (conv + bias, LeakyReLU, max pooling, global pooling, Gemm) equal PyTorch's
// for the same network written with torch.nn.functional.
import { describe, expect, it } from 'vitest';
import { GraphModule } from '../src/onnx/graph.ts';
import { DataType, type OnnxModel, type OnnxNode, type OnnxTensor } from '../src/onnx/ir.ts';
import { Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { randomArray, relError, useGpu } from './helpers.ts';
import { type TorchInput, torchRun } from './torch.ts';

useGpu();

const node = (opType: string, inputs: string[], outputs: string[], attrs: OnnxNode['attrs'] = {}): OnnxNode => ({
  name: outputs[0], opType, domain: '', inputs, outputs, attrs,
});

describe('gradients through a generic ONNX graph', () => {
  it('match PyTorch for a Darknet-like network', async () => {
    const rng = new Rng(21);
    const shapes: Record<string, number[]> = { w1: [4, 3, 3, 3], b1: [4], w2: [6, 4, 3, 3], b2: [6], fw: [5, 6], fb: [5] };
    const weights = Object.fromEntries(Object.entries(shapes).map(([k, s]) => [k, randomArray(s, rng, -0.5, 0.5)]));
    const inits: OnnxTensor[] = Object.entries(shapes).map(([name, dims]) => ({ name, dims, dataType: DataType.FLOAT, data: Float32Array.from(weights[name]) }));
    const conv = { kernel_shape: [3, 3], pads: [1, 1, 1, 1] };
    const m: OnnxModel = {
      irVersion: 8, opset: 13, producerName: 'test', metadata: {},
      graph: {
        name: 'darknet-like',
        nodes: [
          node('Conv', ['x', 'w1', 'b1'], ['c1'], conv),
          node('LeakyRelu', ['c1'], ['r1'], { alpha: 0.1 }),
          node('MaxPool', ['r1'], ['p1'], { kernel_shape: [2, 2], strides: [2, 2] }),
          node('Conv', ['p1', 'w2', 'b2'], ['c2'], conv),
          node('LeakyRelu', ['c2'], ['r2'], { alpha: 0.1 }),
          node('GlobalAveragePool', ['r2'], ['g']),
          node('Flatten', ['g'], ['f']),
          node('Gemm', ['f', 'fw', 'fb'], ['logits'], { transB: 1 }),
        ],
        initializers: new Map(inits.map((t) => [t.name, t])),
        inputs: [{ name: 'x', elemType: DataType.FLOAT, shape: [2, 3, 8, 6] }],
        outputs: [{ name: 'logits', elemType: DataType.FLOAT, shape: [2, 5] }],
      },
    };
    const x = randomArray([2, 3, 8, 6], rng);
    const dy = randomArray([2, 5], rng);
    const inputs: Record<string, TorchInput> = { x: { shape: [2, 3, 8, 6], data: x } };
    for (const [k, s] of Object.entries(shapes)) inputs[k] = { shape: s, data: Float32Array.from(weights[k]), grad: true };
    const [ref] = await torchRun([{
      inputs,
      expr: 'F.linear(F.leaky_relu(F.conv2d(F.max_pool2d(F.leaky_relu(F.conv2d(x, w1, b1, padding=1), 0.1), 2), w2, b2, padding=1), 0.1).mean((2, 3)), fw, fb)',
      dy,
    }]);

    const net = new GraphModule(m).train();
    try {
      await tidy(async () => {
        const y = net.forward(Tensor.from(Float32Array.from(x), [2, 3, 8, 6]));
        expect(relError(await y.toArray(), ref.out)).toBeLessThan(1e-4);
        y.backward(Tensor.from(Float32Array.from(dy), [2, 5]));
        const params = new Map(net.namedParameters());
        for (const name of Object.keys(shapes)) {
          const p = [...params].find(([n]) => n === name || n.endsWith(name));
          expect(p, name).toBeDefined();
          expect(relError(await p![1].grad!.toArray(), ref.grads![name]), name).toBeLessThan(1e-4);
        }
      });
    } finally {
      net.release();
    }
  });
});
