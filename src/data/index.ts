// Data: image folders and their splits, decoding and augmentation, the worker-thread loader.
export { augmentImage, DEFAULT_AUGMENT, type AugmentOptions, type FillMode } from './augment.ts';
export { type Batch, type DataSplit, type Sample, type SkippedFile, trainingBatchCount } from './dataset.ts';
export { DataError, describeSource, scanDataset, type SourceOptions } from './folder.ts';
export { IMAGENET_NORMALIZATION, ImageError, isImageFile, listImages, loadImage, type Preprocessing, type ResizeMode } from './image.ts';
export { ImageLoader, type LoaderOptions } from './loader.ts';
export { syntheticImages, SYNTHETIC_CLASSES, type ImageSet } from './synthetic.ts';
export { FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, FASHION_MNIST_NORMALIZATION, loadFashionMnist, readIdx, type FashionMnistOptions, type MnistSet } from './idx.ts';
