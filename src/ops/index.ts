// The engine's ops: each file holds an op family's forward, its gradient rule and its kernels.
export { batchNorm2d, type BatchNormOptions } from './batchnorm.ts';
export { concat, narrow, padAxis, split } from './concat.ts';
export { conv1d, conv2d, type Conv1dOptions, type Conv2dOptions } from './conv2d.ts';
export { defineOp, type KernelLaunch, type Kernels, type OpDefinition, type SavedCall } from './custom.ts';
export { dropout } from './dropout.ts';
export {
  abs, add, clip, div, elementwise, ELEMENTWISE, erf, exp, gelu, hardSigmoid, hardSwish, leakyRelu, log, maximum, minimum, mul, neg, pow,
  reciprocal, relu, scale, sigmoid, silu, sqrt, sub, tanh, where, type ElementwiseName, type Operand,
} from './elementwise.ts';
export { gradcheck, gradcheckSpec, gradcheckSpecs, type ErrorStats, type GradcheckOptions, type GradcheckResult, type GradcheckSpec } from './gradcheck.ts';
export { layerNorm } from './layernorm.ts';
export { expand, gather, pad, slice, sliceRanges, transpose, type PadMode, type SliceRange, type SliceSpec } from './layout.ts';
export { gemm, linear, matmul } from './matmul.ts';
export { avgPool1d, avgPool2d, globalAvgPool2d, globalMaxPool2d, maxPool1d, maxPool2d, type AvgPool2dOptions, type MaxPool2dOptions, type Pool1dOptions, type Pool2dOptions } from './pool.ts';
export { max, mean, sum, type ReduceOptions } from './reduce.ts';
export { crossEntropy, logSoftmax, softmax, softmaxCrossEntropy, type CrossEntropyOptions } from './softmax.ts';
import './methods.ts'; // Tensor.prototype.add, .mul, .matmul, .sum, ...
