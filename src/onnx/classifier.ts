// What a checkpoint carries besides the network: how to preprocess an image for it and what its
// outputs mean. Stored in the ONNX file's metadata_props under the keys of META.
import type { Preprocessing } from '../data/image.ts';
import type { Network } from './network.ts';

export const META = {
  classes: 'gpunet.classes', // JSON array of class names
  size: 'gpunet.input_size',
  mean: 'gpunet.mean', // JSON array
  std: 'gpunet.std', // JSON array
  resize: 'gpunet.resize',
  arch: 'gpunet.arch', // 'resnet18' | 'resnet34' | 'graph'
} as const;

/** A network ready to classify: [N,3,size,size] to logits [N,classes]. */
export interface Classifier {
  model: Network;
  /** class names, index order of the logits (default: '0', '1', ...) */
  classes: string[];
  /** null for a foreign ONNX file whose metadata does not say (the caller must be told via flags) */
  preprocessing: Preprocessing | null;
  /** where it came from, for messages */
  source: string;
  /** the square side the file's graph input declares, when fixed (a foreign export's default size) */
  declaredSize?: number;
}
