// Test-time augmentation and interpretation: the TTA views (the plain preprocessing, its mirror,
// the corner crops), TTA's averaged probabilities, the top losses, and Grad-CAM through the
// engine's backward checked against its closed form for a global-pool-then-linear head: for
// y_c = w_c . mean_ij(A_ij) (+ b), dy_c/dA_k = w_ck / HW everywhere, so the map is relu(sum_k w_ck A_k)
// up to the scale that normalising removes (for Darknet-tiny, whose tail is a pool of the class
// maps, it is the class's own map).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cropResizeSize, loadImage, loadTtaViews, type Preprocessing } from '../src/data/image.ts';
import { ResNet } from '../src/nn/resnet.ts';
import { smallCnn } from '../src/nn/smallcnn.ts';
import type { Classifier } from '../src/onnx/classifier.ts';
import { loadClassifier } from '../src/onnx/load.ts';
import { noGrad, Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { classifyFiles, softmaxRow } from '../src/train/inference.ts';
import { gradCams, topLosses } from '../src/train/interpret.ts';
import { relError, useGpu } from './helpers.ts';

useGpu();

const SHARED = join(import.meta.dirname, '..', '..', 'shared');
let dir: string;
let photo: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gpunet-interpret-'));
  photo = join(dir, 'noise.png');
  const rng = new Rng(3);
  await sharp(Buffer.from(Uint8Array.from({ length: 37 * 29 * 3 }, () => rng.int(256))), { raw: { width: 37, height: 29, channels: 3 } }).png().toFile(photo);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const P: Preprocessing = { size: 16, mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3], resize: 'crop' };

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('test-time augmentation', () => {
  it('views: the preprocessing itself, its mirror, and the corners of the resized image', async () => {
    for (const resize of ['crop', 'fill'] as const) {
      const p = { ...P, resize };
      const views = await loadTtaViews(photo, p);
      expect(views).toHaveLength(6);
      expect(maxAbsDiff(views[0], await loadImage(photo, p))).toBe(0);
      const s = p.size;
      const mirrored = views[0].map((_, i) => views[0][i - (i % s) + s - 1 - (i % s)]);
      expect(maxAbsDiff(views[1], mirrored)).toBe(0);
      // the top-left and bottom-right corners, from sharp's own resize and extract
      const r = resize === 'crop' ? cropResizeSize(37, 29, s) : { width: Math.round(s / 0.875), height: Math.round(s / 0.875) };
      for (const [view, left, top] of [[views[2], 0, 0], [views[5], r.width - s, r.height - s]] as const) {
        const { data } = await sharp(photo).resize(r.width, r.height, { fit: 'fill', kernel: 'linear', fastShrinkOnLoad: false }).extract({ left, top, width: s, height: s }).raw().toBuffer({ resolveWithObject: true });
        const expected = Float32Array.from({ length: 3 * s * s }, (_, i) => {
          const c = Math.floor(i / (s * s));
          return (data[3 * (i % (s * s)) + c] / 255 - p.mean[c]) / p.std[c];
        });
        expect(maxAbsDiff(view, expected), `${resize} ${left},${top}`).toBeLessThan(1e-5);
      }
    }
  });

  it('the logits are the log of the views\' mean probabilities; the plain view\'s are kept', async () => {
    const c = { model: smallCnn(3, { rng: new Rng(1) }), classes: ['a', 'b', 'c'], preprocessing: P, source: 'in-process' };
    const { results } = await classifyFiles(c, [photo], P, 4, undefined, { tta: true });
    const views = await loadTtaViews(photo, P);
    const x = new Float32Array(6 * 3 * 256);
    views.forEach((v, i) => x.set(v, i * 768));
    const rows = await noGrad(() => tidy(() => c.model.forward(Tensor.from(x, [6, 3, 16, 16])).toArray()));
    const mean = [0, 1, 2].map((k) => [0, 1, 2, 3, 4, 5].reduce((s, i) => s + softmaxRow(rows.slice(3 * i, 3 * i + 3))[k], 0) / 6);
    expect(relError(results[0].logits, mean.map(Math.log))).toBeLessThan(1e-5);
    expect(relError(results[0].plain!, rows.slice(0, 3))).toBeLessThan(1e-5);
    c.model.release();
  });
});

describe('top losses', () => {
  it('the misclassified files, the most confident mistake first', () => {
    const logits = (a: number, b: number) => Float32Array.from([a, b]);
    const results = [
      { file: 'right', logits: logits(3, 0), label: 0 },
      { file: 'slightly wrong', logits: logits(0, 0.5), label: 0 },
      { file: 'very wrong', logits: logits(0, 4), label: 0 },
      { file: 'wrong', logits: logits(2, 0), label: 1 },
    ];
    const top = topLosses(results, 2);
    expect(top.map((t) => t.file)).toEqual(['very wrong', 'wrong']);
    expect(top[0].predicted).toBe(1);
    expect(top[0].probability).toBeCloseTo(1 / (1 + Math.exp(-4)), 6);
    expect(top[0].loss).toBeCloseTo(Math.log(1 + Math.exp(4)), 5);
    expect(topLosses(results, 10)).toHaveLength(3);
  });
});

describe('Grad-CAM', () => {
  it('ResNet18: the engine\'s backward gives relu(sum_k w_ck A_k) for the class asked', async () => {
    const model = new ResNet('resnet18', { numClasses: 5, rng: new Rng(2) });
    const c: Classifier = { model, classes: ['0', '1', '2', '3', '4'], preprocessing: { ...P, size: 96 }, source: 'in-process' };
    const x = Float32Array.from({ length: 3 * 96 * 96 }, (_, i) => Math.sin(i * 0.37) + ((i * 7919) % 13) / 13);
    const [cam] = await gradCams(c, [x], 96, [3]);
    expect([cam.h, cam.w, cam.classIndex, cam.layer]).toEqual([3, 3, 3, 'layer4']);
    const split = model.featureMaps();
    const a = await noGrad(() => tidy(() => split.body(Tensor.from(x, [1, 3, 96, 96])).toArray()));
    const w = await model.getChild('fc')!.namedParameters().find(([n]) => n === 'weight')![1].toArray();
    const expected = new Float32Array(9);
    for (let k = 0; k < 512; k++) for (let i = 0; i < 9; i++) expected[i] += w[3 * 512 + k] * a[k * 9 + i];
    const max = Math.max(...expected.map((v) => Math.max(0, v)));
    expect(max).toBeGreaterThan(0);
    expect(relError(cam.map, expected.map((v) => Math.max(0, v) / max))).toBeLessThan(1e-4);
    model.release();
  });

  it('an ONNX graph (Darknet-tiny, real weights): cut at its last GlobalAveragePool, the map is the class\'s own feature map', async () => {
    const c = await loadClassifier(join(SHARED, 'weights', 'darknet-tiny-imagenet.onnx'));
    const p: Preprocessing = { size: 224, mean: [0, 0, 0], std: [1, 1, 1], resize: 'fill' };
    const x = await loadImage(join(SHARED, 'data', 'imagenet', 'samoyed.jpg'), p);
    const [cam] = await gradCams(c, [x], 224);
    expect(cam.classIndex).toBe(258); // Samoyed, the top class
    const split = c.model.featureMaps();
    const a = await noGrad(() => tidy(() => split.body(Tensor.from(x, [1, 3, 224, 224])).toArray()));
    const plane = cam.h * cam.w;
    const own = a.slice(cam.classIndex * plane, (cam.classIndex + 1) * plane).map((v) => Math.max(0, v));
    const max = Math.max(...own);
    expect(relError(cam.map, own.map((v) => v / max))).toBeLessThan(1e-4);
    c.model.release();
  });
});
