// The one interface of every classifier network gpunet loads, fine-tunes and writes back: a ResNet
// built here (src/nn/resnet.ts, its ONNX methods attached in src/onnx/resnet.ts), a generic ONNX
// graph (GraphModule) and a graph's backbone with a new head (TransferModel). What differs between
// them is behind these methods, so loading, training, saving and summaries never ask which one
// they hold.
import type { Module } from '../nn/module.ts';
import type { FeatureMapSplit, LayerRow, ModelSplit } from '../nn/split.ts';
import type { Rng } from '../tensor/index.ts';
import type { OnnxModel } from './ir.ts';

export interface Network extends Module {
  /** the logits per image, when the network says (a graph with a symbolic last dimension may not) */
  readonly numClasses: number | undefined;
  /** backbone and head, with the layer groups of discriminative learning rates */
  split(): ModelSplit;
  /**
   * The network with a fresh `classes`-way head for transfer learning: a ResNet's fc is replaced,
   * a graph is cut before its last weighted layer (Keras' include_top=False). The network is
   * consumed: use only what this returns. `size` is the input side the new head's inputs are
   * planned for.
   */
  withNewHead(classes: number, opts: { rng: Rng; size: number }): Network;
  /** the network with its current weights as an ONNX model taking [batch, 3, size, size] (size
   *  undefined: as declared, or symbolic) */
  toOnnx(opts: { size?: number; metadata: Record<string, string> }): Promise<OnnxModel>;
  /** its layers for a summary at input [1, 3, size, size] (nothing runs on the device) */
  layers(size: number): LayerRow[];
  /** the network cut at its last feature map (Grad-CAM); throws, naming the model, if it has none */
  featureMaps(): FeatureMapSplit;
}
