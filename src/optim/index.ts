// Optimizers, each following its torch.optim counterpart's update rule exactly.
export { SGD, type ParamGroup, type SGDOptions, type SGDState } from './sgd.ts';
