// Modules in the manner of torch.nn: layers with named parameters and buffers, containers, ResNet.
export { AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, GlobalAvgPool2d, LeakyReLU, Linear, MaxPool2d, ReLU, Sequential } from './layers.ts';
export type { BatchNorm2dOptions, Conv2dConfig, InitOptions, LinearOptions } from './layers.ts';
export { Module, runLayers, type LoadStateDictOptions, type StateDict } from './module.ts';
export { BasicBlock, ResNet, resnet18, resnet34, RESNET_BLOCKS, type ResNetArch, type ResNetOptions } from './resnet.ts';
export { smallCnn, type SmallCnnOptions } from './smallcnn.ts';
export { moduleLayers, type LayerRow, type ModelSplit } from './split.ts';
