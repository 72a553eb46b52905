// `gpunet train`: fine-tunes a classifier on a folder of images (fastai's fine_tune from the
// command line), and the set-up it shares with `gpunet lr-find`: data, model, loaders.
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_AUGMENT, type AugmentOptions } from '../data/augment.ts';
import type { Batch, DataSplit } from '../data/dataset.ts';
import { DataError, dataFingerprint, scanDataset } from '../data/folder.ts';
import { ImageLoader } from '../data/loader.ts';
import { initGpu } from '../gpu/index.ts';
import type { Module } from '../nn/module.ts';
import { resnet, ResNet, type ResNetArch } from '../nn/resnet.ts';
import { IMAGENET_NORMALIZATION, type Preprocessing } from '../onnx/classifier.ts';
import { classifierMetadata, loadClassifier, saveClassifier } from '../onnx/load.ts';
import { readOnnx } from '../onnx/read.ts';
import { saveOnnx } from '../onnx/write.ts';
import { Rng } from '../tensor/index.ts';
import { SCHEDULES, type ScheduleName } from '../train/schedule.ts';
import { fit, type TrainData } from '../train/trainer.ts';
import { exportTransferGraph, type ModelSplit, splitModel, TransferModel, transferFromGraph } from '../train/transfer.ts';
import { UsageError } from './errors.ts';
import type { Command } from './main.ts';
import { nonNegative, positiveInt } from './args.ts';
import { resolvePreprocessing } from './predict.ts';

export const DATA_USAGE = `  --data DIR              class folders, or train/ and valid/ (or val/) folders of class folders
  --valid-pct F           without a valid folder: the fraction split off at random (default 0.2)
  --label-regex RE        a flat folder: the class is RE's first capture group over each file name
  --arch resnet18|resnet34   the network for --weights none (default resnet18)
  --weights FILE|none     an ONNX classifier to fine-tune: a ResNet gets a new head, any other graph
                          is cut before its last weighted layer and gets a new n-class layer (none:
                          from scratch; default none)
  --size N                image side (default: the checkpoint's, else 224)
  --means a,b,c --stds a,b,c   normalisation after scaling to [0,1] (default: the checkpoint's, else ImageNet's)
  --augment fastai|flip|none   training augmentation (default fastai: random-resized crop, flip,
                          rotation, zoom, lighting)
  --batch-size N          (default 16)
  --seed N                split, initialisation, order and augmentation (default 42)
  --workers N             image decoding threads (default: cores, at most 4)
  --device I|NAME         the WebGPU adapter (see gpunet devices)`;

const usage = `usage: gpunet train --data DIR [--arch resnet18|resnet34] [--weights model.onnx|none] [--epochs 5]
                   [--freeze-epochs 1] [--lr 1e-3] [--lr-mult 0.1] [--schedule onecycle|cosine|step|constant]
                   [--batch-size 16] [--size 224] [--momentum 0.9] [--weight-decay 1e-4] [--label-smoothing 0]
                   [--seed 42] [--out runs/NAME] [--resume] [--valid-pct 0.2] [--label-regex RE] [--workers N]

Fine-tunes an image classifier (fastai's fine_tune): --freeze-epochs epochs with the backbone frozen
(the new head and the batchnorm layers train), then everything with discriminative rates (the stem
at lr x lr-mult, the head at lr). With --freeze-epochs >= --epochs the backbone stays frozen (batchnorm
too) and its features are computed once, so each epoch trains only the head. Writes to --out:
best.onnx (best valid accuracy), last.onnx, history.csv/json/png and train-state.bin (--resume
continues exactly). Ctrl-C (or SIGTERM) finishes the current step, saves and exits.

  --epochs N              epochs in all, frozen ones included (default 5)
  --freeze-epochs N       epochs with the backbone frozen first (default 1; 0 with --weights none)
  --lr F                  the head's peak learning rate (default 1e-3)
  --lr-mult F             the stem's rate is lr x F, layer groups between geometric (default 0.1)
  --schedule S            onecycle (default), cosine, step (x0.1 at 50% and 75%), constant
  --momentum F            SGD momentum (one-cycle cycles it 0.95-0.85-0.95 instead; default 0.9)
  --weight-decay F        L2 on weights, not on batchnorm or biases (default 1e-4)
  --label-smoothing F     (default 0)
  --out DIR               the run folder (default runs/train, runs/train2, ...)
  --resume                continue the run in --out
${DATA_USAGE}`;

export const DATA_OPTIONS = {
  data: { type: 'string' },
  'valid-pct': { type: 'string', default: '0.2' },
  'label-regex': { type: 'string' },
  arch: { type: 'string', default: 'resnet18' },
  weights: { type: 'string', default: 'none' },
  size: { type: 'string' },
  means: { type: 'string' },
  stds: { type: 'string' },
  augment: { type: 'string', default: 'fastai' },
  'batch-size': { type: 'string', default: '16' },
  seed: { type: 'string', default: '42' },
  workers: { type: 'string' },
  device: { type: 'string' },
  'freeze-epochs': { type: 'string' },
  momentum: { type: 'string', default: '0.9' },
  'weight-decay': { type: 'string', default: '1e-4' },
  'label-smoothing': { type: 'string', default: '0' },
} as const;

type DataValues = { [K in keyof typeof DATA_OPTIONS]?: string };

const AUGMENTS: Record<string, AugmentOptions | null> = { fastai: DEFAULT_AUGMENT, flip: { flip: true }, none: null };

/** Everything a training run starts from. */
export interface RunSetup {
  split: ModelSplit;
  data: TrainData;
  dataset: DataSplit;
  preprocessing: Preprocessing;
  /** true when the backbone is pretrained (--weights) */
  pretrained: boolean;
  /** writes the model as a classifier checkpoint */
  exportModel: (path: string) => Promise<void>;
  /** settings a resumed run must share */
  config: Record<string, unknown>;
  close: () => Promise<void>;
}

/** Scans the data, builds the model (new head), the loaders. Opens the GPU. */
export async function prepareRun(v: DataValues, command: string): Promise<RunSetup> {
  if (!v.data) throw new UsageError('--data DIR is required');
  const seed = Number(v.seed);
  if (!Number.isInteger(seed)) throw new UsageError(`--seed must be an integer, got '${v.seed}'`);
  const batchSize = positiveInt('batch-size', v['batch-size']!);
  const arch = v.arch as ResNetArch;
  if (arch !== 'resnet18' && arch !== 'resnet34') throw new UsageError(`--arch must be resnet18 or resnet34, got '${v.arch}'`);
  if (!(v.augment! in AUGMENTS)) throw new UsageError(`--augment must be fastai, flip or none, got '${v.augment}'`);
  const workers = v.workers === undefined ? undefined : nonNegative('workers', v.workers);

  let dataset: DataSplit;
  try {
    dataset = await scanDataset(v.data, { validPct: nonNegative('valid-pct', v['valid-pct']), seed, labelRegex: v['label-regex'] });
  } catch (e) {
    if (e instanceof DataError) throw new UsageError(e.message);
    throw e;
  }
  for (const s of dataset.skipped) console.error(`gpunet ${command}: skipped ${s.path}: ${s.reason}`);
  if (dataset.valid.length === 0) throw new UsageError(`--data ${v.data}: no validation images (add a valid/ folder or use --valid-pct > 0)`);
  const n = dataset.classes.length;
  console.log(`data: ${n} classes (${dataset.classes.slice(0, 8).join(', ')}${n > 8 ? ', ...' : ''}), ${dataset.train.length} train / ${dataset.valid.length} valid images`);

  await initGpu(v.device);
  const rng = new Rng(seed);
  const pretrained = v.weights !== 'none';
  let model: Module;
  let base: Preprocessing | null = null;
  if (!pretrained) {
    model = resnet(arch, n, seed);
  } else {
    if (!existsSync(v.weights!)) throw new UsageError(`--weights ${v.weights}: no such file`);
    const c = await loadClassifier(v.weights!);
    base = c.preprocessing;
    if (c.model instanceof ResNet) {
      c.model.replaceHead(n, rng);
      model = c.model;
    } else {
      c.model.release();
      const size = v.size ? positiveInt('size', v.size) : (base?.size ?? 224);
      model = transferFromGraph(readOnnx(v.weights!), n, size, rng, v.weights!);
    }
  }
  const preprocessing = { ...resolvePreprocessing(v, base ?? { size: 224, ...IMAGENET_NORMALIZATION, resize: 'crop' }, v.weights!), resize: 'crop' as const };
  const split = splitModel(model);
  const { size, mean, std } = preprocessing;
  const loader = (samples: typeof dataset.train, augment: AugmentOptions | null, shuffle: boolean) =>
    new ImageLoader(samples, { size, batchSize, augment, mean, std, shuffle, seed, workers, onSkip: (f) => console.error(`gpunet ${command}: skipped ${f.path}: ${f.reason}`) });
  const train = loader(dataset.train, AUGMENTS[v.augment!], true);
  const valid = loader(dataset.valid, null, false);
  const plain = loader(dataset.train, null, false);
  const data: TrainData = {
    classes: dataset.classes,
    imageShape: [3, size, size],
    trainSize: dataset.train.length,
    validSize: dataset.valid.length,
    batchSize,
    async *train(epoch, _seed, from) {
      let i = 0;
      // the loader has no random access: a resumed epoch decodes its first batches again
      for await (const b of train.epoch(epoch)) if (i++ >= from) yield b;
    },
    valid: () => valid.epoch(0),
    trainPlain: () => plain.epoch(0),
  };
  const classifier = { model, classes: dataset.classes, preprocessing, source: v.weights! };
  const exportModel = async (path: string) => {
    if (model instanceof TransferModel) saveOnnx(await exportTransferGraph(model, classifierMetadata(classifier)), path);
    else await saveClassifier(classifier, path);
  };
  const config = {
    arch: pretrained ? null : arch, weights: pretrained ? basename(v.weights!) : 'none', size, mean, std, augment: v.augment, classes: dataset.classes,
    data: dataFingerprint(v.data, dataset),
  };
  return {
    split, data, dataset, preprocessing, pretrained, exportModel, config,
    close: async () => {
      await Promise.all([train.close(), valid.close(), plain.close()]);
    },
  };
}

function defaultOut(): string {
  for (let i = 1; ; i++) {
    const dir = join('runs', i === 1 ? 'train' : `train${i}`);
    if (!existsSync(dir)) return dir;
  }
}

export const trainCommand: Command = {
  name: 'train',
  summary: 'fine-tune a classifier on a folder of images',
  usage,
  async run(args) {
    const { values: v } = parseArgs({
      args,
      options: {
        ...DATA_OPTIONS,
        epochs: { type: 'string', default: '5' },
        lr: { type: 'string', default: '1e-3' },
        'lr-mult': { type: 'string', default: '0.1' },
        schedule: { type: 'string', default: 'onecycle' },
        out: { type: 'string' },
        resume: { type: 'boolean', default: false },
      },
    });
    const epochs = positiveInt('epochs', v.epochs!);
    const lr = nonNegative('lr', v.lr);
    const lrMult = nonNegative('lr-mult', v['lr-mult']);
    if (!(lrMult > 0)) throw new UsageError(`--lr-mult must be positive, got '${v['lr-mult']}'`);
    if (!(SCHEDULES as readonly string[]).includes(v.schedule!)) throw new UsageError(`--schedule must be one of ${SCHEDULES.join(', ')}, got '${v.schedule}'`);
    const labelSmoothing = nonNegative('label-smoothing', v['label-smoothing']);
    if (labelSmoothing > 1) throw new UsageError(`--label-smoothing must be in [0, 1], got '${v['label-smoothing']}'`);
    if (v.resume && !v.out) throw new UsageError('--resume needs --out DIR, the run to continue');
    const out = v.out ?? defaultOut();

    const run = await prepareRun(v, 'train');
    const freezeEpochs = v['freeze-epochs'] !== undefined ? nonNegative('freeze-epochs', v['freeze-epochs']) : run.pretrained ? 1 : 0;
    if (freezeEpochs > 0 && !run.pretrained) console.log('note: --weights none trains from scratch; freezing its random backbone rarely helps (--freeze-epochs 0)');
    let stop = false;
    // Ctrl-C, or SIGTERM from a job scheduler: finish the step, save, exit; a second one quits now
    const onSignal = (signal: NodeJS.Signals) => {
      if (stop) process.exit(signal === 'SIGINT' ? 130 : 143);
      stop = true;
      console.error(`\n${signal}: stopping after this step and saving (${signal === 'SIGINT' ? 'Ctrl-C' : 'the signal'} again to quit now)`);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      const what = run.pretrained ? `${run.config.weights} with a new ${run.dataset.classes.length}-class head` : `${v.arch} from scratch`;
      console.log(`training ${what} at ${run.preprocessing.size} px; run folder ${out}`);
      const res = await fit(run.split, run.data, {
        epochs, freezeEpochs, lr, lrMult, schedule: v.schedule as ScheduleName,
        momentum: nonNegative('momentum', v.momentum), weightDecay: nonNegative('weight-decay', v['weight-decay']), labelSmoothing,
        seed: Number(v.seed), out, resume: v.resume, exportModel: run.exportModel, config: run.config, progress: true,
        shouldStop: () => stop,
      });
      if (res.status === 'nonfinite') {
        console.error(`gpunet train: ${res.message}`);
        return 1;
      }
      if (res.status === 'done') console.log(`best valid accuracy ${(100 * res.bestAccuracy).toFixed(2)}%: ${join(out, 'best.onnx')}`);
      return 0;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await run.close();
      run.split.model.release();
    }
  },
};
