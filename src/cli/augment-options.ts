// The training augmentation as flags, one per transform, with the names Keras' ImageDataGenerator
// and fastai's aug_transforms give them; --augment is the preset the flags start from. train,
// lr-find and show-batch share them, so show-batch shows what training sees.
import { type AugmentOptions, DEFAULT_AUGMENT } from '../data/augment.ts';
import type { MixOptions } from '../data/mix.ts';
import { choice, formatNumber, grouped, num, numbers, type Values } from './options.ts';

export const AUGMENT_PRESETS: Record<'fastai' | 'flip' | 'none', AugmentOptions | null> = { fastai: DEFAULT_AUGMENT, flip: { flip: true }, none: null };

/** The flags that reproduce `aug` (the presets' help, and the line training prints). */
export function augmentFlags(aug: AugmentOptions | null): string {
  if (!aug) return 'none';
  const f = formatNumber;
  const j = aug.colorJitter ?? {};
  const zoom = typeof aug.zoom === 'number' ? [1 - aug.zoom, 1 + aug.zoom] : aug.zoom;
  const parts = [
    aug.randomResizedCrop && `--crop-scale ${aug.randomResizedCrop.scale.map(f).join(',')}`,
    (aug.flip || aug.flipVertical) && `--flip ${aug.flip ? 'h' : ''}${aug.flipVertical ? 'v' : ''}`,
    aug.rotate && `--rotate ${f(aug.rotate)}`,
    zoom && (zoom[0] !== 1 || zoom[1] !== 1) && `--zoom ${zoom.map((z) => f(Number(z.toFixed(6)))).join(',')}`,
    aug.shift && `--shift ${f(aug.shift)}`,
    aug.shear && `--shear ${f(aug.shear)}`,
    aug.fill && `--fill ${aug.fill}`,
    j.brightness && `--brightness ${f(j.brightness)}`,
    j.contrast && `--contrast ${f(j.contrast)}`,
    j.saturation && `--saturation ${f(j.saturation)}`,
    j.hue && `--hue ${f(j.hue)}`,
    aug.randomErasing && `--random-erasing ${f(aug.randomErasing)}`,
  ].filter(Boolean);
  return parts.length ? parts.join(' ') : 'none';
}

const fromPreset = "the --augment preset's";

/** The augmentation flags, with --augment's default (fastai for training, none for show-batch). */
export function augmentOptions(preset: 'fastai' | 'none') {
  return grouped('augmentation (Keras ImageDataGenerator / fastai aug_transforms names in brackets)', {
    augment: choice(['fastai', 'flip', 'none'] as const, {
      default: preset,
      implicit: 'fastai',
      help: `the preset the flags below start from: fastai (${augmentFlags(AUGMENT_PRESETS.fastai)}, roughly fastai's aug_transforms), flip (--flip h), none`,
    }),
    cropScale: numbers({ count: 2, above: 0, max: 1, metavar: 'LO,HI', defaultText: fromPreset, help: "random-resized crop: the area fraction of the window (torchvision's RandomResizedCrop scale; 1,1: the centre square)" }),
    flip: choice(['h', 'v', 'hv', 'none'] as const, { defaultText: fromPreset, help: 'random flips, each with probability 1/2 [horizontal_flip, vertical_flip; do_flip, flip_vert]' }),
    rotate: num({ min: 0, max: 180, metavar: 'DEG', defaultText: fromPreset, help: 'rotation uniform in +-DEG degrees [rotation_range; max_rotate]' }),
    zoom: numbers({
      count: [1, 2],
      above: 0,
      max: 10,
      metavar: 'LO,HI',
      defaultText: fromPreset,
      help: "scale of the sampled view uniform in [LO, HI], < 1 zooming in; one value Z means 1-Z,1+Z [zoom_range; fastai's max_zoom=1.1 is --zoom 0.91,1]",
    }),
    shift: num({ min: 0, max: 1, metavar: 'F', defaultText: fromPreset, help: 'translation uniform in +-F of the side, per axis [width_shift_range, height_shift_range]' }),
    shear: num({ min: 0, max: 80, metavar: 'DEG', defaultText: fromPreset, help: 'shear angle uniform in +-DEG degrees [shear_range]' }),
    fill: choice(['constant', 'nearest', 'reflect'] as const, { defaultText: fromPreset, help: "pixels from outside the image: black, the edge's, mirrored [fill_mode; pad_mode]" }),
    brightness: num({ min: 0, max: 1, defaultText: fromPreset, help: 'brightness factor uniform in [1-F, 1+F] [brightness_range; max_lighting; ColorJitter]' }),
    contrast: num({ min: 0, max: 1, defaultText: fromPreset, help: 'contrast factor uniform in [1-F, 1+F] [max_lighting; ColorJitter]' }),
    saturation: num({ min: 0, max: 1, defaultText: fromPreset, help: 'saturation factor uniform in [1-F, 1+F] [ColorJitter]' }),
    hue: num({ min: 0, max: 0.5, defaultText: fromPreset, help: 'hue turned by up to +-F of the colour wheel [ColorJitter hue]' }),
    randomErasing: num({ min: 0, max: 1, metavar: 'P', defaultText: fromPreset, help: "with probability P, a random rectangle (2-33% of the image) set to the mean colour [timm's and Ultralytics' erasing; torchvision RandomErasing]" }),
    mixup: num({ above: 0, max: 100, metavar: 'A', help: 'mix each batch with a shuffled copy of itself, images and labels, by lam ~ Beta(A, A); the loss trains on the soft targets [fastai MixUp, timm mixup_alpha; 0.2-0.4 usual]' }),
    cutmix: num({ above: 0, max: 100, metavar: 'A', help: "paste a box of a shuffled copy into each image, labels mixed by the box's share, lam ~ Beta(A, A); with --mixup, one of the two per batch [fastai CutMix, timm cutmix_alpha; 1 usual]" }),
  });
}

type AugmentValues = Values<ReturnType<typeof augmentOptions>>;

/** The augmentation the flags describe: the preset, each given flag overriding its part; null: none. */
export function augmentFrom(v: AugmentValues): AugmentOptions | null {
  const base = AUGMENT_PRESETS[v.augment];
  const a: AugmentOptions = { ...(base ?? {}), colorJitter: { ...(base?.colorJitter ?? {}) } };
  if (v.cropScale) a.randomResizedCrop = v.cropScale[0] === 1 && v.cropScale[1] === 1 ? undefined : { scale: v.cropScale as [number, number], ratio: a.randomResizedCrop?.ratio ?? [3 / 4, 4 / 3] };
  if (v.flip) [a.flip, a.flipVertical] = [v.flip.includes('h'), v.flip.includes('v')];
  if (v.rotate !== undefined) a.rotate = v.rotate;
  if (v.zoom) a.zoom = v.zoom.length === 1 ? v.zoom[0] : (v.zoom as [number, number]);
  if (v.shift !== undefined) a.shift = v.shift;
  if (v.shear !== undefined) a.shear = v.shear;
  if (v.fill) a.fill = v.fill;
  for (const k of ['brightness', 'contrast', 'saturation', 'hue'] as const) if (v[k] !== undefined) a.colorJitter![k] = v[k];
  if (v.randomErasing !== undefined) a.randomErasing = v.randomErasing;
  // a transform set to nothing is no transform; no transform at all is the validation transform
  const clean = JSON.parse(JSON.stringify(a, (_, x) => (x === 0 || x === false ? undefined : x))) as AugmentOptions;
  if (clean.colorJitter && Object.keys(clean.colorJitter).length === 0) delete clean.colorJitter;
  return augmentFlags(clean) === 'none' ? null : clean;
}

/** --mixup and --cutmix, or undefined. */
export function mixFrom(v: AugmentValues): MixOptions | undefined {
  return v.mixup || v.cutmix ? { mixup: v.mixup, cutmix: v.cutmix } : undefined;
}
