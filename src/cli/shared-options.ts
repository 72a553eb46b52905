// Options several commands share, declared once: the adapter, the seed, the data folder, the
// preprocessing overrides of a checkpoint.
import { choice, flag, int, num, numbers, str } from './options.ts';

export const DEVICE = {
  device: str({
    metavar: 'I|NAME|cpu|gpu',
    help: 'the WebGPU adapter: an index or part of a name from `gpunet devices`; cpu: a CPU (software) adapter; gpu: the first real GPU (default: the first adapter)',
  }),
};

/** Seeds are taken modulo 2^32, so any 32-bit integer, signed or not, is one. */
export const seedOption = (help: string) => int({ min: -(2 ** 31), max: 2 ** 32 - 1, default: 42, help });

/** How a data folder is read and split (`gpunet data`, show-batch, train, lr-find). */
export const DATA_SOURCE = {
  data: str({
    metavar: 'DIR',
    required: true,
    aliases: ['data_dir'],
   
    help: 'the images: class folders DIR/<class>/<image>; or DIR/train, DIR/valid (or val), DIR/test of class folders; or a flat folder labelled by --label-regex',
  }),
  validPct: num({ min: 0, below: 1, default: 0.2, help: 'without a valid folder: the fraction of each class held out at random (stratified, seeded)' }),
  seed: seedOption('the seed of the split, the initialisation, the order and the augmentation'),
  labelRegex: str({ metavar: 'RE', help: "a flat folder: the class is RE's first capture group over each file name, e.g. '(.+)_\\d+\\.jpg$'" }),
  verify: flag({ help: 'decode every file at the start (slower; also finds truncated files)' }),
};

/** Preprocessing that overrides (or, for a foreign ONNX file, supplies) a checkpoint's. */
export const PREPROCESSING = {
  means: numbers({ count: 3, metavar: 'R,G,B', defaultText: "the checkpoint's", help: 'per-channel mean of the normalisation, after scaling pixels to [0,1]' }),
  stds: numbers({ count: 3, above: 1e-6, metavar: 'R,G,B', defaultText: "the checkpoint's", help: 'per-channel standard deviation of the normalisation' }),
  size: int({ min: 1, max: 4096, defaultText: "the checkpoint's, else its graph input's fixed side", help: 'input side in pixels' }),
  resize: choice(['crop', 'fill'] as const, {
   
    defaultText: "the checkpoint's",
    help: 'crop: the shorter side to size/0.875, then a center crop; fill: resized to size x size',
  }),
};

export type PreprocessingValues = { means?: number[]; stds?: number[]; size?: number; resize?: 'crop' | 'fill' };
