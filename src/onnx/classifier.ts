// What a checkpoint carries besides the network: how to preprocess an image for it and what its
// outputs mean. Stored in the ONNX file's metadata_props under the keys of META.
import type { Network } from './network.ts';

export type ResizeMode = 'crop' | 'fill';

export interface Preprocessing {
  /** square input side in pixels */
  size: number;
  /** per-channel mean and std applied after scaling pixels to [0, 1] (RGB order) */
  mean: [number, number, number];
  std: [number, number, number];
  /** 'crop': resize the shorter side to size/0.875 then center-crop (torchvision's eval transform);
   *  'fill': resize to size x size, ignoring the aspect ratio */
  resize: ResizeMode;
}

export const IMAGENET_NORMALIZATION = { mean: [0.485, 0.456, 0.406] as [number, number, number], std: [0.229, 0.224, 0.225] as [number, number, number] };

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
