/// <reference types="@webgpu/types" preserve="true" />
// gpunet's public API, what `import * as gpunet from 'gpunet'` gives; names follow torch's.
//
//   await gpunet.init();                                   // open the GPU (an adapter, or lavapipe)
//   const x = gpunet.tensor([[1, 2], [3, 4]], { requiresGrad: true });
//   const y = x.mul(x).sum();                              // recorded on the tape
//   y.backward();                                          // x.grad = 2x
//   console.log(await x.grad!.toArray());
//
// Tensors live on the GPU: values come back with `await t.toArray()` / `await t.item()`, and memory
// is given back with `t.release()` or, for everything made inside it, `gpunet.tidy(() => ...)`.
export { init, type InitOptions } from './gpu/index.ts';
export { AdapterSelectError, GpuError, listAdapters, NoAdapterError, type AdapterSummary } from './gpu/index.ts';
export { full, keep, manualSeed, noGrad, ones, OpError, rand, randn, relError, Rng, tensor, Tensor, tidy, zeros } from './tensor/index.ts';
export type { FromDataOptions, NestedArray, RandomOptions, Shape, TensorOptions } from './tensor/index.ts';
export * as ops from './ops/index.ts';
export { defineOp, gradcheck, type GradcheckResult, type GradcheckSpec, type Kernels } from './ops/index.ts';
export * as nn from './nn/index.ts';
export * as optim from './optim/index.ts';
export * as onnx from './onnx/index.ts';
export * as data from './data/index.ts';
export * as train from './train/index.ts';
