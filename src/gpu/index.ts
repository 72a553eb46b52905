export { Gpu, GpuError, getGpu, grid, init, initGpu, stridedWorkgroups, type BufferRange, type DispatchArgs, type InitOptions } from './gpu.ts';
export { AdapterSelectError, isCpuAdapter, listAdapters, NoAdapterError, type AdapterSummary } from './device.ts';
export { type Access, type Kernel, type KernelSpec, packParams, paramFields, type ParamField, type ParamType, shaderSource, SHADER_DIR } from './kernels.ts';
export { BufferPool, sizeClass, type PoolStats } from './pool.ts';
export { type ProfileEntry } from './profiler.ts';
