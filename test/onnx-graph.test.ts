import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { getGpu } from '../src/gpu/index.ts';
import { checkSupported, GraphModule } from '../src/onnx/graph.ts';
import { supportedOpsText } from '../src/onnx/ops/index.ts';
import { setConv2dWinograd, setConv2dWinogradCache } from '../src/ops/conv2d.ts';
import { DataType, type OnnxModel, type OnnxNode, type OnnxTensor } from '../src/onnx/ir.ts';
import { OnnxError, readOnnx } from '../src/onnx/read.ts';
import { loadClassifier } from '../src/onnx/load.ts';
import { encodeOnnx, saveOnnx } from '../src/onnx/write.ts';
import { noGrad, Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { relError, useGpu } from './helpers.ts';

useGpu();

const SHARED = join(import.meta.dirname, '..', '..', 'shared');
const DARKNET = join(SHARED, 'weights', 'darknet-tiny-imagenet.onnx');
const IMAGENET = join(SHARED, 'data', 'imagenet');

function floatTensor(name: string, dims: number[], rng: Rng, scale = 1): OnnxTensor {
  const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = rng.uniform(-scale, scale);
  return { name, dims, dataType: DataType.FLOAT, data };
}

const node = (opType: string, inputs: string[], outputs: string[], attrs: OnnxNode['attrs'] = {}, name = outputs[0]): OnnxNode => ({
  name, opType, domain: '', inputs, outputs, attrs,
});

function model(nodes: OnnxNode[], inits: OnnxTensor[], input: { name: string; shape: number[] }, output: string, opset = 13, outputShape: number[] = []): OnnxModel {
  return {
    irVersion: 8,
    opset,
    producerName: 'gpunet-test',
    metadata: {},
    graph: {
      name: 'test',
      nodes,
      initializers: new Map(inits.map((t) => [t.name, t])),
      inputs: [{ name: input.name, elemType: DataType.FLOAT, shape: input.shape }],
      outputs: [{ name: output, elemType: DataType.FLOAT, shape: outputShape }],
    },
  };
}

/** A small network touching every weight kind and the pad-step paths: Conv with asymmetric pads and
 *  groups, BatchNormalization, LeakyRelu, SAME_UPPER max pooling (asymmetric), a Clip branch joined
 *  by Concat, global average pooling, Flatten, Gemm (transB) and Softmax. */
function smallGraph(rng: Rng): OnnxModel {
  const C = 6;
  const shape = (name: string, dims: number[]): OnnxTensor => ({ name, dims: [dims.length], dataType: DataType.INT64, data: BigInt64Array.from(dims, BigInt) });
  const inits = [
    floatTensor('conv.weight', [C, 1, 3, 3], rng),
    floatTensor('conv.bias', [C], rng),
    floatTensor('bn.weight', [C], rng),
    floatTensor('bn.bias', [C], rng),
    floatTensor('bn.running_mean', [C], rng, 0.1),
    { ...floatTensor('bn.running_var', [C], rng), data: Float32Array.from({ length: C }, () => rng.uniform(0.5, 1.5)) },
    floatTensor('fc.weight', [5, 2 * C], rng),
    floatTensor('fc.bias', [5], rng),
    shape('flat.shape', [0, -1]),
  ];
  const nodes = [
    node('Conv', ['x', 'conv.weight', 'conv.bias'], ['c'], { kernel_shape: [3, 3], pads: [1, 0, 2, 1], strides: [2, 1], group: 3 }),
    node('BatchNormalization', ['c', 'bn.weight', 'bn.bias', 'bn.running_mean', 'bn.running_var'], ['b'], { epsilon: 1e-3 }),
    node('LeakyRelu', ['b'], ['r'], { alpha: 0.2 }),
    node('MaxPool', ['r'], ['p'], { kernel_shape: [2, 2], auto_pad: 'SAME_UPPER' }),
    node('Constant', [], ['lo'], { value: { name: 'lo', dims: [], dataType: DataType.FLOAT, data: Float32Array.of(-0.1) } }),
    node('Clip', ['p', 'lo', ''], ['q']),
    node('Concat', ['p', 'q'], ['cat'], { axis: 1 }),
    node('GlobalAveragePool', ['cat'], ['g']),
    node('Reshape', ['g', 'flat.shape'], ['f']),
    node('Gemm', ['f', 'fc.weight', 'fc.bias'], ['logits'], { transB: 1 }),
    node('Softmax', ['logits'], ['probs'], { axis: -1 }),
  ];
  return model(nodes, inits, { name: 'x', shape: [2, 3, 9, 7] }, 'probs', 13, [2, 5]);
}

async function ortRun(m: OnnxModel, feeds: Record<string, { data: Float32Array; dims: number[] }>): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(encodeOnnx(m));
  const inputs = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, new ort.Tensor('float32', v.data, v.dims)]));
  const out = await session.run(inputs);
  await session.release();
  return out[session.outputNames[0]].data as Float32Array;
}

describe('GraphModule on an in-memory graph', () => {
  it('matches onnxruntime, names its weights after the initializers and trains', async () => {
    const rng = new Rng(5);
    const m = smallGraph(rng);
    const x = floatTensor('x', [2, 3, 9, 7], rng).data as Float32Array;
    const expected = await ortRun(m, { x: { data: x, dims: [2, 3, 9, 7] } });
    const net = new GraphModule(m, { source: 'small.onnx' });
    try {
      expect(net.namedParameters().map(([n]) => n).sort()).toEqual(['bn.bias', 'bn.weight', 'conv.bias', 'conv.weight', 'fc.bias', 'fc.weight']);
      expect(net.namedBuffers().map(([n]) => n).sort()).toEqual(['bn.running_mean', 'bn.running_var']);
      expect(net.training).toBe(false);
      const got = await noGrad(() => tidy(() => net.forward(Tensor.from(x, [2, 3, 9, 7])).toArray()));
      expect(relError(got, expected)).toBeLessThan(1e-5);

      // gradients reach every parameter through concat, clip, the pad steps and the rest
      await tidy(async () => {
        const y = net.forward(Tensor.from(x, [2, 3, 9, 7]));
        const w = Tensor.from(Float32Array.from({ length: y.size }, (_, i) => (i % 3) - 1), y.shape);
        const { mul } = await import('../src/ops/elementwise.ts');
        const { sum } = await import('../src/ops/reduce.ts');
        sum(mul(y, w)).backward();
        for (const [name, p] of net.namedParameters()) {
          expect(p.grad, name).not.toBeNull();
          const g = await p.grad!.toArray();
          expect(g.some((v) => v !== 0), name).toBe(true);
          expect(g.every(Number.isFinite), name).toBe(true);
          p.grad!.release();
          p.grad = null;
        }
      });

      // exportGraph writes the current weights back: onnxruntime reproduces the result
      const exported = { ...m, graph: await net.exportGraph() };
      expect(relError(await ortRun(exported, { x: { data: x, dims: [2, 3, 9, 7] } }), expected)).toBeLessThan(1e-5);
    } finally {
      net.release();
    }
  });

  it('frees every intermediate as soon as its last consumer ran when nothing is recorded', async () => {
    const net = new GraphModule(smallGraph(new Rng(6)));
    try {
      await noGrad(() =>
        tidy(async () => {
          const x = Tensor.from(floatTensor('x', [2, 3, 9, 7], new Rng(1)).data as Float32Array, [2, 3, 9, 7]);
          await getGpu().sync();
          const before = getGpu().pool.stats().liveBuffers;
          const y = net.forward(x);
          // the output is the only new buffer
          expect(getGpu().pool.stats().liveBuffers - before).toBe(1);
          expect(y.shape).toEqual([2, 5]);
        }),
      );
    } finally {
      net.release();
    }
  });
});

describe('Pad and training-mode BatchNormalization (torchvision densenet/inception exports)', () => {
  /** GraphModule's eval-mode output for x, released afterwards */
  async function graphRun(m: OnnxModel, x: Float32Array, dims: number[]): Promise<Float32Array> {
    const net = new GraphModule(m, { source: 'g.onnx' });
    try {
      return await noGrad(() => tidy(() => net.forward(Tensor.from(x, dims)).toArray()));
    } finally {
      net.release();
    }
  }

  it('constant Pad (pads from input 1 at opset 13, from the attribute at opset 10) matches onnxruntime', async () => {
    const rng = new Rng(81);
    const dims = [2, 3, 5, 4];
    const x = floatTensor('x', dims, rng).data as Float32Array;
    // one more channel, 1 row above and 2 below, 2 columns left and 1 right, then 3x3 average pooling
    const pads = [0, 1, 1, 2, 0, 0, 2, 1];
    const pool = node('AveragePool', ['p'], ['y'], { kernel_shape: [3, 3], strides: [2, 2] });
    const outShape = [2, 4, 3, 3];
    const opset13 = model(
      [node('Pad', ['x', 'pads', 'value'], ['p']), pool],
      [{ name: 'pads', dims: [8], dataType: DataType.INT64, data: BigInt64Array.from(pads, BigInt) }, { name: 'value', dims: [], dataType: DataType.FLOAT, data: Float32Array.of(0.5) }],
      { name: 'x', shape: dims }, 'y', 13, outShape,
    );
    const opset10 = model([node('Pad', ['x'], ['p'], { mode: 'constant', pads, value: -0.25 }), pool], [], { name: 'x', shape: dims }, 'y', 10, outShape);
    for (const [name, m] of [['opset 13', opset13], ['opset 10', opset10]] as const) {
      const expected = await ortRun(m, { x: { data: x, dims } });
      expect(relError(await graphRun(m, x, dims), expected), name).toBeLessThan(1e-5);
    }
    const wrap = model([node('Pad', ['x'], ['y'], { mode: 'wrap', pads })], [], { name: 'x', shape: dims }, 'y', 10);
    expect(() => checkSupported(wrap, 'r.onnx')).toThrow("r.onnx: unsupported ONNX op 'Pad' with mode 'wrap' (node 'y', opset 10)");
  });

  it('BatchNormalization with running statistics outputs runs in eval mode, ignoring them unless they are read', async () => {
    const rng = new Rng(82);
    const dims = [2, 3, 4, 5];
    const x = floatTensor('x', dims, rng).data as Float32Array;
    const inits = [
      floatTensor('bn.weight', [3], rng),
      floatTensor('bn.bias', [3], rng),
      floatTensor('bn.running_mean', [3], rng, 0.5),
      { ...floatTensor('bn.running_var', [3], rng), data: Float32Array.of(0.5, 1.5, 2) },
    ];
    const bn = (outputs: string[], attrs: OnnxNode['attrs'] = {}) => node('BatchNormalization', ['x', ...inits.map((t) => t.name)], outputs, attrs);
    const relu = node('Relu', ['b'], ['y']);
    // onnxruntime's inference build refuses training mode: it runs the plain eval-mode node
    const expected = await ortRun(model([bn(['b']), relu], inits, { name: 'x', shape: dims }, 'y', 13, dims), { x: { data: x, dims } });
    // torch 1.13 exports (opset 13: BatchNormalization-9's outputs) and opset 15 ones (training_mode)
    const trainingExports = [
      model([bn(['b', 'b.mean', 'b.var']), relu], inits, { name: 'x', shape: dims }, 'y', 13, dims),
      model([bn(['b', 'b.mean', 'b.var'], { training_mode: 1 }), relu], inits, { name: 'x', shape: dims }, 'y', 15, dims),
    ];
    for (const m of trainingExports) expect(relError(await graphRun(m, x, dims), expected), `opset ${m.opset}`).toBeLessThan(1e-5);

    const read = model([bn(['b', 'b.mean', 'b.var']), node('Relu', ['b.mean'], ['y'])], inits, { name: 'x', shape: dims }, 'y');
    expect(() => checkSupported(read, 'bn.onnx')).toThrow("bn.onnx: unsupported ONNX op 'BatchNormalization' with the running statistics outputs (training_mode) in use");
  });
});

describe('unsupported ops are refused before anything runs', () => {
  it("names the op, the node and the opset in one line", () => {
    const m = model([node('Relu', ['x'], ['r']), node('Foo', ['r'], ['y'], {}, 'foo_1')], [], { name: 'x', shape: [1, 4] }, 'y', 13);
    const expectedLine = `net.onnx: unsupported ONNX op 'Foo' (node 'foo_1', opset 13); supported: ${supportedOpsText()}`;
    expect(() => checkSupported(m, 'net.onnx')).toThrow(OnnxError);
    expect(() => checkSupported(m, 'net.onnx')).toThrow(expectedLine);
    const live = getGpu().pool.stats().liveBuffers;
    let message = '';
    try {
      new GraphModule(m, { source: 'net.onnx' });
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toBe(expectedLine);
    expect(message).not.toContain('\n');
    expect(getGpu().pool.stats().liveBuffers).toBe(live); // nothing was uploaded
  });

  it('refuses unsupported features of supported ops and other domains', () => {
    const indices = model([node('MaxPool', ['x'], ['y', 'i'], { kernel_shape: [2, 2] }, '')], [], { name: 'x', shape: [1, 1, 4, 4] }, 'y', 12);
    expect(() => checkSupported(indices, 'p.onnx')).toThrow("p.onnx: unsupported ONNX op 'MaxPool' with the Indices output (node '#0', opset 12)");
    const ms = model([{ ...node('Relu', ['x'], ['y']), domain: 'com.microsoft' }], [], { name: 'x', shape: [1] }, 'y');
    expect(() => checkSupported(ms, 'm.onnx')).toThrow(/^m\.onnx: unsupported ONNX op 'com\.microsoft\.Relu' \(node 'y', opset 13\)/);
  });

  it('reports a shape the graph cannot run in one line naming the node, the op and the opset, before anything runs', () => {
    // a 3-D convolution
    const m = model([node('Conv', ['x', 'w'], ['y'], {}, 'conv3d')], [floatTensor('w', [2, 1, 1, 1, 1], new Rng(1))], { name: 'x', shape: [1, 1, 2, 3, 3] }, 'y');
    const line = "c3.onnx: node 'conv3d' (Conv, opset 13): only 1-D and 2-D Conv are supported, got x[1,1,2,3,3]";
    // planned at load for a given input shape, or at the first run with a new one
    expect(() => new GraphModule(m, { source: 'c3.onnx', inputShapes: { x: [1, 1, 2, 3, 3] } })).toThrow(line);
    const net = new GraphModule(m, { source: 'c3.onnx' });
    try {
      tidy(() => {
        const x = Tensor.zeros([1, 1, 2, 3, 3]);
        const dispatches = getGpu().dispatchCount;
        expect(() => net.forward(x)).toThrow(OnnxError);
        expect(() => net.forward(x)).toThrow(line);
        expect(getGpu().dispatchCount).toBe(dispatches); // nothing ran
      });
    } finally {
      net.release();
    }
  });
});

/** RGB in [0, 1], resized to 224x224 ignoring the aspect ratio, as planes [3, 224, 224]. */
async function loadImage(file: string): Promise<Float32Array> {
  const { data, info } = await sharp(file).toColourspace('srgb').removeAlpha().resize(224, 224, { fit: 'fill' }).raw().toBuffer({ resolveWithObject: true });
  expect(info.channels).toBe(3);
  const out = new Float32Array(3 * 224 * 224);
  for (let i = 0; i < 224 * 224; i++) for (let c = 0; c < 3; c++) out[c * 224 * 224 + i] = data[i * 3 + c] / 255;
  return out;
}

function topK(logits: Float32Array, k: number): number[] {
  return Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]).slice(0, k);
}

describe('hostile or broken classifier files give one line naming the file, before anything is uploaded', () => {
  /** a valid little classifier: conv, global pool, flatten, gemm over [N,3,8,8] */
  function classifier(): OnnxModel {
    const rng = new Rng(7);
    const m = model(
      [node('Conv', ['x', 'w'], ['c'], { kernel_shape: [3, 3] }), node('GlobalAveragePool', ['c'], ['g']), node('Flatten', ['g'], ['f']), node('Gemm', ['f', 'fw', 'fb'], ['y'], { transB: 1 })],
      [floatTensor('w', [4, 3, 3, 3], rng), floatTensor('fw', [2, 4], rng), floatTensor('fb', [2], rng)],
      { name: 'x', shape: [1, 3, 8, 8] }, 'y', 13, [1, 2],
    );
    return m;
  }

  const cases: [string, (m: OnnxModel) => void, string][] = [
    ['no outputs', (m) => void (m.graph.outputs = []), 'the graph has no outputs'],
    ['a value produced twice', (m) => void m.graph.nodes.push(node('Relu', ['f'], ['g'], {}, 'again')), "node 'again' (Relu, opset 13) writes 'g', which an input, an initializer or another node provides already"],
    ['a missing initializer', (m) => void m.graph.initializers.delete('fw'), "node 'y' (Gemm, opset 13) reads 'fw', which no input, initializer or node provides (a missing initializer, or a cycle)"],
    ['a rank-3 input', (m) => void (m.graph.inputs[0].shape = [3, 8, 8]), "input 'x' has rank 3 ([3,8,8]): a classifier takes images [N, 3, H, W]"],
    ['a uint8 input', (m) => void (m.graph.inputs[0].elemType = DataType.UINT8), "input 'x' is uint8: a classifier takes float images [N, 3, H, W]"],
    ['a NaN weight', (m) => void ((m.graph.initializers.get('fw')!.data as Float32Array)[5] = NaN), "initializer 'fw' holds NaN at element 5: the file is corrupt or its weights diverged"],
    ['an infinite weight', (m) => void ((m.graph.initializers.get('w')!.data as Float32Array)[0] = -Infinity), "initializer 'w' holds -Infinity at element 0: the file is corrupt or its weights diverged"],
    ['an absurd input size', (m) => void Object.assign(m.metadata, { 'gpunet.input_size': '100000', 'gpunet.mean': '[0,0,0]', 'gpunet.std': '[1,1,1]' }), "metadata 'gpunet.input_size' is not an image side from 1 to 4096: 100000"],
    ['a zero std', (m) => void Object.assign(m.metadata, { 'gpunet.input_size': '8', 'gpunet.mean': '[0,0,0]', 'gpunet.std': '[1,0,1]' }), "metadata 'gpunet.std' is not a JSON array of 3 numbers in (0.000001, 1000]: [1,0,1]"],
    ['a non-finite mean', (m) => void Object.assign(m.metadata, { 'gpunet.input_size': '8', 'gpunet.mean': '[0,1e999,0]', 'gpunet.std': '[1,1,1]' }), "metadata 'gpunet.mean' is not a JSON array of 3 numbers in [-1000, 1000]: [0,1e999,0]"],
    ['a wrong class count', (m) => void (m.metadata['gpunet.classes'] = '["a","b","c"]'), "metadata 'gpunet.classes' names 3 classes, the network outputs 2"],
  ];

  it('loads the valid file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gpunet-hostile-'));
    try {
      saveOnnx(classifier(), join(dir, 'ok.onnx'));
      const c = await loadClassifier(join(dir, 'ok.onnx'));
      expect(c.classes).toEqual(['0', '1']);
      c.model.release();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  for (const [what, spoil, problem] of cases) {
    it(what, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'gpunet-hostile-'));
      try {
        const m = classifier();
        spoil(m);
        const file = join(dir, 'bad.onnx');
        saveOnnx(m, file);
        await getGpu().sync();
        const live = getGpu().pool.stats().liveBuffers;
        await expect(loadClassifier(file)).rejects.toThrow(OnnxError);
        await expect(loadClassifier(file)).rejects.toThrow(`${file}: ${problem}`);
        expect(getGpu().pool.stats().liveBuffers).toBe(live);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

describe('Darknet-tiny (a real ImageNet classifier exported by PyTorch) through the generic graph path', () => {
  it('keeps its Winograd-transformed weights from one inference to the next, with the same logits', async () => {
    const m = readOnnx(DARKNET);
    const winogradConvs = m.graph.nodes.filter((n) => n.opType === 'Conv' && `${n.attrs.kernel_shape}` === '3,3' && `${n.attrs.strides}` === '1,1').length;
    expect(winogradConvs).toBe(8);
    const net = new GraphModule(m, { source: DARKNET });
    const x = Tensor.randn([1, 3, 64, 64], new Rng(8));
    setConv2dWinograd(2); // every 3x3 stride-1 conv, whatever its size
    try {
      const run = async () => {
        const before = getGpu().dispatchCount;
        const logits = await noGrad(() => tidy(() => net.forward(x).toArray()));
        return { dispatches: getGpu().dispatchCount - before, logits };
      };
      const first = await run();
      const second = await run();
      setConv2dWinogradCache(false);
      const transformed = await run();
      // each kept weight spares its transform and the NaN fill of its output (tests poison)
      expect(first.dispatches - second.dispatches).toBe(2 * winogradConvs);
      expect(transformed.dispatches).toBe(first.dispatches);
      expect(second.logits).toEqual(first.logits);
      expect(transformed.logits).toEqual(first.logits);
    } finally {
      setConv2dWinograd('auto');
      setConv2dWinogradCache(true);
      x.release();
      net.release();
    }
  });

  it('agrees with onnxruntime on the check photos and calls the samoyed a Samoyed', async () => {
    const classes = readFileSync(join(IMAGENET, 'classes.txt'), 'utf8').trim().split('\n');
    // labels.tsv also lists the samoyed photo under another name: only the files present count
    const labels = readFileSync(join(IMAGENET, 'check20', 'labels.tsv'), 'utf8').trim().split('\n').map((l) => l.split('\t'))
      .filter(([f]) => existsSync(join(IMAGENET, 'check20', f)));
    const files = [...labels.map(([f]) => join(IMAGENET, 'check20', f)), join(IMAGENET, 'samoyed.jpg')];
    expect(files.length).toBe(21);
    const images = await Promise.all(files.map(loadImage));
    const m = readOnnx(DARKNET);
    const net = new GraphModule(m, { source: DARKNET });
    const session = await ort.InferenceSession.create(DARKNET);
    const B = 7; // 3 batches
    let top1Right = 0;
    try {
      for (let start = 0; start < files.length; start += B) {
        const batch = images.slice(start, start + B);
        const input = new Float32Array(batch.length * 3 * 224 * 224);
        batch.forEach((img, i) => input.set(img, i * img.length));
        const dims = [batch.length, 3, 224, 224];
        const ref = (await session.run({ input: new ort.Tensor('float32', input, dims) })).logits.data as Float32Array;
        const got = await noGrad(() => tidy(() => net.forward(Tensor.from(input, dims)).toArray()));
        expect(got.length).toBe(batch.length * 1000);
        for (let i = 0; i < batch.length; i++) {
          const file = files[start + i];
          const [g, r] = [got.subarray(i * 1000, (i + 1) * 1000), ref.subarray(i * 1000, (i + 1) * 1000)];
          expect(relError(g, r), file).toBeLessThan(1e-4);
          expect(topK(g, 5), file).toEqual(topK(r, 5));
          const label = labels[start + i]?.[1];
          if (label !== undefined && topK(g, 1)[0] === Number(label)) top1Right++;
          if (file.endsWith('samoyed.jpg')) {
            expect(topK(g, 1)[0]).toBe(258);
            expect(classes[258]).toBe('Samoyed');
          }
        }
      }
      // onnxruntime's top-1 on these 20 photos, which identical top-5 lists reproduce: a sanity bound
      expect(top1Right).toBeGreaterThanOrEqual(10);
    } finally {
      await session.release();
      net.release();
    }
  });
});
