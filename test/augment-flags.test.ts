// The augmentation flags of train, lr-find and show-batch: presets and overrides, the flags that
// describe an augmentation (round trip), the Keras and fastai names in the help, and show-batch
// drawing exactly the images (and mixes) of training's first batch.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { augmentFlags, augmentFrom, augmentOptions } from '../src/cli/augment-options.ts';
import { parseOptions } from '../src/cli/options.ts';
import { showBatchCommand } from '../src/cli/show-batch.ts';
import { trainCommand } from '../src/cli/train.ts';
import { DEFAULT_AUGMENT } from '../src/data/augment.ts';
import { scanDataset } from '../src/data/folder.ts';
import { mixBatch, mixSeed } from '../src/data/mix.ts';
import { IMAGENET_NORMALIZATION } from '../src/data/image.ts';
import { Rng } from '../src/tensor/index.ts';
import { imageData } from '../src/train/setup.ts';

const flags = (preset: 'fastai' | 'none', ...args: string[]) => augmentFrom(parseOptions('t', augmentOptions(preset), args).values);

describe('augmentation flags', () => {
  it('start from the --augment preset; each flag overrides its part; nothing left is no augmentation', () => {
    expect(flags('fastai')).toEqual(DEFAULT_AUGMENT);
    expect(flags('none')).toBeNull();
    expect(flags('fastai', '--augment', 'none')).toBeNull();
    expect(flags('none', '--augment', 'flip')).toEqual({ flip: true });
    expect(flags('none', '--rotate', '15', '--flip', 'v', '--fill', 'nearest')).toEqual({ rotate: 15, flipVertical: true, fill: 'nearest' });
    expect(flags('fastai', '--rotate', '0', '--flip', 'none', '--crop-scale', '1,1', '--brightness', '0')).toEqual({ zoom: 0.1, fill: 'reflect', colorJitter: { contrast: 0.2 } });
    expect(flags('none', '--zoom', '0.8,1.2', '--shift', '0.1', '--shear', '5', '--hue', '0.1', '--saturation', '0.3', '--random-erasing', '0.25')).toEqual({
      zoom: [0.8, 1.2], shift: 0.1, shear: 5, colorJitter: { saturation: 0.3, hue: 0.1 }, randomErasing: 0.25,
    });
    expect(() => flags('none', '--hue', '0.7')).toThrow("--hue must be a number in [0, 0.5], got '0.7'");
    expect(() => flags('none', '--flip', 'x')).toThrow("--flip must be one of h, v, hv, none, got 'x'");
  });

  it('augmentFlags names the flags that give an augmentation back', () => {
    expect(augmentFlags(DEFAULT_AUGMENT)).toBe('--crop-scale 0.35,1 --flip h --rotate 10 --zoom 0.9,1.1 --fill reflect --brightness 0.2 --contrast 0.2');
    const given = ['--crop-scale', '0.5,1', '--flip', 'hv', '--rotate', '20', '--zoom', '0.8,1.2', '--shift', '0.1', '--shear', '10', '--fill', 'constant', '--brightness', '0.3', '--contrast', '0.1', '--saturation', '0.4', '--hue', '0.05', '--random-erasing', '0.5'];
    expect(augmentFlags(flags('none', ...given))).toBe(given.join(' '));
    expect(augmentFlags(flags('none', ...augmentFlags(DEFAULT_AUGMENT).split(' ')))).toBe(augmentFlags(DEFAULT_AUGMENT));
  });

  it("train --help lists each with Keras' and fastai's names", () => {
    for (const [flag, names] of [
      ['--rotate DEG', ['rotation_range', 'max_rotate']],
      ['--zoom LO,HI', ['zoom_range', 'max_zoom']],
      ['--shift F', ['width_shift_range', 'height_shift_range']],
      ['--shear DEG', ['shear_range']],
      ['--flip h|v|hv|none', ['horizontal_flip', 'vertical_flip', 'do_flip', 'flip_vert']],
      ['--fill constant|nearest|reflect', ['fill_mode', 'pad_mode']],
      ['--brightness F', ['brightness_range', 'max_lighting']],
      ['--hue F', ['ColorJitter hue']],
      ['--random-erasing P', ['RandomErasing']],
      ['--mixup A', ['MixUp', 'mixup_alpha']],
      ['--cutmix A', ['CutMix', 'cutmix_alpha']],
    ] as const) {
      const start = trainCommand.usage.indexOf(`  ${flag}`);
      expect(start, flag).toBeGreaterThan(0);
      const entry = trainCommand.usage.slice(start, trainCommand.usage.indexOf('\n  --', start + 3)).replace(/\s+/g, ' ');
      for (const n of names) expect(entry, flag).toContain(n);
    }
  });
});

describe('show-batch', () => {
  let root: string;
  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'gpunet-augment-flags-'));
    const rng = new Rng(2);
    for (const cls of ['a', 'b']) {
      mkdirSync(join(root, cls));
      for (let i = 0; i < 4; i++) {
        const px = Buffer.from(Uint8Array.from({ length: 30 * 26 * 3 }, () => rng.int(256)));
        await sharp(px, { raw: { width: 30, height: 26, channels: 3 } }).png().toFile(join(root, cls, `${i}.png`));
      }
    }
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("draws exactly training's first batch, augmented and mixed as training does it", async () => {
    const aug = ['--augment', '--rotate', '25', '--hue', '0.1', '--random-erasing', '0.5', '--mixup', '0.4'];
    const out = join(root, 'batch.png');
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    try {
      expect(await showBatchCommand.run(['--data', root, '--valid-pct', '0', '--seed', '5', '--n', '4', '--size', '24', '--out', out, ...aug])).toBe(0);
      expect(log.mock.calls[0][0]).toMatch(/^wrote .*batch\.png: 4 augmented \(--crop-scale 0\.35,1 --flip h --rotate 25 .*--hue 0\.1 --random-erasing 0\.5 --mixup 0\.4\) train images of 24x24/);
    } finally {
      log.mockRestore();
    }
    // training's first batch of 4 at 24 px with the same seed and flags (prepareRun's loaders)
    const split = await scanDataset(root, { validPct: 0, seed: 5 });
    const v = parseOptions('train', trainCommand.options, ['--data', root, ...aug]).values as Parameters<typeof augmentFrom>[0];
    const { mean, std } = IMAGENET_NORMALIZATION;
    const { data, close } = imageData(split.train, split.valid, { classes: split.classes, size: 24, batchSize: 4, augment: augmentFrom(v), mean, std, seed: 5, workers: 0 });
    let first;
    for await (const b of data.train(0, 5, 0)) {
      first = b;
      break;
    }
    await close();
    const mixed = mixBatch(first!, 2, 24, { mixup: 0.4 }, new Rng(mixSeed(5, 0, 0)));
    // tile k of the 2 x 2 grid (6 px gaps, 30 px label strips) against the batch, shown in [0, 1]
    for (let k = 0; k < 4; k++) {
      const left = 6 + (k % 2) * 30;
      const top = 6 + Math.floor(k / 2) * 60;
      const { data: tile } = await sharp(out).extract({ left, top, width: 24, height: 24 }).raw().toBuffer({ resolveWithObject: true });
      let worst = 0;
      for (let p = 0; p < 576; p++) {
        for (let c = 0; c < 3; c++) {
          const x = mixed.images[k * 1728 + c * 576 + p] * std[c] + mean[c];
          worst = Math.max(worst, Math.abs(tile[3 * p + c] - Math.round(255 * Math.min(1, Math.max(0, x)))));
        }
      }
      expect(worst, `tile ${k}`).toBeLessThanOrEqual(1);
    }
  });
});
