// Optimizers, each following its torch.optim counterpart's update rule exactly.
export { type Optimizer, type OptimizerSettings, type OptimizerState } from './optimizer.ts';
export { SGD, type ParamGroup, type SGDOptions } from './sgd.ts';
export { Adam, AdamW, type AdamOptions, type AdamParamGroup } from './adam.ts';
