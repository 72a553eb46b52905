export { isGradEnabled, keep, noGrad, observeOps, type OpObserver, OpError, recordOp, setPoison, shapeSize, shapeStr, tidy, Tensor, type Shape } from './tensor.ts';
export { type GradNode } from './autograd.ts';
export { defaultRng, manualSeed, Rng } from './random.ts';
export { full, ones, rand, randn, tensor, zeros, type FromDataOptions, type NestedArray, type RandomOptions, type TensorOptions } from './create.ts';
export { relError } from './compare.ts';
