// `gpunet train`: fine-tunes a classifier on a folder of images (fastai's fine_tune from the
// command line), and the set-up it shares with `gpunet lr-find`: data, model, loaders.
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { DataSplit } from '../data/dataset.ts';
import { dataFingerprint } from '../data/folder.ts';
import { SPLIT_FILE, writeSplitFile } from '../data/split-file.ts';
import { getGpu, initGpu, type Profile } from '../gpu/index.ts';
import { writeFileAtomic } from '../io/files.ts';
import { printable } from '../io/printable.ts';
import { loadClassifier, saveClassifier } from '../onnx/load.ts';
import { evaluateFiles } from '../train/inference.ts';
import { RESNET_BLOCKS, type ResNetArch } from '../nn/resnet.ts';
import { IMAGENET_NORMALIZATION, type Preprocessing } from '../data/image.ts';
import { SCHEDULES } from '../train/schedule.ts';
import { buildModel, imageData, inverseFrequencyWeights } from '../train/setup.ts';
import { type EpochRecord } from '../train/history.ts';
import { StateFileError } from '../train/checkpoint.ts';
import { fit, type FitResult, type Monitor, OPTIMIZERS, RunFolderError, STATE_FILE, type TrainData } from '../train/trainer.ts';
import type { ModelSplit } from '../nn/split.ts';
import { defineCommand } from './command.ts';
import { duplicateWarnings, imbalanceWarning, scanFromArgs } from './data.ts';
import { UsageError } from './errors.ts';
import { choice, flag, grouped, int, kebab, num, str, type Values } from './options.ts';
import { readNamesFile, reportSkipped, resolvePreprocessing, skipLine } from './predict.ts';
import { PROFILE, reportProfile } from './profile.ts';
import { augmentFlags, augmentFrom, augmentOptions, mixFrom } from './augment-options.ts';
import { DATA_SOURCE, DEVICE, PREPROCESSING } from './shared-options.ts';

/** The architectures gpunet builds itself; any other needs --weights. */
const BUILT_ARCHS = Object.keys(RESNET_BLOCKS) as ResNetArch[];

/** The data, the model and the loader: what train and lr-find both start from. */
export const RUN_OPTIONS = {
  ...grouped('data', {
    ...DATA_SOURCE,
    batchSize: int({ min: 1, max: 4096, default: 16, help: 'images per step (a last training batch of one image is left out of each epoch: batchnorm cannot train on it)' }),
    workers: int({ min: 0, max: 32, defaultText: 'the core count, at most 4', help: 'image decoding threads (0: on the main thread)' }),
    sampler: choice(['shuffle', 'balanced'] as const, {
      default: 'shuffle',
      help: "shuffle: each training image once per epoch; balanced: drawn with replacement so that every class is equally likely (torch's WeightedRandomSampler)",
    }),
  }),
  ...augmentOptions('fastai'),
  ...grouped('model', {
    weights: str({
      metavar: 'FILE|none',
      default: 'none',
      help: 'an ONNX classifier to fine-tune: a ResNet gets a new head, any other graph is cut before its last weighted layer and gets a new n-class layer; none: from scratch',
    }),
    arch: str({
      metavar: 'NAME',
      defaultText: 'resnet18 with --weights none',
      help: `the network: ${BUILT_ARCHS.join(' and ')} are built here (from scratch with --weights none, or checked against --weights); any other network the ONNX path runs (vgg16, densenet121, mobilenet_v2, squeezenet1_1, resnet50, inception_v3, ...) needs --weights, an ONNX export of it`,
    }),
    size: { ...PREPROCESSING.size, defaultText: "the checkpoint's, else its graph input's fixed side, else 224" },
    means: { ...PREPROCESSING.means, defaultText: "the checkpoint's, else ImageNet's" },
    stds: { ...PREPROCESSING.stds, defaultText: "the checkpoint's, else ImageNet's" },
  }),
  ...grouped('optimizer', {
    opt: choice(OPTIMIZERS, {
      default: 'sgd',
      help: "sgd (torch.optim.SGD, L2 weight decay), adam (Adam, L2 decay) or adamw (AdamW, decoupled decay); its state is saved for --resume",
    }),
    momentum: num({ min: 0, below: 1, default: 0.9, help: "SGD's momentum, Adam's beta1 (one-cycle cycles it 0.95-0.85-0.95 instead)" }),
    weightDecay: num({ min: 0, max: 1, defaultText: '1e-4; 1e-2 with --opt adamw', help: 'weight decay on weights, not on batchnorm or biases' }),
    labelSmoothing: num({ min: 0, max: 1, default: 0, help: 'the target mixes in this much of the uniform distribution' }),
  }),
  ...grouped('device', DEVICE),
};

type RunValues = Values<typeof RUN_OPTIONS>;

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
export async function prepareRun(v: RunValues, command: string): Promise<RunSetup> {
  const pretrained = v.weights !== 'none';
  const built = BUILT_ARCHS.find((a) => a === (v.arch ?? 'resnet18'));
  if (!pretrained && !built) {
    throw new UsageError(`--arch ${v.arch} needs --weights FILE.onnx: gpunet builds only ${BUILT_ARCHS.join(' and ')} itself; any other network is fine-tuned from an ONNX export of it (torch.onnx.export, or tools/fetch-weights)`);
  }
  if (pretrained && !existsSync(v.weights)) throw new UsageError(`--weights ${v.weights}: no such file`);
  const { data: dataset } = await scanFromArgs(v);
  for (const s of dataset.skipped) console.error(skipLine(command, s.path, s.reason));
  for (const w of duplicateWarnings(v.data, dataset)) console.error(`gpunet ${command}: warning: ${w}`);
  if (dataset.valid.length === 0) throw new UsageError(`--data ${v.data}: no validation images (add a valid/ folder or use --valid-pct > 0)`);
  const n = dataset.classes.length;
  console.log(`data: ${n} classes (${printable(dataset.classes.slice(0, 8).join(', '))}${n > 8 ? ', ...' : ''}), ${dataset.train.length} train / ${dataset.valid.length} valid images`);
  const imbalance = imbalanceWarning(dataset);
  if (imbalance) console.log(imbalance);

  await initGpu(v.device);
  const { model, base, size: builtSize } = await buildModel({ classes: n, weights: pretrained ? v.weights : undefined, arch: built ?? 'resnet18', size: v.size, seed: v.seed });
  // a built architecture named beside --weights must be what the file holds
  const loadedArch = (model as { arch?: string }).arch ?? 'an ONNX graph (not a torchvision ResNet)';
  if (pretrained && v.arch !== undefined && built && loadedArch !== built) {
    model.release();
    throw new UsageError(`--weights ${v.weights} holds ${loadedArch}, not --arch ${v.arch}: drop --arch, or name the network the file holds`);
  }
  const preprocessing = { ...resolvePreprocessing(v, base ?? { size: builtSize, ...IMAGENET_NORMALIZATION, resize: 'crop' }, v.weights), resize: 'crop' as const };
  const { size, mean, std } = preprocessing;
  const augment = augmentFrom(v);
  const { data, close } = imageData(dataset.train, dataset.valid, {
    classes: dataset.classes, size, batchSize: v.batchSize, augment, mean, std, seed: v.seed, workers: v.workers, balanced: v.sampler === 'balanced',
    onSkip: (f) => console.error(skipLine(command, f.path, f.reason)),
  });
  const classifier = { model, classes: dataset.classes, preprocessing, source: v.weights };
  const config = {
    sampler: v.sampler,
    arch: pretrained ? (v.arch ?? null) : built, weights: pretrained ? basename(v.weights) : 'none', size, mean, std, augment: v.augment, augmentation: augmentFlags(augment), classes: dataset.classes,
    data: dataFingerprint(v.data, dataset),
  };
  return { split: model.split(), data, dataset, preprocessing, pretrained, exportModel: (path) => saveClassifier(classifier, path), config, close };
}

function defaultOut(): string {
  for (let i = 1; ; i++) {
    const dir = join('runs', i === 1 ? 'train' : `train${i}`);
    if (!existsSync(dir)) return dir;
  }
}

/** --weight-decay, or its default for the optimizer (torch's AdamW decays 1e-2 by default). */
export function weightDecay(v: { opt: string; weightDecay?: number }): number {
  return v.weightDecay ?? (v.opt === 'adamw' ? 1e-2 : 1e-4);
}

/** The flag (or what the user controls) behind a setting the trainer saves with a run. */
function settingName(key: string): string {
  const names: Record<string, string> = { mean: '--means', std: '--stds', trainSize: 'the number of training images', classes: 'the classes', optimizer: '--opt' };
  return names[key] ?? `--${kebab(key)}`;
}

/** The trainer's run-folder errors in the command line's words. */
function runFolderMessage(e: RunFolderError): string {
  if (e.kind === 'no-state') return `--resume: ${e.message} (--out names the run to continue)`;
  if (e.kind === 'exists') return `${e.folder} holds a run already: pass --resume to continue it, or another --out`;
  const s = e.setting!;
  if (e.kind === 'unfinished') {
    return `--resume: the run in ${e.folder} has done ${s.saved} of its epochs: finish it first (--resume with its --epochs), then give it more`;
  }
  if (s.key === 'data') {
    const files = (d: unknown) => `${(d as { files?: unknown } | undefined)?.files} files`;
    return `--resume: the data folder holds other files than the saved run's (${files(s.saved)} then, ${files(s.now)} now): resume with the run's --data, or start a new run with another --out`;
  }
  return `--resume: ${settingName(s.key)} was ${JSON.stringify(s.saved)} in the saved run, now ${JSON.stringify(s.now)}`;
}

/** --profile: steps untimed first, then the profiled ones */
const PROFILE_WARMUP = 2;
const PROFILE_STEPS = 3;

/** --monitor's words and the trainer's metric names. */
const MONITOR_FLAGS = { 'valid-loss': 'validLoss', accuracy: 'accuracy', 'macro-f1': 'macroF1' } as const satisfies Record<string, Monitor>;

function describeMetric(r: EpochRecord, monitor: Monitor): string {
  const acc = `${(100 * r.accuracy).toFixed(2)}%`;
  if (monitor === 'accuracy') return `valid accuracy ${acc}`;
  return monitor === 'validLoss' ? `valid loss ${r.validLoss.toFixed(4)} (accuracy ${acc})` : `macro-F1 ${r.macroF1.toFixed(4)} (accuracy ${acc})`;
}

/** The line after a run: its best epoch, where it is, why it stopped. */
function summaryLine(res: FitResult, monitor: Monitor, out: string, epochs: number): string {
  const best = res.best ? `best ${describeMetric(res.best, monitor)} at epoch ${res.best.epoch}: ${printable(join(out, 'best.onnx'))}` : 'no epoch done';
  if (res.status === 'finished') {
    const why = res.stoppedEarly ? `stopped early after epoch ${res.stoppedEarly.epoch} (--patience ${res.stoppedEarly.patience})` : `finished its ${epochs} epochs`;
    return `${printable(out)}: the run ${why}; nothing to do (${best}). To train on, give a larger --epochs with --resume: the added epochs get a new cycle of the schedule`;
  }
  if (res.stoppedEarly) {
    return `stopped early after epoch ${res.stoppedEarly.epoch}: ${monitor === 'validLoss' ? 'valid loss' : monitor === 'accuracy' ? 'accuracy' : 'macro-F1'} has not improved for ${res.stoppedEarly.patience} epoch${res.stoppedEarly.patience === 1 ? '' : 's'}; ${best} (the best epoch's weights, as Keras' restore_best_weights=True keeps them)`;
  }
  return best;
}

/** The best checkpoint on the data's test/ folder, after training: one line, and test.json in the run folder. */
async function evaluateTest(run: RunSetup, out: string, batchSize: number): Promise<void> {
  const test = run.dataset.test;
  if (test.length === 0) return;
  const c = await loadClassifier(join(out, 'best.onnx'));
  try {
    const { metrics: m, results, failed } = await evaluateFiles(c, test.map((s) => ({ file: s.path, label: s.label })), run.preprocessing, batchSize);
    reportSkipped('train', failed);
    if (results.length === 0) {
      console.log(`test: none of the ${test.length} images of test/ could be read`);
      return;
    }
    console.log(`test (best.onnx on the ${results.length} images of test/): accuracy ${(100 * m.accuracy).toFixed(2)}%  macro-F1 ${m.macroF1.toFixed(4)}  (${printable(join(out, 'test.json'))})`);
    writeFileAtomic(join(out, 'test.json'), `${JSON.stringify({ checkpoint: join(out, 'best.onnx'), ...m, skipped: failed.map((e) => e.file) }, null, 2)}\n`);
  } finally {
    c.model.release();
  }
}

/** --class-weights: 'auto' (inverse class frequency) or a file of one weight per class. */
export function classWeights(spec: string | undefined, dataset: DataSplit): number[] | undefined {
  if (spec === undefined) return undefined;
  const n = dataset.classes.length;
  if (spec === 'auto') return inverseFrequencyWeights(dataset.train.map((s) => s.label), n);
  const data = readNamesFile('--class-weights', spec);
  const raw = Array.isArray(data) ? data : dataset.classes.map((c) => data[c]);
  if (Array.isArray(data) && data.length !== n) throw new UsageError(`--class-weights ${spec}: ${data.length} weights for ${n} classes (${dataset.classes.join(', ')})`);
  const weights = raw.map((w, i) => {
    const x = typeof w === 'number' ? w : typeof w === 'string' && w.trim() !== '' ? Number(w) : NaN;
    if (!(Number.isFinite(x) && x >= 0)) throw new UsageError(`--class-weights ${spec}: the weight of class '${dataset.classes[i]}' is ${JSON.stringify(w ?? null)}, not a number >= 0`);
    return x;
  });
  if (!weights.some((w) => w > 0)) throw new UsageError(`--class-weights ${spec}: every weight is 0`);
  return weights;
}

export const trainCommand = defineCommand({
  name: 'train',
  summary: 'fine-tune a classifier on a folder of images',
  synopsis: '--data DIR [options]',
  description: `Fine-tunes an image classifier (fastai's fine_tune): --freeze-epochs epochs with the backbone frozen
(the new head and the batchnorm layers train), then everything with discriminative rates (the stem
at lr x lr-mult, the head at lr). With --freeze-epochs >= --epochs the backbone stays frozen (batchnorm
too) and its features are computed once, so each epoch trains only the head. Writes to --out:
best.onnx (the best epoch by --monitor), last.onnx, history.csv/json/png, split.json (the files of
each split, which \`gpunet eval --run\` scores) and train-state.bin (--resume continues exactly); a
test/ folder beside train/ and valid/ is scored with best.onnx after training (test.json).
Ctrl-C (or SIGTERM) finishes the current step, saves and exits. With --profile it profiles training
steps ${PROFILE_WARMUP + 1}-${PROFILE_WARMUP + PROFILE_STEPS}, prints the tables and stops, writing nothing.`,
  options: {
    ...grouped('training', {
      epochs: int({
        min: 1,
        max: 100_000,
        default: 5,
        help: "epochs in all, frozen ones included. With --resume on a finished run, a larger value adds epochs, trained with a new cycle of the schedule over the added epochs alone (fastai's second fit_one_cycle)",
      }),
      freezeEpochs: int({ min: 0, max: 100_000, defaultText: '1 with --weights, 0 without', help: 'epochs with the backbone frozen first' }),
      lr: num({ above: 0, max: 100, default: 1e-3, aliases: ['learning_rate'], help: "the head's peak learning rate" }),
      lrMult: num({ above: 0, max: 1000, default: 0.1, help: "the stem's rate is lr x lr-mult, the layer groups between geometric" }),
      schedule: choice(SCHEDULES, { default: 'onecycle', help: 'onecycle, cosine, step (x0.1 at 50% and 75%), constant' }),
      monitor: choice(Object.keys(MONITOR_FLAGS) as (keyof typeof MONITOR_FLAGS)[], {
        default: 'accuracy',
        help: 'the validation metric best.onnx keeps the best epoch of, and --patience watches',
      }),
      patience: int({
        min: 1,
        max: 100_000,
        help: "early stopping: stop once --monitor has not improved for N epochs (Keras' EarlyStopping(patience=N)); best.onnx then holds the best epoch's weights, as restore_best_weights=True leaves the model",
      }),
      classWeights: str({
        metavar: 'auto|FILE',
        help: "loss weight per class against imbalance (torch's weight=): auto, inverse class frequency n/(classes x n_c); or a file, JSON {\"class\": w} or one number per line in class order",
      }),
      out: str({ metavar: 'DIR', aliases: ['save_dir'], defaultText: 'runs/train, runs/train2, ...', help: 'the run folder' }),
      resume: flag({ help: 'continue the run in --out' }),
    }),
    ...RUN_OPTIONS,
    ...grouped('profiling', PROFILE),
  },
  async run(v) {
    if (v.resume && !v.out) throw new UsageError('--resume needs --out DIR, the run to continue');
    const profiling = v.profile !== undefined;
    if (profiling && (v.resume || v.out)) throw new UsageError('--profile runs a few steps and writes no run folder: drop --out and --resume');
    const out = profiling ? undefined : (v.out ?? defaultOut());
    // a run folder that cannot be used as asked is said before any work (the data, the GPU, the model)
    if (out && v.resume !== existsSync(join(out, STATE_FILE))) throw new UsageError(runFolderMessage(new RunFolderError(v.resume ? 'no-state' : 'exists', out)));

    const run = await prepareRun(v, 'train');
    const freezeEpochs = v.freezeEpochs ?? (run.pretrained ? 1 : 0);
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
    // --profile: after PROFILE_WARMUP steps, time PROFILE_STEPS, then stop
    let stepsDone = 0;
    let timed: Promise<Profile> | null = null;
    const afterStep = () => {
      stepsDone++;
      if (stepsDone === PROFILE_WARMUP) getGpu().startProfiling();
      if (stepsDone === PROFILE_WARMUP + PROFILE_STEPS) timed = getGpu().stopProfiling();
      return timed !== null;
    };
    try {
      const what = run.pretrained ? `${v.arch ? `${v.arch} (${run.config.weights})` : run.config.weights} with a new ${run.dataset.classes.length}-class head` : `${run.config.arch} from scratch`;
      console.log(`training ${what} at ${run.preprocessing.size} px; ${out ? `run folder ${out}` : `profiling steps ${PROFILE_WARMUP + 1}-${PROFILE_WARMUP + PROFILE_STEPS}`}`);
      const weights = classWeights(v.classWeights, run.dataset);
      if (weights) console.log(`class weights: ${run.dataset.classes.map((c, i) => `${printable(c)} ${Number(weights[i].toPrecision(3))}`).join(', ')}`);
      const monitor = MONITOR_FLAGS[v.monitor];
      const mix = mixFrom(v);
      console.log(`augmentation: ${run.config.augmentation}${mix?.mixup ? `, mixup ${mix.mixup}` : ''}${mix?.cutmix ? `, cutmix ${mix.cutmix}` : ''}`);
      const res = await fit(run.split, run.data, {
        epochs: v.epochs, freezeEpochs, lr: v.lr, lrMult: v.lrMult, schedule: v.schedule,
        optimizer: v.opt, momentum: v.momentum, weightDecay: weightDecay(v), labelSmoothing: v.labelSmoothing, classWeights: weights, mix, monitor, patience: v.patience,
        seed: v.seed, out, resume: v.resume, exportModel: out ? run.exportModel : undefined, config: run.config, progress: true,
        shouldStop: () => (profiling && afterStep()) || stop,
        onStart: () => out && writeSplitFile(join(out, SPLIT_FILE), v.data, run.dataset), // what `gpunet eval --run` scores later
      });
      if (profiling) {
        if (!timed) throw new UsageError(`--profile: the run ended after ${stepsDone} steps, before the ${PROFILE_WARMUP + PROFILE_STEPS} it profiles (more images, or a smaller --batch-size)`);
        await reportProfile(v.profile!, await timed, PROFILE_STEPS);
        return 0;
      }
      if (res.status === 'nonfinite') {
        console.error(`gpunet train: ${res.message} (try a lower --lr)`);
        return 1;
      }
      if (res.status === 'interrupted') {
        const at = res.stoppedAt!;
        console.log(`stopped ${at.step ? `at epoch ${at.epoch + 1}, step ${at.step}/${at.stepsPerEpoch}` : `after epoch ${at.epoch}`}: saved; continue with --resume`);
      }
      if (res.status === 'done' || res.status === 'finished') console.log(summaryLine(res, monitor, out!, v.epochs));
      if (res.status === 'done') await evaluateTest(run, out!, v.batchSize);
      return 0;
    } catch (e) {
      if (e instanceof RunFolderError) throw new UsageError(runFolderMessage(e));
      if (e instanceof StateFileError) throw new UsageError(`${e.file}: ${e.problem}; delete it or choose another --out`);
      throw e;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await run.close();
      run.split.model.release();
    }
  },
});
