// Feature caching for a backbone frozen for the whole run (Keras' trainable=False, batchnorm in
// eval mode too): the backbone is then a fixed function, so each image's features are computed
// once, without augmentation, and every epoch trains only the head on them — an epoch costs a few
// small matrix products instead of a pass through the network.
import type { Batch } from '../data/dataset.ts';
import { noGrad, type Rng, Tensor, tidy } from '../tensor/index.ts';
import { batches } from './classifier.ts';
import type { ModelSplit } from './transfer.ts';

export interface FeatureSet {
  /** [n, dim] */
  features: Float32Array;
  labels: number[];
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
  let dim = 0;
  for await (const b of data) {
    const f = await noGrad(() =>
      tidy(() => {
        const y = split.features(Tensor.from(b.images, [b.labels.length, ...imageShape]));
        dim = y.size / b.labels.length;
        return y.toArray();
      }),
    );
    parts.push(f);
    labels.push(...b.labels);
    onBatch?.(b.labels.length);
  }
  const features = new Float32Array(labels.length * dim);
  let offset = 0;
  for (const p of parts) {
    features.set(p, offset);
    offset += p.length;
  }
  return { features, labels, dim };
}

/** Batches of cached features (in an order of indices, or shuffled by an rng), as the head's input. */
export function featureBatches(set: FeatureSet, batchSize: number, orderOrRng?: Rng | readonly number[]): Batch[] {
  return batches(set.features, set.labels, batchSize, orderOrRng);
}
