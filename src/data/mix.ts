// Batch-level augmentation that mixes images and their labels (the loss then trains on soft
// targets, probabilities per class):
//   mixup   x = lam x + (1 - lam) x[perm],  y = lam y + (1 - lam) y[perm],  lam ~ Beta(a, a)
//           (Zhang et al.; fastai's MixUp, timm's mixup_alpha)
//   cutmix  a box of area (1 - lam) of every image replaced by the same box of x[perm], lam then
//           set to the box's exact share, y mixed as above (Yun et al.; fastai's CutMix, timm's
//           cutmix_alpha; the box centre uniform over the image, clipped at its edges, as timm's rand_bbox)
// With both, each batch takes one of the two at even odds (timm's switch_prob 0.5). perm is a
// seeded shuffle of the batch; every draw comes from the Rng given, so a batch mixes the same way
// wherever and whenever it is computed (exact resume).
import type { Rng } from '../tensor/random.ts';
import type { Batch } from './dataset.ts';

export interface MixOptions {
  /** mixup's Beta alpha (0 or undefined: off) */
  mixup?: number;
  /** cutmix's Beta alpha (0 or undefined: off) */
  cutmix?: number;
}

/** Gamma(a, 1), Marsaglia and Tsang's method (a < 1 through Gamma(a + 1) u^(1/a)). */
function gamma(a: number, rng: Rng): number {
  if (a < 1) return gamma(a + 1, rng) * (1 - rng.next()) ** (1 / a);
  const d = a - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = rng.normal();
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = 1 - rng.next();
    if (Math.log(u) < 0.5 * x * x + d - d * v + d * Math.log(v)) return d * v;
  }
}

/** Beta(a, b) as Gamma(a) / (Gamma(a) + Gamma(b)). */
export function betaSample(a: number, b: number, rng: Rng): number {
  const x = gamma(a, rng);
  const y = gamma(b, rng);
  return x / (x + y);
}

/** The soft targets [B, C] of a batch mixed with its permutation by `lam`. */
function mixTargets(labels: readonly number[], perm: readonly number[], lam: number, classes: number): Float32Array {
  const t = new Float32Array(labels.length * classes);
  labels.forEach((y, i) => {
    t[i * classes + y] += lam;
    t[i * classes + labels[perm[i]]] += 1 - lam;
  });
  return t;
}

/**
 * `b` mixed (mixup or cutmix, see the file comment) with soft targets; images [B, 3, H, W] with
 * H = W = `size`. The batch itself is not changed.
 */
export function mixBatch(b: Batch, classes: number, size: number, o: MixOptions, rng: Rng): Batch {
  const n = b.labels.length;
  const kinds = [...(o.mixup ? ['mixup' as const] : []), ...(o.cutmix ? ['cutmix' as const] : [])];
  if (kinds.length === 0 || n < 2) return b;
  const kind = kinds.length === 2 ? (rng.next() < 0.5 ? 'mixup' : 'cutmix') : kinds[0];
  const alpha = kind === 'mixup' ? o.mixup! : o.cutmix!;
  let lam = betaSample(alpha, alpha, rng);
  const perm = rng.shuffle([...Array(n).keys()]);
  const item = 3 * size * size;
  const x = b.images;
  const images = new Float32Array(x.length);
  if (kind === 'mixup') {
    for (let i = 0; i < n; i++) {
      const [a, p] = [i * item, perm[i] * item];
      for (let k = 0; k < item; k++) images[a + k] = lam * x[a + k] + (1 - lam) * x[p + k];
    }
  } else {
    const cut = Math.sqrt(1 - lam);
    const [ch, cw] = [Math.round(size * cut), Math.round(size * cut)];
    const [cy, cx] = [rng.int(size), rng.int(size)];
    const [y0, y1] = [Math.max(0, cy - (ch >> 1)), Math.min(size, cy + (ch >> 1))];
    const [x0, x1] = [Math.max(0, cx - (cw >> 1)), Math.min(size, cx + (cw >> 1))];
    images.set(x);
    const plane = size * size;
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < 3; c++) {
        for (let y = y0; y < y1; y++) {
          const row = c * plane + y * size;
          images.set(x.subarray(perm[i] * item + row + x0, perm[i] * item + row + x1), i * item + row + x0);
        }
      }
    }
    lam = 1 - ((y1 - y0) * (x1 - x0)) / plane; // the box's exact share
  }
  return { ...b, images, targets: mixTargets(b.labels, perm, lam, classes) };
}

/** The seed of batch `index` of epoch `epoch`'s mixing (a hash of the run's seed, the epoch and the batch). */
export function mixSeed(seed: number, epoch: number, index: number): number {
  let h = Math.imul((seed ^ 0x27d4eb2f) >>> 0, 0x165667b1) ^ Math.imul(epoch + 1, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca77);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  return (h ^ (h >>> 13)) >>> 0;
}
