export { GpuError, GpuLimitError, isGpuLimit } from './errors.ts';
export { Gpu, getGpu, grid, init, initGpu, stridedWorkgroups, type BufferRange, type DispatchArgs, type InitOptions, type Profile } from './gpu.ts';
export { AdapterSelectError, isCpuAdapter, listAdapters, NoAdapterError, webgpuInstance, type AdapterSummary } from './device.ts';
export { type Access, type Kernel, type KernelSpec, packParams, paramFields, type ParamField, type ParamType, shaderSource, SHADER_DIR } from './kernels.ts';
export { BufferPool, sizeClass, type PoolStats } from './pool.ts';
export { type DispatchInfo, type DispatchWork, type ProfileEvent } from './profiler.ts';
export { quietly, threadCpuMs, workerCpuMs } from './wait.ts';
export { measureCeilings, type Ceilings } from './ceilings.ts';
export { chooseFastest, timestampTimer, tuneCache, TuneCache, workerCpuTimer, type TuneChoice, type TuneConfig, type TuneTask, type TuneTimer } from './tuning.ts';
