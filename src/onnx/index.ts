// ONNX in and out: classifier checkpoints (load, save), and the model files themselves.
export { classifierMetadata, loadClassifier as load, saveClassifier as save, type LoadOptions } from './load.ts';
export { META, type Classifier } from './classifier.ts';
// (at home in src/data, where images are prepared; exported here too, beside the checkpoints that record them)
export { IMAGENET_NORMALIZATION, type Preprocessing, type ResizeMode } from '../data/image.ts';
export { GraphModule, UnsupportedError, type GraphModuleOptions } from './graph.ts';
export { ONNX_OPS, SUPPORTED_OPS, type OnnxOp } from './ops/index.ts';
export { OnnxError, parseOnnx, readOnnx } from './read.ts';
export { encodeOnnx, saveOnnx } from './write.ts';
export { exportResNet, importResNet } from './resnet.ts';
export { TransferModel } from './transfer.ts';
export type { Network } from './network.ts';
export type { OnnxGraph, OnnxModel, OnnxNode, OnnxTensor } from './ir.ts';
