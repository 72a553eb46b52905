export { isGradEnabled, keep, noGrad, OpError, recordOp, setPoison, shapeSize, shapeStr, tidy, Tensor, type Shape } from './tensor.ts';
export { type GradNode } from './autograd.ts';
export { Rng } from './random.ts';
export { relError } from './compare.ts';
