// Checkpoints out and back in: a ResNet18 written by saveClassifier runs in onnxruntime-node (the
// reference runtime no one here wrote) with gpunet's logits, and loadClassifier gives back the
// same network, class names and preprocessing; a generic graph (Darknet-tiny) round-trips as well.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { BatchNorm2d } from '../src/nn/layers.ts';
import { ResNet, resnet18 } from '../src/nn/resnet.ts';
import { IMAGENET_NORMALIZATION } from '../src/data/image.ts';
import { META, type Classifier } from '../src/onnx/classifier.ts';
import { GraphModule } from '../src/onnx/graph.ts';
import { loadClassifier, saveClassifier } from '../src/onnx/load.ts';
import { readOnnx } from '../src/onnx/read.ts';
import { saveOnnx } from '../src/onnx/write.ts';
import { noGrad, Rng, Tensor } from '../src/tensor/index.ts';
import { randomArray, relError, useGpu } from './helpers.ts';

useGpu();

const dir = mkdtempSync(join(tmpdir(), 'gpunet-onnx-roundtrip-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const DARKNET = join(import.meta.dirname, '..', '..', 'shared', 'weights', 'darknet-tiny-imagenet.onnx');

async function gpunetLogits(c: Classifier, xs: Float32Array, shape: number[]): Promise<Float32Array> {
  const x = Tensor.from(xs, shape);
  const y = noGrad(() => c.model.forward(x));
  const out = await y.toArray();
  x.release();
  y.release();
  return out;
}

async function ortLogits(file: string, xs: Float32Array, shape: number[]): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(file);
  const out = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', xs, shape) });
  const logits = out[session.outputNames[0]].data as Float32Array;
  await session.release();
  return logits;
}

describe('saveClassifier / loadClassifier', () => {
  it('a ResNet18 checkpoint runs in onnxruntime with gpunet logits and loads back as the same classifier', async () => {
    const SIZE = 64;
    const classes = ['ants', 'bees', 'wasps', 'flies', 'moths'];
    const net = resnet18({ numClasses: classes.length, rng: new Rng(7) });
    // batchnorm state as training leaves it (a fresh one is the identity): random, so the export
    // of every BN parameter and running statistic is checked
    const rng = new Rng(8);
    for (const [, m] of net.namedModules()) {
      if (!(m instanceof BatchNorm2d)) continue;
      const C = m.channels;
      m.weight.set(Float32Array.from(randomArray([C], rng, 0.5, 1.5)));
      m.bias.set(Float32Array.from(randomArray([C], rng, -0.1, 0.1)));
      m.runningMean.set(Float32Array.from(randomArray([C], rng, -0.1, 0.1)));
      m.runningVar.set(Float32Array.from(randomArray([C], rng, 0.5, 2)));
    }
    net.eval();
    const preprocessing = { size: SIZE, ...IMAGENET_NORMALIZATION, resize: 'fill' as const };
    const c: Classifier = { model: net, classes, preprocessing, source: 'test' };
    const file = join(dir, 'resnet18.onnx');
    await saveClassifier(c, file);
    expect(readdirSync(dir)).toEqual(['resnet18.onnx']); // no temp file left behind

    const saved = readOnnx(file);
    expect(saved.opset).toBe(13);
    expect(new Set(saved.graph.nodes.map((n) => n.opType))).toEqual(new Set(['Conv', 'BatchNormalization', 'Relu', 'MaxPool', 'Add', 'GlobalAveragePool', 'Flatten', 'Gemm']));
    expect(saved.graph.inputs[0]).toMatchObject({ name: 'input', shape: ['batch', 3, SIZE, SIZE] });
    expect(saved.graph.outputs[0]).toMatchObject({ name: 'logits', shape: ['batch', classes.length] });

    const shape = [2, 3, SIZE, SIZE];
    const xs = Float32Array.from(randomArray(shape, new Rng(9), -2, 2));
    const ours = await gpunetLogits(c, xs, shape);
    expect(relError(ours, await ortLogits(file, xs, shape))).toBeLessThan(1e-4);

    const back = await loadClassifier(file, { expectClasses: classes.length });
    expect(back.model).toBeInstanceOf(ResNet);
    expect((back.model as ResNet).arch).toBe('resnet18');
    expect(back.classes).toEqual(classes);
    expect(back.preprocessing).toEqual(preprocessing);
    expect(back.source).toBe(file);
    expect(relError(await gpunetLogits(back, xs, shape), ours)).toBeLessThan(1e-6);
    back.model.release();

    // a checkpoint for another number of classes: one line naming the file
    const mismatch = loadClassifier(file, { expectClasses: 3 });
    await expect(mismatch).rejects.toThrow(`${file}: the checkpoint has 5 classes, 3 expected`);
    await expect(mismatch).rejects.toThrow(/^[^\n]*$/);
    // class names that do not fit the network
    const tampered = join(dir, 'tampered.onnx');
    saveOnnx({ ...saved, metadata: { ...saved.metadata, [META.classes]: '["ants","bees"]' } }, tampered);
    await expect(loadClassifier(tampered)).rejects.toThrow(`${tampered}: metadata '${META.classes}' names 2 classes, the network outputs 5`);
    net.release();
  });

  it('a generic graph (Darknet-tiny) loads as a GraphModule, saves with metadata and still matches onnxruntime', async () => {
    const foreign = await loadClassifier(DARKNET);
    expect(foreign.model).toBeInstanceOf(GraphModule);
    expect(foreign.classes).toHaveLength(1000);
    expect(foreign.classes[258]).toBe('258');
    expect(foreign.preprocessing).toBeNull(); // a foreign file says nothing: the caller must be told

    const preprocessing = { size: 224, mean: [0, 0, 0] as [number, number, number], std: [1, 1, 1] as [number, number, number], resize: 'fill' as const };
    const classes = Array.from({ length: 1000 }, (_, i) => `class ${i}`);
    const file = join(dir, 'darknet.onnx');
    await saveClassifier({ ...foreign, classes, preprocessing }, file);
    const back = await loadClassifier(file);
    expect(back.model).toBeInstanceOf(GraphModule);
    expect(back.classes).toEqual(classes);
    expect(back.preprocessing).toEqual(preprocessing);

    const shape = [1, 3, 224, 224]; // the file fixes the input size
    const xs = Float32Array.from(randomArray(shape, new Rng(10), 0, 1));
    const ours = await gpunetLogits(back, xs, shape);
    expect(relError(ours, await ortLogits(file, xs, shape))).toBeLessThan(1e-4);
    foreign.model.release();
    back.model.release();
  });
});
