// fit() on generated textures with the small CNN: the fastai fine-tune phases (a frozen phase
// trains only the head and batchnorm), weight decay groups, the history files and checkpoints,
// the NaN stops, epochs without a decodable image, and the cached-feature path of a backbone frozen for the whole run.
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Batch } from '../src/data/dataset.ts';
import { syntheticImages } from '../src/data/synthetic.ts';
import { smallCnn } from '../src/nn/smallcnn.ts';
import { noGrad, Rng, Tensor } from '../src/tensor/index.ts';
import { loadTrainingState, readWeights, RunError } from '../src/train/checkpoint.ts';
import { type FitOptions, fit, memoryData, paramGroups, STATE_FILE, type TrainData } from '../src/train/trainer.ts';
import * as ort from 'onnxruntime-node';
import { GraphModule } from '../src/onnx/graph.ts';
import { encodeOnnx } from '../src/onnx/write.ts';
import type { TransferModel } from '../src/onnx/transfer.ts';
import { DataType, type OnnxModel } from '../src/onnx/ir.ts';
import { lrFind, suggestLrs } from '../src/train/lr-find.ts';
import { relError, useGpu } from './helpers.ts';

useGpu();

const SIZE = 12;
const tmp = () => mkdtempSync(join(tmpdir(), 'gpunet-trainer-'));

function setup(seed = 3) {
  const rng = new Rng(seed);
  const train = syntheticImages(128, SIZE, rng);
  const valid = syntheticImages(64, SIZE, rng);
  const model = smallCnn(4, { rng });
  return { split: model.split(), data: memoryData(train, valid, 16) };
}

const BASE: FitOptions = {
  epochs: 3, freezeEpochs: 1, lr: 0.05, lrMult: 0.1, schedule: 'onecycle', momentum: 0.9, weightDecay: 1e-4,
  labelSmoothing: 0, seed: 42, log: () => {},
};

const differs = (a: Float32Array, b: Float32Array) => a.some((v, i) => v !== b[i]);

describe('fit: fine-tune phases', () => {
  it('the frozen phase changes only the head, batchnorm affine params and running stats; then all train; files are written', async () => {
    const { split, data } = setup();
    const out = tmp();
    const initial = await readWeights(split.model);
    const snapshots: Map<string, Float32Array>[] = [];
    const exported: string[] = [];
    const res = await fit(split, data, {
      ...BASE,
      out,
      exportModel: async (path) => {
        exported.push(path.slice(out.length + 1));
        if (path.endsWith('last.onnx')) snapshots.push(await readWeights(split.model));
        writeFileSync(path, `epoch ${snapshots.length}`);
      },
    });
    expect(res.status).toBe('done');
    expect(res.history.map((r) => r.phase)).toEqual(['frozen', 'unfrozen', 'unfrozen']);
    const [afterFrozen] = snapshots;
    // smallCnn: 0 conv, 1 bn, 4 conv, 5 bn, 9 linear (head)
    for (const n of ['0.weight', '4.weight']) expect(differs(afterFrozen.get(n)!, initial.get(n)!), n).toBe(false);
    for (const n of ['1.weight', '1.bias', '1.running_mean', '1.running_var', '5.weight', '5.bias', '9.weight', '9.bias']) {
      expect(differs(afterFrozen.get(n)!, initial.get(n)!), n).toBe(true);
    }
    const final = snapshots[2];
    for (const n of ['0.weight', '4.weight']) expect(differs(final.get(n)!, afterFrozen.get(n)!), n).toBe(true);
    // learns the textures (chance is 25%)
    expect(res.history[2].accuracy).toBeGreaterThan(0.6);
    expect(res.history[2].trainLoss).toBeLessThan(res.history[0].trainLoss);
    // checkpoints: last every epoch, best when accuracy improved (the first epoch always)
    expect(exported.filter((p) => p === 'last.onnx')).toHaveLength(3);
    expect(exported[1]).toBe('best.onnx');
    expect(existsSync(join(out, 'best.onnx'))).toBe(true);
    // history files
    const csv = readFileSync(join(out, 'history.csv'), 'utf8').trim().split('\n');
    expect(csv[0]).toBe('epoch,phase,trainLoss,validLoss,accuracy,macroF1,lr,seconds');
    expect(csv).toHaveLength(4);
    const json = JSON.parse(readFileSync(join(out, 'history.json'), 'utf8'));
    expect(json).toHaveLength(3);
    expect(json[2].accuracy).toBeCloseTo(res.history[2].accuracy, 12);
    expect(readFileSync(join(out, 'history.png')).subarray(1, 4).toString()).toBe('PNG');
    const state = loadTrainingState(join(out, STATE_FILE));
    expect(state.epoch).toBe(3);
    expect(state.stepInEpoch).toBe(0);
    expect(state.optimizer.buffers.momentum.filter(Boolean).length).toBe(split.model.parameters().length);
    split.model.release();
  });

  it('weight decay goes to conv and linear weights only; rates spread from stem to head', () => {
    const { split } = setup();
    const { groups, baseLrs } = paramGroups(split, 0.01, 0.01, 1e-4);
    const names = new Map(split.model.namedParameters().map(([n, t]) => [t, n]));
    const decayed = groups.filter((g) => g.weightDecay! > 0).flatMap((g) => g.params.map((t) => names.get(t)));
    const free = groups.filter((g) => g.weightDecay === 0).flatMap((g) => g.params.map((t) => names.get(t)));
    expect(decayed.sort()).toEqual(['0.weight', '4.weight', '9.weight']);
    expect(free.sort()).toEqual(['1.bias', '1.weight', '5.bias', '5.weight', '9.bias']);
    expect(baseLrs[0]).toBeCloseTo(1e-4, 15);
    expect(baseLrs[baseLrs.length - 1]).toBe(0.01);
    split.model.release();
  });
});

/** `data` whose head weights become NaN just before step `step` (0-based; the epoch's step count:
 *  after its last step) of epoch `epoch`. */
function poisonHead(split: ReturnType<typeof setup>['split'], data: TrainData, epoch: number, step: number): TrainData {
  const head = split.model.namedParameters().find(([n]) => n === '9.weight')![1];
  const poison = (e: number, s: number) => e === epoch && s === step && head.set(new Float32Array(head.size).fill(NaN));
  return {
    ...data,
    async *train(e, seed, from) {
      const all = data.train(e, seed, from) as Batch[];
      for (const [i, b] of all.entries()) {
        poison(e, from + i);
        yield b;
      }
      poison(e, from + all.length);
    },
  };
}

describe('fit: stops', () => {
  it('a NaN loss stops with the step and rate named and keeps the last good checkpoint', async () => {
    const { split, data } = setup();
    const out = tmp();
    // the weights blow up just before epoch 2's fourth step (a NaN image would not do: relu maps NaN to 0)
    const poisoned = poisonHead(split, data, 1, 3);
    let epochsSaved = 0;
    const res = await fit(split, poisoned, {
      ...BASE, schedule: 'constant', lr: 0.02, out,
      exportModel: async (path) => writeFileSync(path, `saved at epoch ${path.endsWith('last.onnx') ? ++epochsSaved : epochsSaved}`),
    });
    expect(res.status).toBe('nonfinite');
    expect(res.message).toMatch(/the loss became NaN at step 12 \(epoch 2, step 4\/8\) with lr 2\.00e-2/);
    expect(loadTrainingState(join(out, STATE_FILE)).epoch).toBe(1);
    expect(readFileSync(join(out, 'last.onnx'), 'utf8')).toBe('saved at epoch 1');
    expect(JSON.parse(readFileSync(join(out, 'history.json'), 'utf8'))).toHaveLength(1);
    split.model.release();
  });

  it("weights that become NaN in the first epoch's last update stop the run before anything is saved", async () => {
    const { split, data } = setup();
    const out = tmp();
    const poisoned = poisonHead(split, data, 0, 8); // after the last of 8 steps: every loss was finite
    const res = await fit(split, poisoned, { ...BASE, out, exportModel: async (path) => writeFileSync(path, 'a checkpoint') });
    expect(res.status).toBe('nonfinite');
    expect(res.message).toMatch(/^the weights became non-finite in epoch 1 \(its last loss \d\.\d+ with lr \d\.\d+e-\d\): stopped; nothing was saved$/);
    expect(readdirSync(out)).toEqual([]);
    split.model.release();
  });

  it('an epoch in which no image could be decoded is an error, not a NaN loss and a checkpoint', async () => {
    const { split, data } = setup();
    const out = tmp();
    await expect(fit(split, { ...data, train: () => [] }, { ...BASE, out })).rejects.toThrow(
      new RunError('epoch 1: none of the 128 training images could be decoded (each is listed above): fix or remove them; nothing was saved'),
    );
    await expect(fit(split, { ...data, valid: () => [] }, { ...BASE, out })).rejects.toThrow(/^epoch 1: none of the 64 validation images could be decoded/);
    expect(readdirSync(out)).toEqual([]);
    split.model.release();
  });
});

describe('fit: backbone frozen for the whole run', () => {
  it('computes the backbone once, leaves it (batchnorm statistics too) unchanged and trains the head', async () => {
    const { split, data } = setup(5);
    const initial = await readWeights(split.model);
    let backboneCalls = 0;
    const features = split.features;
    split.features = (x) => {
      backboneCalls++;
      return features(x);
    };
    const res = await fit(split, data, { ...BASE, epochs: 3, freezeEpochs: 3, lr: 0.1 });
    expect(res.history.map((r) => r.phase)).toEqual(['head', 'head', 'head']);
    expect(backboneCalls).toBe(8 + 4); // one pass over 128 train + 64 valid images in batches of 16
    const final = await readWeights(split.model);
    for (const [n, a] of initial) expect(differs(final.get(n)!, a), n).toBe(n.startsWith('9.'));
    expect(res.history[2].trainLoss).toBeLessThan(res.history[0].trainLoss);
    split.model.release();
  });
});

describe('lr-find', () => {
  it('an exponential rate sweep: the curve stops once the loss blows up; suggestions lie on it', async () => {
    const { split, data } = setup(6);
    const res = await lrFind(split, data, { phase: 'unfrozen', steps: 60, startLr: 1e-4, endLr: 1e3, momentum: 0.9, weightDecay: 0, seed: 1 });
    expect(res.lrs.length).toBeGreaterThan(10);
    expect(res.lrs.length).toBeLessThan(60); // a rate of 1e3 diverges
    for (let i = 1; i < res.lrs.length; i++) expect(res.lrs[i]).toBeGreaterThan(res.lrs[i - 1]);
    expect(res.losses.every(Number.isFinite)).toBe(true);
    expect(res.lrs).toContain(res.valley);
    expect(res.lrs).toContain(res.steep);
    split.model.release();
  });

  it("fastai's suggestions on a known curve", () => {
    const lrs = Array.from({ length: 40 }, (_, i) => 1e-5 * 10 ** (i / 8));
    // flat, then falling from i = 10 to 30, then rising
    const losses = lrs.map((_, i) => (i < 10 ? 2 : i <= 30 ? 2 - (i - 10) * 0.09 : 0.2 + (i - 30) * 0.5));
    const { valley, steep } = suggestLrs(lrs, losses);
    expect(lrs.indexOf(valley)).toBeGreaterThan(10);
    expect(lrs.indexOf(valley)).toBeLessThan(30);
    expect(lrs.indexOf(steep)).toBeGreaterThanOrEqual(9);
    expect(lrs.indexOf(steep)).toBeLessThan(30);
  });
});

describe('transfer from any ONNX classifier', () => {
  /** conv 3x3 - relu - conv 1x1 (the 5-class top) - global pool - flatten: darknet's shape, declared at 16 px */
  function tinyGraph(rng: Rng): OnnxModel {
    const t = (name: string, dims: number[]) => ({ name, dims, dataType: DataType.FLOAT, data: Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => rng.uniform(-0.5, 0.5)) });
    const node = (opType: string, inputs: string[], output: string, attrs = {}) => ({ name: output, opType, domain: '', inputs, outputs: [output], attrs });
    return {
      irVersion: 7, opset: 13, producerName: 'test', metadata: {},
      graph: {
        name: 'tiny',
        nodes: [node('Conv', ['x', 'w1', 'b1'], 'c1', { pads: [1, 1, 1, 1] }), node('Relu', ['c1'], 'r1'), node('Conv', ['r1', 'w2', 'b2'], 'c2'), node('GlobalAveragePool', ['c2'], 'p'), node('Flatten', ['p'], 'logits', { axis: 1 })],
        initializers: new Map([t('w1', [4, 3, 3, 3]), t('b1', [4]), t('w2', [5, 4, 1, 1]), t('b2', [5])].map((x) => [x.name, x])),
        inputs: [{ name: 'x', elemType: DataType.FLOAT, shape: ['batch', 3, 16, 16] }],
        outputs: [{ name: 'logits', elemType: DataType.FLOAT, shape: ['batch', 5] }],
      },
    };
  }

  it('cuts before the last weighted layer, adds a fresh n-class head, and exports one graph computing the same at the new size', async () => {
    const rng = new Rng(4);
    const model = new GraphModule(tinyGraph(rng), { source: 'tiny.onnx' }).withNewHead(2, { rng, size: 8 }) as TransferModel;
    const split = model.split();
    expect(model.namedParameters().map(([n]) => n)).toEqual(['backbone.w1', 'backbone.b1', 'head.weight', 'head.bias']);
    expect(split.groups.at(-1)).toEqual(['head.weight', 'head.bias']);
    expect(model.head.weight.shape).toEqual([2, 4]);
    const x = Tensor.from(Float32Array.from({ length: 2 * 3 * 8 * 8 }, () => rng.normal()), [2, 3, 8, 8]);
    const ours = await noGrad(() => model.forward(x).toArray());
    const file = await model.toOnnx({ size: 8, metadata: {} });
    // the exported graph declares the size it was fine-tuned at, so other runtimes take it there
    expect(file.graph.inputs[0].shape).toEqual(['batch', 3, 8, 8]);
    const session = await ort.InferenceSession.create(encodeOnnx(file));
    const theirs = (await session.run({ x: new ort.Tensor('float32', await x.toArray(), [2, 3, 8, 8]) })).logits.data as Float32Array;
    await session.release();
    expect(ours.length).toBe(4);
    expect(relError(theirs, ours)).toBeLessThan(1e-5);
    model.release();
  });

  it("splits a graph as it is: its backbone's features, then its own top on them", async () => {
    const rng = new Rng(5);
    const net = new GraphModule(tinyGraph(rng), { source: 'tiny.onnx' });
    const split = net.split();
    // the backbone's one conv keeps its weight and bias in one group (halves meet between nodes)
    expect(split.groups).toEqual([['w1', 'b1'], ['w2', 'b2']]);
    const x = Tensor.from(Float32Array.from({ length: 2 * 3 * 8 * 8 }, () => rng.normal()), [2, 3, 8, 8]);
    const whole = await noGrad(() => net.forward(x).toArray());
    const parts = await noGrad(() => {
      const f = split.features(x);
      expect(f.shape).toEqual([2, 4, 8, 8]); // the 1x1 conv's input
      return split.head.forward(f).toArray();
    });
    expect(relError(parts, whole)).toBeLessThan(1e-6);
    net.release();
  });
});
