// predict, eval, summary and import end to end: on a small in-process model (batched inference
// equals one forward per image, unreadable files skipped), on the real Darknet-tiny ImageNet
// classifier (samoyed.jpg -> Samoyed; eval on check20 agrees with onnxruntime-node on the same
// preprocessed tensors), and their one-line errors.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evalCommand } from '../src/cli/eval.ts';
import { importCommand } from '../src/cli/import.ts';
import { INFERENCE_OPTIONS, predictCommand, readCategoryNames, resolvePreprocessing } from '../src/cli/predict.ts';
import { parseOptions } from '../src/cli/options.ts';
import { classifyFiles } from '../src/train/inference.ts';
import { summaryCommand } from '../src/cli/summary.ts';
import { loadImage, type Preprocessing } from '../src/data/image.ts';
import { smallCnn } from '../src/nn/smallcnn.ts';
import { META } from '../src/onnx/classifier.ts';
import { readOnnx } from '../src/onnx/read.ts';
import { noGrad, Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { argmaxRows } from '../src/train/metrics.ts';
import { relError, runCommand, useGpu } from './helpers.ts';

useGpu();

const SHARED = join(import.meta.dirname, '..', '..', 'shared');
const DARKNET = join(SHARED, 'weights', 'darknet-tiny-imagenet.onnx');
const IMAGENET = join(SHARED, 'data', 'imagenet');
const CLASSES = join(IMAGENET, 'classes.txt');
const DARKNET_FLAGS = ['--means', '0,0,0', '--stds', '1,1,1', '--resize', 'fill', '--size', '224'];

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'gpunet-predict-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const run = runCommand;

async function noisyImage(file: string, w: number, h: number, seed: number): Promise<void> {
  const rng = new Rng(seed);
  const px = Buffer.from(Uint8Array.from({ length: w * h * 3 }, () => Math.floor(rng.uniform(0, 256))));
  await sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toFile(file);
}

describe('inference on an in-process model', () => {
  it('batched logits equal one forward per image; unreadable files are returned, not thrown', async () => {
    const files: string[] = [];
    for (let i = 0; i < 5; i++) {
      files.push(join(dir, `img${i}.png`));
      await noisyImage(files[i], 20 + 3 * i, 17 + i, i);
    }
    const broken = join(dir, 'broken.png');
    writeFileSync(broken, 'not a png');
    const p: Preprocessing = { size: 16, mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3], resize: 'crop' };
    const c = { model: smallCnn(3, { rng: new Rng(1) }), classes: ['a', 'b', 'c'], preprocessing: p, source: 'in-process' };
    const progress: number[] = [];
    const { results, failed } = await classifyFiles(c, [files[0], broken, ...files.slice(1)], p, 2, (d) => progress.push(d));
    expect(failed.map((e) => e.file)).toEqual([broken]);
    expect(results.map((r) => r.file)).toEqual(files);
    expect(progress).toEqual([2, 4, 6]);
    for (const r of results) {
      const x = await loadImage(r.file, p);
      const single = await noGrad(() => tidy(() => c.model.forward(Tensor.from(x, [1, 3, 16, 16])).toArray()));
      expect(relError(r.logits, single)).toBeLessThan(1e-5);
    }
    c.model.release();
  });

  it('preprocessing flags override the checkpoint, and a foreign file must be told all four', () => {
    const base: Preprocessing = { size: 224, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], resize: 'crop' };
    const flags = (...args: string[]) => parseOptions('predict', INFERENCE_OPTIONS, ['--checkpoint', 'm.onnx', ...args]).values;
    expect(resolvePreprocessing(flags('--size', '64', '--resize', 'fill'), base, 'm.onnx')).toEqual({ ...base, size: 64, resize: 'fill' });
    expect(() => resolvePreprocessing(flags('--means', '0,0,0'), null, 'foreign.onnx')).toThrow(
      /^foreign\.onnx does not record its preprocessing: pass --stds --size --resize \(e\.g\./,
    );
    expect(() => flags('--means', '0,0')).toThrow("--means needs 3 comma-separated numbers (R,G,B), got '0,0'");
    expect(() => flags('--means', '0,NaN,0')).toThrow("--means needs 3 comma-separated numbers (R,G,B), got '0,NaN,0'");
    expect(() => flags('--stds', '1,0,1')).toThrow("--stds needs 3 comma-separated numbers > 1e-6 (R,G,B), got '1,0,1'");
    expect(() => flags('--stds', '1,1e-7,1')).toThrow(/--stds needs 3 comma-separated numbers > 1e-6/);
    expect(() => flags('--stds', '1,Infinity,1')).toThrow(/--stds needs 3 comma-separated numbers > 1e-6/);
    expect(() => flags('--resize', 'squash')).toThrow("--resize must be one of crop, fill, got 'squash'");
  });

  it('category names: cat_to_name.json keyed by class name or index, a list, a text file', () => {
    const byName = join(dir, 'cat_to_name.json');
    writeFileSync(byName, JSON.stringify({ '10': 'globe thistle', '2': 'hard-leaved pocket orchid', '1': 'pink primrose' }));
    expect(readCategoryNames(byName, ['1', '10', '2'])).toEqual(['pink primrose', 'globe thistle', 'hard-leaved pocket orchid']);
    const byIndex = join(dir, 'by_index.json');
    writeFileSync(byIndex, JSON.stringify({ '0': 'ant', '1': 'bee' }));
    expect(readCategoryNames(byIndex, ['ants', 'bees'])).toEqual(['ant', 'bee']);
    const txt = join(dir, 'names.txt');
    writeFileSync(txt, 'ant\nbee\n');
    expect(readCategoryNames(txt, ['0', '1'])).toEqual(['ant', 'bee']);
    expect(() => readCategoryNames(txt, ['0', '1', '2'])).toThrow(`--category-names ${txt}: 2 names for a checkpoint of 3 classes`);
    const nested = join(dir, 'nested.json');
    writeFileSync(nested, JSON.stringify([{ name: 'ant' }, 'bee']));
    expect(() => readCategoryNames(nested, ['ants', 'bees'])).toThrow(`--category-names ${nested}: entry 0 is an object {"name":"ant"}, not a class name`);
  });
});

describe('summary', () => {
  it('ResNet18: every layer with its output shape, 11,689,512 parameters', async () => {
    const r = await run(summaryCommand, ['--arch', 'resnet18', '--size', '64']);
    expect(r.code).toBe(0);
    const text = r.out.join('\n');
    expect(text).toMatch(/^Model: "resnet18"/);
    expect(text).toMatch(/^conv1 \(Conv2d\)\s+\(None, 64, 32, 32\)\s+9,408$/m);
    expect(text).toMatch(/^layer2\.0\.downsample\.0 \(Conv2d\)\s+\(None, 128, 8, 8\)\s+8,192$/m);
    expect(text).toMatch(/^fc \(Linear\)\s+\(None, 1000\)\s+513,000$/m);
    expect(text).toMatch(/^Total params: 11,689,512$/m);
    expect(text).toMatch(/^Trainable params: 11,689,512$/m);
    expect(text).toMatch(/^Non-trainable params: 0$/m);
    // 62 layers with parameters or none: conv/bn/relu/pool/fc leaves
    const layerRows = r.out.filter((l) => /\(None, /.test(l));
    expect(layerRows.length).toBe(1 + 1 + 1 + 1 + 8 * 4 + 3 * 2 + 1 + 1 + 1);
  });

  it('a generic ONNX graph lists its nodes (Darknet-tiny: 1,039,912 parameters, as onnx counts its initializers)', async () => {
    const r = await run(summaryCommand, ['--model', DARKNET, '--size', '224']);
    expect(r.code).toBe(0);
    const text = r.out.join('\n');
    expect(text).toMatch(/^\/0\/Conv \(Conv\)\s+\(None, 16, 224, 224\)\s+448$/m);
    expect(text).toMatch(/\(GlobalAveragePool\)\s+\(None, 1000, 1, 1\)\s+0$/m);
    expect(r.out.filter((l) => /\(None, /.test(l)).at(-1)).toMatch(/\(Flatten\)\s+\(None, 1000\)\s+0$/);
    expect(text).toMatch(/^Total params: 1,039,912$/m);
  });
});

describe('Darknet-tiny (real ImageNet weights) through predict, eval and import', () => {
  it('predict: samoyed.jpg -> Samoyed top-1, as a table, JSON lines and a bar chart', async () => {
    const plot = join(dir, 'topk.png');
    const args = ['--input', join(IMAGENET, 'samoyed.jpg'), '--checkpoint', DARKNET, ...DARKNET_FLAGS, '--category-names', CLASSES];
    const table = await run(predictCommand, [...args, '--plot', plot]);
    expect(table.code).toBe(0);
    expect(table.out[0]).toMatch(/^file\s+rank\s+class\s+probability$/);
    expect(table.out[2]).toMatch(/samoyed\.jpg\s+1\s+Samoyed\s+\d+\.\d\d%$/);
    expect(table.out.length).toBe(2 + 5 + 1);
    expect(table.out[7]).toBe(`wrote ${plot}: the top 5 classes of ${join(IMAGENET, 'samoyed.jpg')}`);
    const meta = await sharp(plot).metadata();
    expect(meta.format).toBe('png');
    expect(meta.width).toBeGreaterThan(300);
    const json = await run(predictCommand, [...args, '--json', '--top-k', '3']);
    const line = JSON.parse(json.out[0]);
    expect(line.predictions.map((p: { class: string }) => p.class)[0]).toBe('Samoyed');
    expect(line.predictions[0].index).toBe(258);
    expect(line.predictions).toHaveLength(3);
    expect(line.predictions[0].probability).toBeGreaterThan(line.predictions[1].probability);
  });

  it('predict exits non-zero only when no image at all could be classified', async () => {
    const broken = join(dir, 'only-broken.jpg');
    writeFileSync(broken, 'garbage');
    const r = await run(predictCommand, ['--input', broken, '--checkpoint', DARKNET, ...DARKNET_FLAGS]);
    expect(r.code).toBe(1);
    expect(r.err).toEqual([
      expect.stringMatching(/^gpunet predict: skipped .*only-broken\.jpg: cannot decode as an image \(.+\)$/),
      'gpunet predict: no image could be classified (1 of 1 files unreadable)',
    ]);
  });

  it('a foreign ONNX file without preprocessing flags is a one-line error naming them', async () => {
    await expect(run(predictCommand, ['--input', join(IMAGENET, 'samoyed.jpg'), '--checkpoint', DARKNET])).rejects.toThrow(
      /darknet-tiny-imagenet\.onnx does not record its preprocessing: pass --means --stds --resize \(e\.g\. --means 0,0,0 --stds 1,1,1 --resize fill\)/,
    );
  });

  it('eval on check20 (labels.tsv) reports the accuracy onnxruntime gives on the same tensors', async () => {
    const report = join(dir, 'report.json');
    const cm = join(dir, 'cm.png');
    const tsv = join(IMAGENET, 'check20', 'labels.tsv');
    const r = await run(evalCommand, ['--labels', tsv, '--checkpoint', DARKNET, ...DARKNET_FLAGS, '--category-names', CLASSES, '--json', report, '--confusion', cm, '--batch-size', '10']);
    expect(r.code).toBe(0);
    const json = JSON.parse(readFileSync(report, 'utf8'));
    // labels.tsv also lists pytorch_hub_dog.jpg, which the folder does not hold: skipped, said once
    const rows = readFileSync(tsv, 'utf8').trim().split('\n').map((l) => l.split('\t')).filter(([file]) => existsSync(join(IMAGENET, 'check20', file)));
    expect(rows.length).toBe(20);
    expect(json.samples).toBe(20);
    expect(json.skipped).toEqual([join(IMAGENET, 'check20', 'pytorch_hub_dog.jpg')]);
    expect(r.err.filter((l) => l.startsWith('gpunet'))).toEqual([`gpunet eval: skipped ${join(IMAGENET, 'check20', 'pytorch_hub_dog.jpg')}: no such file`]);

    // onnxruntime on the very tensors gpunet's preprocessing makes
    const p: Preprocessing = { mean: [0, 0, 0], std: [1, 1, 1], size: 224, resize: 'fill' };
    const x = new Float32Array(20 * 3 * 224 * 224);
    for (const [i, [file]] of rows.entries()) x.set(await loadImage(join(IMAGENET, 'check20', file), p), i * 3 * 224 * 224);
    const session = await ort.InferenceSession.create(DARKNET);
    const out = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', x, [20, 3, 224, 224]) });
    const logits = out[session.outputNames[0]].data as Float32Array;
    const labels = rows.map((r) => Number(r[1]));
    const predicted = argmaxRows(logits, 1000);
    const ortAccuracy = predicted.filter((c, i) => c === labels[i]).length / 20;
    expect(json.predictions.map((q: { index: number }) => q.index)).toEqual(predicted);
    expect(json.accuracy).toBeCloseTo(ortAccuracy, 12);
    expect(r.out[0]).toContain(`accuracy: ${(100 * ortAccuracy).toFixed(2)}%`);
    expect(r.out[0]).toMatch(/top-5 accuracy: \d+\.\d\d%/);
    expect(json.topK['5']).toBeGreaterThanOrEqual(json.accuracy);
    expect(json.perClass.length).toBe(json.labels.length);
    expect(json.confusion.length).toBe(json.labels.length);
    expect((await sharp(cm).metadata()).format).toBe('png');
    session.release?.();
  });

  it('import records the preprocessing and class names; predict then needs no flags', async () => {
    const ckpt = join(dir, 'darknet-checkpoint.onnx');
    const r = await run(importCommand, ['--model', DARKNET, '--out', ckpt, ...DARKNET_FLAGS, '--classes', CLASSES]);
    expect(r.code).toBe(0);
    const meta = readOnnx(ckpt).metadata;
    expect(JSON.parse(meta[META.classes])[258]).toBe('Samoyed');
    expect(meta[META.resize]).toBe('fill');
    expect(JSON.parse(meta[META.mean])).toEqual([0, 0, 0]);
    const pr = await run(predictCommand, ['--input', join(IMAGENET, 'samoyed.jpg'), '--checkpoint', ckpt, '--top-k', '1']);
    expect(pr.out[2]).toMatch(/samoyed\.jpg\s+1\s+Samoyed\s/);
    // a names file of the wrong length is refused before anything is written
    const short = join(dir, 'short.txt');
    writeFileSync(short, 'a\nb\n');
    const bad = join(dir, 'bad.onnx');
    await expect(run(importCommand, ['--model', DARKNET, '--out', bad, ...DARKNET_FLAGS, '--classes', short])).rejects.toThrow(
      `--classes ${short}: 2 names for a model with 1000 outputs`,
    );
    expect(existsSync(bad)).toBe(false);
    // Keras' imagenet_class_index.json ({"0": ["n01440764", "tench"], ...}) gives the names; objects are refused, never "[object Object]"
    const names = readFileSync(CLASSES, 'utf8').split('\n').filter(Boolean);
    const keras = join(dir, 'imagenet_class_index.json');
    writeFileSync(keras, JSON.stringify(Object.fromEntries(names.map((n, i) => [String(i), [`n${i}`, n]]))));
    const fromKeras = join(dir, 'keras.onnx');
    expect((await run(importCommand, ['--model', DARKNET, '--out', fromKeras, ...DARKNET_FLAGS, '--classes', keras])).code).toBe(0);
    expect(JSON.parse(readOnnx(fromKeras).metadata[META.classes])[258]).toBe('Samoyed');
    const objects = join(dir, 'objects.json');
    writeFileSync(objects, JSON.stringify(Object.fromEntries(names.map((n, i) => [String(i), { name: n }]))));
    await expect(run(importCommand, ['--model', DARKNET, '--out', bad, ...DARKNET_FLAGS, '--classes', objects])).rejects.toThrow(
      `--classes ${objects}: entry '0' is an object {"name":"tench"}, not a class name`,
    );
    expect(existsSync(bad)).toBe(false);
  });

  it('eval with class folders: a folder that is not a class is a one-line error; unreadable images are skipped', async () => {
    const data = join(dir, 'folders');
    mkdirSync(join(data, 'Samoyed'), { recursive: true });
    mkdirSync(join(data, 'tench'), { recursive: true });
    writeFileSync(join(data, 'Samoyed', 'dog.jpg'), readFileSync(join(IMAGENET, 'samoyed.jpg')));
    writeFileSync(join(data, 'tench', 'fish.jpg'), readFileSync(join(IMAGENET, 'check20', 'n01440764_tench.JPEG')));
    writeFileSync(join(data, 'tench', 'broken.jpg'), 'garbage');
    const args = ['--data', data, '--checkpoint', DARKNET, ...DARKNET_FLAGS, '--category-names', CLASSES];
    const r = await run(evalCommand, args);
    expect(r.code).toBe(0);
    expect(r.err).toEqual([expect.stringMatching(/^gpunet eval: skipped .*broken\.jpg: cannot decode as an image/)]);
    expect(r.out[0]).toMatch(/^samples: 2 /);
    mkdirSync(join(data, 'cats'));
    await expect(run(evalCommand, args)).rejects.toThrow(/folder 'cats' is not one of the checkpoint's classes: tench, goldfish, great white shark, .*\(1000 classes\)$/);
    // --run names a training run's folder: one without split.json is refused before any work
    await expect(run(evalCommand, ['--run', data])).rejects.toThrow(`--run ${data}: no split.json in it (not a training run's folder, or one from before gpunet 0.2): score its images with --data and --checkpoint`);
  });
});
