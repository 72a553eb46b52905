// `gpunet train` as a user runs it: the real binary in a child process, on image folders generated
// here (one solid colour per class with per-pixel noise, odd sizes, written as PNG with sharp).
// Covers a run that learns its classes, what the run folder holds, predict/eval on its checkpoint,
// a real Ctrl-C (SIGINT) followed by --resume, the regex labeller, and one-line errors for bad folders.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTrainingState } from '../src/train/checkpoint.ts';
import type { EpochRecord } from '../src/train/history.ts';
import { gpunet, type Run } from './binary.ts';

const CLASSES: Record<string, [number, number, number]> = { red: [210, 50, 40], green: [50, 190, 70], blue: [40, 70, 210] };

/** A 32-48 px image of one colour with uniform noise of +-40 per channel, seeded. */
async function writeImage(path: string, rgb: [number, number, number], next: () => number): Promise<void> {
  const w = 32 + Math.floor(next() * 17);
  const h = 32 + Math.floor(next() * 17);
  const px = Buffer.alloc(w * h * 3);
  for (let i = 0; i < px.length; i++) px[i] = Math.max(0, Math.min(255, Math.round(rgb[i % 3] + (next() - 0.5) * 80)));
  mkdirSync(dirname(path), { recursive: true });
  await sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toFile(path);
}

/** `perClass` images of each class, `name(cls, i)` giving each one's path. */
async function writeClasses(perClass: number, seed: number, name: (cls: string, i: number) => string): Promise<void> {
  let s = seed >>> 0;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  for (const [cls, rgb] of Object.entries(CLASSES)) {
    for (let i = 0; i < perClass; i++) await writeImage(name(cls, i), rgb, next);
  }
}

/** The common flags of a small, fast run: ResNet18 from scratch at 32 px, no augmentation. */
const SMALL = ['--weights', 'none', '--arch', 'resnet18', '--size', '32', '--augment', 'none', '--lr', '0.01', '--workers', '1'];
const RUN_FILES = ['best.onnx', 'history.csv', 'history.json', 'history.png', 'last.onnx', 'split.json', 'train-state.bin'];

const historyOf = (dir: string): EpochRecord[] => JSON.parse(readFileSync(join(dir, 'history.json'), 'utf8'));
const noStackTrace = (r: Run) => expect(r.stderr).not.toMatch(/\n\s+at /);

let tmp: string;
let split: string; // train/ (12 per class) and valid/ (6 per class)

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'gpunet-train-cli-'));
  split = join(tmp, 'split');
  await writeClasses(12, 1, (cls, i) => join(split, 'train', cls, `${cls}_${i}.png`));
  await writeClasses(6, 2, (cls, i) => join(split, 'valid', cls, `${cls}_${i}.png`));
});

/** The training run of the first test, also the uninterrupted twin of the Ctrl-C test's run. */
const EPOCHS = 3;
const LEARN_ARGS = [...SMALL, '--epochs', String(EPOCHS), '--batch-size', '12']; // 3 steps per epoch
let learning: Promise<{ out: string; run: Run }> | undefined;
function learnRun(): Promise<{ out: string; run: Run }> {
  const out = join(tmp, 'run-learn');
  learning ??= gpunet(['train', '--data', split, ...LEARN_ARGS, '--out', out]).then((run) => ({ out, run }));
  return learning;
}

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

// Each test is a workflow of several gpunet processes (train, then eval and predict, each compiling
// its pipelines): ~60-100 s on a quiet 2-core machine, twice that with other jobs on the cores.
describe('gpunet train on generated image folders', { timeout: 300_000 }, () => {
  it('learns 3 colour classes to >= 95% valid accuracy; the run folder, predict and eval agree', async () => {
    const { out, run: r } = await learnRun();
    expect(r.ours).toEqual([]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^data: 3 classes \(blue, green, red\), 36 train \/ 18 valid images$/m);
    expect(r.stdout).toMatch(/^training resnet18 from scratch at 32 px; run folder /m);
    expect(r.stdout.match(new RegExp(`^epoch \\d/${EPOCHS} \\(unfrozen\\): train loss .* accuracy .*$`, 'gm'))).toHaveLength(EPOCHS);
    expect(readdirSync(out).sort()).toEqual(RUN_FILES);

    const history = historyOf(out);
    expect(history.map((h) => h.epoch)).toEqual([1, 2, 3]);
    const best = Math.max(...history.map((h) => h.accuracy));
    expect(best).toBeGreaterThanOrEqual(0.95);
    const bestEpoch = history.find((h) => h.accuracy === best)!.epoch;
    expect(r.stdout).toContain(`best valid accuracy ${(100 * best).toFixed(2)}% at epoch ${bestEpoch}: ${join(out, 'best.onnx')}`);
    const csv = readFileSync(join(out, 'history.csv'), 'utf8').trim().split('\n');
    expect(csv[0]).toBe('epoch,phase,trainLoss,validLoss,accuracy,macroF1,lr,seconds');
    expect(csv.slice(1).map((l) => Number(l.split(',')[4]))).toEqual(history.map((h) => Number(h.accuracy.toPrecision(8)))); // (8 significant digits)
    expect([...readFileSync(join(out, 'history.png')).subarray(1, 4)].map((c) => String.fromCharCode(c)).join('')).toBe('PNG');
    const state = loadTrainingState(join(out, 'train-state.bin'));
    expect([state.epoch, state.stepInEpoch, state.bestAccuracy]).toEqual([EPOCHS, 0, best]);

    // eval of best.onnx on valid/ gives the history's best accuracy
    const report = join(tmp, 'eval.json');
    const e = await gpunet(['eval', '--data', join(split, 'valid'), '--checkpoint', join(out, 'best.onnx'), '--json', report]);
    expect(e.ours).toEqual([]);
    expect(e.status).toBe(0);
    const rep = JSON.parse(readFileSync(report, 'utf8')) as { accuracy: number; predictions: { file: string; predicted: string }[] };
    expect(rep.accuracy).toBe(best);
    expect(e.stdout).toContain(`accuracy: ${(100 * best).toFixed(2)}%`);

    // predict names each valid image's class (>= 95% of 18 is all of them), as eval does
    const p = await gpunet(['predict', '--input', join(split, 'valid'), '--checkpoint', join(out, 'best.onnx'), '--top-k', '1', '--json']);
    expect(p.ours).toEqual([]);
    expect(p.status).toBe(0);
    const preds = p.stdout.trim().split('\n').map((l) => JSON.parse(l) as { file: string; predictions: { class: string; probability: number }[] });
    expect(preds).toHaveLength(18);
    for (const q of preds) {
      expect(q.predictions).toHaveLength(1);
      expect(q.predictions[0].class, q.file).toBe(basename(dirname(q.file)));
      expect(q.predictions[0].class).toBe(rep.predictions.find((x) => x.file === q.file)!.predicted);
    }

    // paths on standard input; TTA, a CSV, bar charts beside the images, Grad-CAM; each PNG said where
    const two = preds.slice(0, 2).map((q) => q.file);
    const outs = join(tmp, 'predict-outs');
    mkdirSync(outs);
    const flagged = await gpunet(['predict', '--input', '-', '--checkpoint', join(out, 'best.onnx'), '--top-k', '2', '--tta', '--csv', join(outs, 'p.csv'), '--plot', join(outs, 'topk.png'), '--cam', join(outs, 'cam.png')], undefined, `${two.join('\n')}\n`);
    expect(flagged.ours).toEqual([]);
    expect(flagged.status).toBe(0);
    expect(flagged.stdout).toMatch(/^TTA \(6 views: center, flipped, top-left, top-right, bottom-left, bottom-right\) changed the top class of \d of 2 images$/m);
    for (const f of ['topk-1.png', 'topk-2.png', 'cam-1.png', 'cam-2.png']) expect(flagged.stdout).toContain(`wrote ${join(outs, f)}: `);
    expect(readdirSync(outs).sort()).toEqual(['cam-1.png', 'cam-2.png', 'p.csv', 'topk-1.png', 'topk-2.png']);
    const rows = readFileSync(join(outs, 'p.csv'), 'utf8').trim().split('\n');
    expect(rows[0]).toBe('file,class_1,probability_1,class_2,probability_2');
    expect(rows.slice(1).map((l) => l.split(',')[0])).toEqual(two);
    expect(rows.slice(1).map((l) => l.split(',')[1])).toEqual(two.map((f) => basename(dirname(f))));

    // eval with TTA, the top losses under Grad-CAM, a normalised confusion heatmap
    const e2 = await gpunet(['eval', '--data', join(split, 'valid'), '--checkpoint', join(out, 'best.onnx'), '--tta', '--top-losses', '4', '--cam', '--out', join(tmp, 'eval-outs'), '--confusion', join(tmp, 'cm.png'), '--normalize']);
    expect(e2.ours).toEqual([]);
    expect(e2.status).toBe(0);
    expect(e2.stdout).toMatch(/^TTA \(6 views: .*\): accuracy \d+\.\d\d% against \d+\.\d\d% without \([+-]\d+\.\d\d points\), macro-F1/m);
    expect(e2.stdout).toMatch(/top-losses\.png: the \d most confidently wrong of 18 images|top losses: no image is misclassified/);
    expect((await sharp(join(tmp, 'cm.png')).metadata()).format).toBe('png');
  });

  it('Ctrl-C (SIGINT) saves and exits 0, no temp files; --resume finishes with the uninterrupted run\'s weights', async () => {
    const out = join(tmp, 'run-sigint');
    const args = ['train', '--data', split, ...LEARN_ARGS, '--out', out];
    let signalled = false;
    const r = await gpunet(args, (soFar, child) => {
      if (!signalled && /^epoch 1\/3 \(unfrozen\):/m.test(soFar)) {
        signalled = true;
        child.kill('SIGINT');
      }
    });
    expect(signalled).toBe(true);
    noStackTrace(r);
    expect(r.signal).toBeNull();
    expect(r.status).toBe(0); // trainCommand returns 0 for an interrupted run (only a second Ctrl-C exits 130)
    expect(r.stderr).toContain('stopping after this step and saving');
    // it stops after the step under way in epoch 2, or at an epoch's end if the signal came while one was saved
    const stopped = /^stopped (?:at epoch (\d), step (\d)\/3|after epoch (\d)): saved; continue with --resume$/m.exec(r.stdout);
    expect(stopped, r.stdout).not.toBeNull();
    const [epochsDone, step] = stopped![1] ? [Number(stopped![1]) - 1, Number(stopped![2])] : [Number(stopped![3]), 0];
    expect(epochsDone).toBeGreaterThanOrEqual(1);
    expect(epochsDone).toBeLessThan(EPOCHS);
    expect(readdirSync(out).sort()).toEqual(RUN_FILES); // no temp files left behind
    const state = loadTrainingState(join(out, 'train-state.bin'));
    expect([state.epoch, state.stepInEpoch]).toEqual([epochsDone, step]);
    expect(historyOf(out).map((h) => h.epoch)).toEqual(Array.from({ length: epochsDone }, (_, i) => i + 1));

    const resumed = await gpunet([...args, '--resume']);
    expect(resumed.ours).toEqual([]);
    expect(resumed.status).toBe(0);
    expect(resumed.stdout).toContain(`resuming at epoch ${epochsDone + 1}${step ? `, step ${step}/3` : ''}`);
    const lines = resumed.stdout.match(/^epoch (\d)\/3 \(unfrozen\):/gm)!;
    expect(lines.map((l) => Number(l[6]))).toEqual(Array.from({ length: EPOCHS - epochsDone }, (_, i) => epochsDone + 1 + i));
    expect(readdirSync(out).sort()).toEqual(RUN_FILES);
    expect(readFileSync(join(out, 'history.csv'), 'utf8').trim().split('\n')).toHaveLength(EPOCHS + 1);

    // the same as never interrupted: history (but the times) and final weights
    const twin = await learnRun();
    expect(twin.run.status).toBe(0);
    const strip = (dir: string) => historyOf(dir).map(({ seconds, ...rest }) => rest);
    expect(strip(out)).toEqual(strip(twin.out));
    const a = loadTrainingState(join(out, 'train-state.bin'));
    const b = loadTrainingState(join(twin.out, 'train-state.bin'));
    expect([a.epoch, a.stepInEpoch]).toEqual([EPOCHS, 0]);
    expect([...a.weights.keys()]).toEqual([...b.weights.keys()]);
    let maxDiff = 0;
    for (const [name, w] of a.weights) {
      const v = b.weights.get(name)!;
      for (let i = 0; i < w.length; i++) maxDiff = Math.max(maxDiff, Math.abs(w[i] - v[i]));
    }
    expect(maxDiff).toBeLessThanOrEqual(1e-6);

    // the run folder is not overwritten by a new run, nor continued with other settings
    const again = await gpunet(args);
    expect(again.status).toBe(1);
    expect(again.ours).toEqual([`gpunet train: ${out} holds a run already: pass --resume to continue it, or another --out`]);
    expect(again.stdout).toBe(''); // said before any work
    const none = join(tmp, 'run-none');
    const nothing = await gpunet(['train', '--data', split, ...LEARN_ARGS, '--out', none, '--resume']);
    expect([nothing.status, nothing.stdout]).toEqual([1, '']);
    expect(nothing.ours).toEqual([`gpunet train: --resume: ${none}: no train-state.bin to resume from (--out names the run to continue)`]);
    const changed = await gpunet([...args.map((x) => (x === '0.01' ? '0.02' : x)), '--resume']);
    expect(changed.status).toBe(1);
    expect(changed.ours).toEqual(['gpunet train: --resume: --lr was 0.01 in the saved run, now 0.02']);
    for (const x of [again, nothing, changed]) noStackTrace(x);
    expect(loadTrainingState(join(out, 'train-state.bin')).weights.get(a.weights.keys().next().value!)).toEqual(a.weights.values().next().value);
  });

  it("a flat folder labelled by --label-regex '(.+)_\\d+\\.png$': classes from the names, the rest skipped", async () => {
    const flat = join(tmp, 'flat');
    await writeClasses(8, 3, (cls, i) => join(flat, `${cls}_${i}.png`));
    await writeImage(join(flat, 'notes.png'), [128, 128, 128], () => 0.5);
    const out = join(tmp, 'run-regex');
    const r = await gpunet(['train', '--data', flat, '--label-regex', '(.+)_\\d+\\.png$', '--valid-pct', '0.25', ...SMALL, '--epochs', '1', '--batch-size', '9', '--out', out]);
    expect(r.status).toBe(0);
    expect(r.ours).toEqual([`gpunet train: skipped ${join(flat, 'notes.png')}: file name does not match --label-regex '(.+)_\\d+\\.png$'`]);
    expect(r.stdout).toMatch(/^data: 3 classes \(blue, green, red\), 18 train \/ 6 valid images$/m);
    expect(r.stdout).toMatch(/^epoch 1\/1 \(unfrozen\): train loss \d+\.\d+ .*accuracy \d+\.\d+%/m);
    expect(historyOf(out)).toHaveLength(1);
  });

  it('train/valid/test, imbalanced: warning, class weights, balanced sampler, early stopping; test/ scored; eval --run and --split; a finished run resumed, then extended', async () => {
    const data = join(tmp, 'imbalanced');
    let s = 11;
    const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
    const counts: Record<string, Record<string, number>> = { train: { red: 12, green: 3, blue: 3 }, valid: { red: 3, green: 3, blue: 3 }, test: { red: 3, green: 3, blue: 3 } };
    for (const [split, perClass] of Object.entries(counts)) {
      for (const [cls, n] of Object.entries(perClass)) for (let i = 0; i < n; i++) await writeImage(join(data, split, cls, `${cls}_${i}.png`), CLASSES[cls], next);
    }
    const out = join(tmp, 'run-imbalanced');
    const args = ['train', '--data', data, ...SMALL, '--epochs', '3', '--batch-size', '9', '--patience', '1', '--monitor', 'valid-loss', '--class-weights', 'auto', '--sampler', 'balanced', '--out', out];
    const r = await gpunet(args);
    expect(r.ours).toEqual([]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('warning: the classes are imbalanced: red has 12 training images, blue 3 (4.0x); consider --class-weights auto or --sampler balanced');
    expect(r.stdout).toMatch(/^class weights: blue 2, green 2, red 0\.5$/m);
    expect(r.stdout).toMatch(/^phase unfrozen, epochs 1-3 \(onecycle\): peak lr conv1…layer2 1\.00e-3, layer3…layer4 3\.16e-3, fc 1\.00e-2$/m);
    const history = historyOf(out);
    const best = history.reduce((a, b) => (b.validLoss < a.validLoss ? b : a));
    const summary = `best valid loss ${best.validLoss.toFixed(4)} (accuracy ${(100 * best.accuracy).toFixed(2)}%) at epoch ${best.epoch}: ${join(out, 'best.onnx')}`;
    if (history.length < 3) expect(r.stdout).toContain(`stopped early after epoch ${history.length}: valid loss has not improved for 1 epoch; ${summary}`);
    else expect(r.stdout).toContain(`\n${summary}\n`);
    const test = JSON.parse(readFileSync(join(out, 'test.json'), 'utf8')) as { accuracy: number; samples: number };
    expect(test.samples).toBe(9);
    expect(r.stdout).toContain(`test (best.onnx on the 9 images of test/): accuracy ${(100 * test.accuracy).toFixed(2)}%`);
    const split = JSON.parse(readFileSync(join(out, 'split.json'), 'utf8')) as { classes: string[]; train: unknown[]; valid: [string, number][]; test: unknown[] };
    expect([split.classes, split.train.length, split.valid.length, split.test.length]).toEqual([['blue', 'green', 'red'], 18, 9, 9]);
    expect(split.valid[0]).toEqual(['valid/blue/blue_0.png', 0]);

    // eval --run scores best.onnx on the run's validation files: the best epoch's accuracy; --data on the split folder takes test/
    const byRun = await gpunet(['eval', '--run', out]);
    expect(byRun.ours).toEqual([]);
    expect(byRun.stdout).toContain(`evaluating ${join(out, 'best.onnx')} on 9 images of the valid split of ${out} (split.json)`);
    expect(byRun.stdout).toContain(`accuracy: ${(100 * best.accuracy).toFixed(2)}%`);
    const byData = await gpunet(['eval', '--data', data, '--checkpoint', join(out, 'best.onnx')]);
    expect(byData.ours).toEqual([]);
    expect(byData.stdout).toContain(`on 9 images of the test split of ${data} (${join(data, 'test')}; --split valid for the other)`);
    expect(byData.stdout).toContain(`accuracy: ${(100 * test.accuracy).toFixed(2)}%`);

    // resumed as it is: nothing to do, exit 0; with more epochs: a new cycle over them
    const again = await gpunet([...args, '--resume']);
    expect(again.ours).toEqual([]);
    expect(again.status).toBe(0);
    expect(again.stdout).not.toContain('resuming');
    expect(again.stdout).toMatch(new RegExp(`^${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: the run (finished its 3 epochs|stopped early after epoch ${history.length} \\(--patience 1\\)); nothing to do`, 'm'));
    const more = await gpunet([...args.map((x) => (x === '3' ? '4' : x)), '--resume', '--patience', '5']);
    expect(more.ours).toEqual([]);
    expect(more.status).toBe(0);
    expect(more.stdout).toContain(`continuing after epoch ${history.length} with a new onecycle cycle over epochs ${history.length + 1}-4`);
    expect(historyOf(out).map((h) => h.epoch)).toEqual([1, 2, 3, 4]);
  });

  it('bad data folders: one line naming the folder, exit 1, no stack trace, nothing trained', async () => {
    const missing = join(tmp, 'no-such-folder');
    const m = await gpunet(['train', '--data', missing, ...SMALL, '--out', join(tmp, 'run-missing')]);
    expect(m.status).toBe(1);
    expect(m.ours).toEqual([`gpunet train: ${missing}: no such folder: give --data the folder holding the class folders (or train/ and valid/)`]);
    expect(m.stdout).toBe('');
    noStackTrace(m);

    const bad = join(tmp, 'empty-class');
    await writeClasses(3, 4, (cls, i) => join(bad, cls, `${cls}_${i}.png`));
    mkdirSync(join(bad, 'purple'));
    const e = await gpunet(['train', '--data', bad, ...SMALL, '--out', join(tmp, 'run-empty')]);
    expect(e.status).toBe(1);
    expect(e.ours).toEqual([`gpunet train: ${join(bad, 'purple')}: class 'purple' has no readable images: add images to it or remove the folder`]);
    expect(e.stdout).toBe('');
    noStackTrace(e);
    // a built architecture named beside --weights must be what the file holds
    const darknet = join(import.meta.dirname, '..', '..', 'shared', 'weights', 'darknet-tiny-imagenet.onnx');
    const a = await gpunet(['train', '--data', split, '--weights', darknet, '--arch', 'resnet34', '--means', '0,0,0', '--stds', '1,1,1', '--out', join(tmp, 'run-arch')]);
    expect(a.status).toBe(1);
    expect(a.ours).toEqual([`gpunet train: --weights ${darknet} holds an ONNX graph (not a torchvision ResNet), not --arch resnet34: drop --arch, or name the network the file holds`]);
    noStackTrace(a);
    expect(readdirSync(tmp)).not.toContain('run-missing');
    expect(readdirSync(tmp)).not.toContain('run-empty');
  });
});
