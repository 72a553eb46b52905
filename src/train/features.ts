// Feature caching for a backbone frozen for the whole run (Keras' trainable=False, batchnorm in
// eval mode too): the backbone is then a fixed function, so each image's features are computed
// once, without augmentation, and every epoch trains only the head on them — an epoch costs a few
// small matrix products instead of a pass through the network.
import { type Batch, trainingBatchCount } from '../data/dataset.ts';
import { noGrad, type Rng, Tensor, tidy } from '../tensor/index.ts';
import { batches } from './classifier.ts';
import type { ModelSplit } from '../nn/split.ts';

export interface FeatureSet {
  /** [n, ...shape] */
  features: Float32Array;
  labels: number[];
  /** one image's features: [F] (pooled), or [C, H, W] for a head that starts with a convolution */
  shape: number[];
  /** elements per image */
  dim: number;
}

/** The backbone's features of every image of `data` (in eval mode, no tape). */
export async function computeFeatures(
  split: ModelSplit,
  data: Batch[] | AsyncIterable<Batch>,
  imageShape: readonly number[],
  onBatch?: (images: number) => void,
): Promise<FeatureSet> {
  split.model.eval();
  const parts: Float32Array[] = [];
  const labels: number[] = [];
  let shape: number[] = [];
  for await (const b of data) {
    const f = await noGrad(() =>
      tidy(() => {
        const y = split.features(Tensor.from(b.images, [b.labels.length, ...imageShape]));
        shape = y.shape.slice(1);
        return y.toArray();
      }),
    );
    parts.push(f);
    labels.push(...b.labels);
    onBatch?.(b.labels.length);
  }
  const dim = shape.reduce((a, b) => a * b, 1);
  const features = new Float32Array(labels.length * dim);
  let offset = 0;
  for (const p of parts) {
    features.set(p, offset);
    offset += p.length;
  }
  return { features, labels, shape, dim };
}

/** Batches of cached features (in an order of indices, or shuffled by an rng), as the head's input. */
export function featureBatches(set: FeatureSet, batchSize: number, orderOrRng?: Rng | readonly number[]): Batch[] {
  return batches(set.features, set.labels, batchSize, orderOrRng);
}

/** An epoch's training batches of cached features: featureBatches less a last batch of one
 *  (trainingBatchCount, as the image loader serves them). */
export function trainingFeatureBatches(set: FeatureSet, batchSize: number, orderOrRng: Rng | readonly number[]): Batch[] {
  return featureBatches(set, batchSize, orderOrRng).slice(0, trainingBatchCount(set.labels.length, batchSize));
}
