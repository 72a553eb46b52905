// A generated image classification set for demos and tests: each class is a texture (stripes of
// one orientation, or a checkerboard) with a random phase, period, colour and pixel noise, so a
// small CNN must learn oriented filters to tell them apart, yet the classes are separable.
import { Rng } from '../tensor/index.ts';

export const SYNTHETIC_CLASSES = ['horizontal', 'vertical', 'diagonal', 'checker'] as const;

export interface ImageSet {
  /** [n, 3, size, size], values roughly in [-1, 1] */
  images: Float32Array;
  labels: number[];
  size: number;
  classes: readonly string[];
}

export function syntheticImages(n: number, size: number, rng: Rng, classes = SYNTHETIC_CLASSES.length, noise = 0.3): ImageSet {
  if (classes < 1 || classes > SYNTHETIC_CLASSES.length) throw new Error(`syntheticImages: 1..${SYNTHETIC_CLASSES.length} classes`);
  const images = new Float32Array(n * 3 * size * size);
  const labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const label = i % classes;
    labels.push(label);
    const period = 3 + rng.int(4);
    const phase = rng.int(period);
    const colour = [rng.uniform(0.3, 1), rng.uniform(0.3, 1), rng.uniform(0.3, 1)];
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const u = label === 0 ? y : label === 1 ? x : label === 2 ? x + y : Math.floor(x / 2) + Math.floor(y / 2);
        const on = label === 3 ? u % 2 === 0 : Math.floor((u + phase) / Math.ceil(period / 2)) % 2 === 0;
        for (let c = 0; c < 3; c++) {
          images[((i * 3 + c) * size + y) * size + x] = (on ? colour[c] : -colour[c]) + noise * rng.normal();
        }
      }
    }
  }
  return { images, labels, size, classes: SYNTHETIC_CLASSES.slice(0, classes) };
}
