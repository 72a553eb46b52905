// What a training run starts from, built from a description: the model to fine-tune (a fresh
// ResNet, or a pretrained ONNX classifier given a new n-class head), the image loaders the
// trainer reads (the training images augmented and shuffled, or drawn class-balanced; the
// validation images and the plain training images, for feature caching, in a fixed order without
// augmentation), and the class weights against imbalance.
import type { AugmentOptions } from '../data/augment.ts';
import type { Sample } from '../data/dataset.ts';
import { ImageLoader, type LoaderOptions } from '../data/loader.ts';
import { balancedWeights } from '../data/sampler.ts';
import { ResNet, type ResNetArch } from '../nn/resnet.ts';
import type { Preprocessing } from '../data/image.ts';
import { DEFAULT_SIZE, defaultSize, loadClassifier } from '../onnx/load.ts';
import type { Network } from '../onnx/network.ts';
import { Rng } from '../tensor/index.ts';
import type { TrainData } from './trainer.ts';

export interface ModelRequest {
  /** the number of classes of the new head */
  classes: number;
  /** an ONNX classifier to start from; undefined: a fresh `arch` */
  weights?: string;
  arch: ResNetArch;
  /** the input side (a generic graph's features are probed at it); default: defaultSize() (the
   *  checkpoint's, else its graph input's fixed side, else 224) */
  size?: number;
  seed: number;
}

export interface BuiltModel {
  model: Network;
  /** the preprocessing the pretrained checkpoint records (null: none recorded, or no checkpoint) */
  base: Preprocessing | null;
  /** the input side the model was built for */
  size: number;
}

/**
 * A model with a fresh `classes`-way head: a new ResNet, or the classifier in `weights` with a new
 * head (Network.withNewHead: a ResNet gets a new fc; any other graph is cut before its last
 * weighted layer, see src/onnx/transfer.ts).
 */
export async function buildModel(r: ModelRequest): Promise<BuiltModel> {
  if (r.weights === undefined) return { model: new ResNet(r.arch, { numClasses: r.classes, rng: new Rng(r.seed) }), base: null, size: r.size ?? DEFAULT_SIZE };
  const c = await loadClassifier(r.weights, { size: r.size });
  const size = r.size ?? defaultSize(c);
  return { model: c.model.withNewHead(r.classes, { rng: new Rng(r.seed), size }), base: c.preprocessing, size };
}

/** The loader settings of a run (the training loader augments and shuffles; the others do not). */
export interface ImageDataOptions extends Pick<LoaderOptions, 'size' | 'batchSize' | 'augment' | 'mean' | 'std' | 'seed' | 'workers' | 'onSkip'> {
  classes: readonly string[];
  /** draw the training samples so that every class is equally likely (WeightedRandomSampler) */
  balanced?: boolean;
}

/** The trainer's view of image files: epoch-addressable training batches, validation batches. */
export function imageData(train: Sample[], valid: Sample[], o: ImageDataOptions): { data: TrainData; close: () => Promise<void> } {
  const { size, batchSize, mean, std, seed, workers, onSkip } = o;
  const loader = (samples: Sample[], augment: AugmentOptions | null, training: boolean, sampleWeights?: number[]) =>
    new ImageLoader(samples, { size, batchSize, augment, mean, std, shuffle: training, training, seed, workers, onSkip, sampleWeights });
  const trainLoader = loader(train, o.augment, true, o.balanced ? balancedWeights(train.map((x) => x.label)) : undefined);
  const validLoader = loader(valid, null, false);
  const plainLoader = loader(train, null, false); // (every image's features: cached epochs leave out their own last one)
  const data: TrainData = {
    classes: o.classes,
    imageShape: [3, size, size],
    trainSize: train.length,
    validSize: valid.length,
    batchSize,
    async *train(epoch, _seed, from) {
      let i = 0;
      // the loader has no random access: a resumed epoch decodes its first batches again
      for await (const b of trainLoader.epoch(epoch)) if (i++ >= from) yield b;
    },
    valid: () => validLoader.epoch(0),
    trainPlain: () => plainLoader.epoch(0),
    trainOrder: (epoch) => trainLoader.order(epoch),
  };
  return { data, close: async () => void (await Promise.all([trainLoader.close(), validLoader.close(), plainLoader.close()])) };
}

/** Inverse-frequency class weights, n / (classes x n_c) (sklearn's 'balanced', for torch's
 *  weight=): a class with half the average count weighs 2. Needs every class present. */
export function inverseFrequencyWeights(labels: readonly number[], classes: number): number[] {
  const counts = new Array<number>(classes).fill(0);
  for (const l of labels) counts[l]++;
  return counts.map((c) => (c > 0 ? labels.length / (classes * c) : 0));
}
