// `gpunet show-batch`: a labelled grid of the images the loader feeds the network (augmented and
// mixed as training does, or as validated), as a PNG — the quickest way to see that labels, crops
// and augmentation are right. It takes train's augmentation flags, so it shows what training sees.
import { basename } from 'node:path';
import type { Batch } from '../data/dataset.ts';
import { mixBatch, mixSeed } from '../data/mix.ts';
import { IMAGENET_NORMALIZATION } from '../data/image.ts';
import { Rng } from '../tensor/index.ts';
import { augmentFlags, augmentFrom, augmentOptions, mixFrom } from './augment-options.ts';
import { ImageLoader } from '../data/loader.ts';
import { writeFileAtomic } from '../io/files.ts';
import { imageGridPng } from '../report/images.ts';
import { printable } from '../io/printable.ts';
import { skipLine } from './predict.ts';
import { defineCommand } from './command.ts';
import { scanFromArgs } from './data.ts';
import { UsageError } from './errors.ts';
import { choice, grouped, int, str } from './options.ts';
import { DATA_SOURCE } from './shared-options.ts';

/** A tile's label: its class, or for a mixed image its two classes and their shares. */
function tileLabel(batch: Batch, k: number, classes: string[]): string {
  const t = batch.targets;
  if (!t) return classes[batch.labels[k]];
  const c = classes.length;
  const row = [...t.subarray(k * c, (k + 1) * c)].map((p, i) => ({ p, i })).filter((x) => x.p > 0).sort((a, b) => b.p - a.p);
  return row.map((x) => `${classes[x.i]} ${Math.round(100 * x.p)}%`).join(' / ');
}

/** Writes `batch` (images in [0, 1], CHW) as a grid of tiles with their class and file name under them. */
async function writeGrid(batch: Batch, classes: string[], size: number, out: string): Promise<void> {
  const item = 3 * size * size;
  const tiles = batch.labels.map((_, k) => ({
    image: batch.images.subarray(k * item, (k + 1) * item),
    lines: [{ text: printable(tileLabel(batch, k, classes)), bold: true }, { text: printable(basename(batch.paths[k])) }],
  }));
  writeFileAtomic(out, await imageGridPng(tiles, size));
}

export const showBatchCommand = defineCommand({
  name: 'show-batch',
  summary: 'write a labelled grid of (augmented) training images as a PNG',
  synopsis: '--data DIR [options]',
  description: `Writes a grid of --n images from a split as the loader produces them: with --augment (and any
augmentation flag of gpunet train), the training augmentation, drawn as training draws it: with
the same --seed (and --size), the first --n images of training's first epoch; with --n equal to
train's --batch-size, its first batch, mixed as training mixes it (--mixup, --cutmix). Without,
the validation transform (resize + center crop). Each image is labelled with its class (its two
classes and their shares, when mixed) and file name.`,
  options: {
    out: str({ metavar: 'FILE.png', default: 'batch.png', help: 'the PNG to write' }),
    n: int({ min: 1, max: 256, default: 16, help: 'how many images' }),
    size: int({ min: 1, max: 1024, default: 160, help: 'side of each image in pixels' }),
    split: choice(['train', 'valid', 'test'] as const, { default: 'train', help: 'which split to draw from' }),
    ...augmentOptions('none'),
    ...grouped('data', DATA_SOURCE),
  },
  async run(v) {
    const { n, size, split } = v;
    const { root, opts, data } = await scanFromArgs(v);
    const samples = data[split];
    if (samples.length === 0) throw new UsageError(`${root}: the ${split} split is empty`);
    const augment = augmentFrom(v);
    const mix = mixFrom(v);
    // normalised as training normalises (so that erasing fills with the mean colour), shown back in [0, 1]
    const { mean, std } = IMAGENET_NORMALIZATION;
    const loader = new ImageLoader(samples, { size, batchSize: Math.min(n, samples.length), augment, mean, std, shuffle: true, seed: opts.seed ?? 42, workers: 0 });
    let batch: Batch | undefined;
    for await (const b of loader.epoch(0)) {
      batch = b;
      break;
    }
    await loader.close();
    if (!batch) throw new UsageError(`${root}: no image of the ${split} split could be decoded`);
    if (mix) batch = mixBatch(batch, data.classes.length, size, mix, new Rng(mixSeed(opts.seed ?? 42, 0, 0)));
    const plane = size * size;
    const images = batch.images.map((x, i) => x * std[Math.floor(i / plane) % 3] + mean[Math.floor(i / plane) % 3]);
    await writeGrid({ ...batch, images }, data.classes, size, v.out);
    const what = augment || mix ? `augmented (${augmentFlags(augment)}${mix?.mixup ? ` --mixup ${mix.mixup}` : ''}${mix?.cutmix ? ` --cutmix ${mix.cutmix}` : ''}) ` : '';
    console.log(`wrote ${printable(v.out)}: ${batch.labels.length} ${what}${split} images of ${size}x${size} (${printable(data.classes.join(', '))})`);
    for (const f of loader.failed) console.error(skipLine('show-batch', f.path, f.reason));
    return 0;
  },
});
