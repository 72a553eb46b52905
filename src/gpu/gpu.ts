// The Gpu object: one device, its buffer pool and pipeline cache, and the pending command encoder.
//
// Work is batched: dispatches are recorded into one compute pass of one command encoder and
// submitted together by flush() (once per training step, or when a result is read back). Reading
// back is the only wait, and it waits quietly (wait.ts): Dawn's Node binding busy-polls a CPU core
// while a map is pending, and on a software adapter (lavapipe) that core is taken from the shaders.
import { openDevice, type AdapterSummary } from './device.ts';
import { GpuError, GpuLimitError } from './errors.ts';
import { packParams, PipelineCache, type Kernel, type KernelSpec } from './kernels.ts';
import { BufferPool } from './pool.ts';
import { Profiler, type DispatchWork, type ProfileEvent } from './profiler.ts';
import { MapMode, Usage } from './usage.ts';
import { quietly, threadCpuMs, waitCpuMs } from './wait.ts';

const PARAM_SLOT = 256; // minUniformBufferOffsetAlignment is at most 256
const PARAM_SLOTS = 2048; // dispatches per submit before an automatic flush

/** A byte range of a buffer to bind: offset a multiple of limits.minStorageBufferOffsetAlignment,
 *  size (default: to the end) at most limits.maxStorageBufferBindingSize. */
export interface BufferRange {
  buffer: GPUBuffer;
  offset?: number;
  size?: number;
}

export interface DispatchArgs {
  /** a kernel or its spec (looked up in the pipeline cache) */
  kernel: Kernel | KernelSpec;
  /** storage buffers (or ranges of them) for bindings 1..n */
  buffers: (GPUBuffer | BufferRange)[];
  /** the values of the shader's `struct Params`, by field name (booleans as 0/1) */
  params?: Readonly<Record<string, number | boolean>>;
  /** workgroup counts; see grid() for 1-D problems larger than one dimension allows */
  workgroups: readonly [number, number?, number?];
  /** what this dispatch is, for errors and the profiler, e.g. 'conv2d.forward x[2,3,7,5] w[4,3,3,3]' */
  label?: string;
  /** the work it does, for the profiler's GFLOP/s and GB/s */
  work?: DispatchWork;
}

/** What stopProfiling() returns: every dispatch timed, and the CPU side of the same window. */
export interface Profile {
  events: ProfileEvent[];
  /** submits (command buffers) in the window */
  submits: number;
  /** wall time of the window, ms */
  wallMs: number;
  /** main-thread CPU time outside GPU waits: recording the work (ops, encoding, uploads), ms */
  cpuMs: number;
}

export class Gpu {
  readonly pool: BufferPool;
  readonly pipelines: PipelineCache;
  readonly limits: GPUSupportedLimits;
  readonly features: ReadonlySet<string>;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private pendingDispatches = 0;
  private params: ArrayBuffer;
  private paramsView: DataView;
  private paramBuffer: GPUBuffer;
  private toDestroy: GPUBuffer[] = [];
  private error: string | null = null;
  private lastLabels: string[] = [];
  private profiler: Profiler | null = null;
  private profileStart = { wall: 0, cpu: 0, wait: 0, submits: 0 };
  private scopes: string[] = [];
  /** inside dryRun() */
  private dry = false;
  /** dispatches recorded since creation, for tests and stats */
  dispatchCount = 0;
  /** workgroups of those dispatches (the tuner: a launch of fewer than a CPU's worker threads leaves some idle) */
  workgroupCount = 0;
  /** command buffers submitted since creation */
  submitCount = 0;
  /** for every buffer written since its creation, the serial number of its last write (writeVersion) */
  private lastWrite = new WeakMap<GPUBuffer, number>();
  private writes = 0;
  /** a software adapter (lavapipe, SwiftShader): each invocation is one SIMD lane on a CPU core,
   *  launching a workgroup costs microseconds and barriers are dear, so kernels pick other layouts */
  readonly isCpu: boolean;

  constructor(readonly device: GPUDevice, readonly adapter: AdapterSummary) {
    this.limits = device.limits;
    this.features = new Set([...device.features].map(String));
    this.isCpu = /llvmpipe|lavapipe|swiftshader/i.test(`${adapter.name} ${adapter.vendor} ${adapter.architecture}`);
    this.pool = new BufferPool(device, device.limits.maxBufferSize);
    this.pipelines = new PipelineCache(device);
    this.params = new ArrayBuffer(PARAM_SLOT * PARAM_SLOTS);
    this.paramsView = new DataView(this.params);
    this.paramBuffer = device.createBuffer({ size: this.params.byteLength, usage: Usage.UNIFORM | Usage.COPY_DST, label: 'params' });
    device.onuncapturederror = (ev) => {
      this.error ??= ev.error.message.split('\n').slice(0, 3).join(' ');
    };
    void device.lost.then((info) => {
      if (info.reason !== 'destroyed') this.error ??= `device lost: ${info.message}`;
    });
  }

  /**
   * The pieces of a flat f32 array of `elements` that each fit one storage binding of at most
   * `maxBytes` (default: the adapter's maxStorageBufferBindingSize): `start`s aligned to
   * minStorageBufferOffsetAlignment and to 16 bytes, so every piece but the last holds whole vec4s
   * (and the last too when `elements` is a multiple of 4). Ops larger than one binding (VGG's
   * classifier weight, 411 MB, against lavapipe's 128 MiB) bind these as BufferRanges.
   */
  bindingPieces(elements: number, maxBytes = this.limits.maxStorageBufferBindingSize): { start: number; length: number }[] {
    const align = Math.max(16, this.limits.minStorageBufferOffsetAlignment);
    const chunk = (Math.floor(Math.min(maxBytes, this.limits.maxStorageBufferBindingSize) / align) * align) / 4;
    if (chunk === 0) throw new GpuError(`bindingPieces: a ${maxBytes}-byte binding holds no ${align}-byte aligned piece`);
    const pieces: { start: number; length: number }[] = [];
    for (let start = 0; start < elements; start += chunk) pieces.push({ start, length: Math.min(chunk, elements - start) });
    return pieces;
  }

  /** Records one compute dispatch into the pending encoder (during dryRun, only checks its launch). */
  dispatch(args: DispatchArgs): void {
    this.raisePending();
    const ranges = args.buffers.map((b) => ('buffer' in b ? b : { buffer: b }));
    if (this.dry) {
      this.checkLaunch(args.label ?? ('pipeline' in args.kernel ? args.kernel.label : `${args.kernel.shader}.${args.kernel.entry}`), args.workgroups, ranges);
      return;
    }
    const kernel = 'pipeline' in args.kernel ? args.kernel : this.pipelines.get(args.kernel);
    const label = args.label ?? kernel.label;
    const [x, y = 1, z = 1] = args.workgroups;
    if (args.buffers.length !== kernel.spec.bindings.length) {
      throw new GpuError(`${label}: kernel ${kernel.label} takes ${kernel.spec.bindings.length} buffers, got ${args.buffers.length}`);
    }
    this.checkLaunch(label, args.workgroups, ranges);
    if (x * y * z === 0) return;
    if (this.pendingDispatches === PARAM_SLOTS) this.flush();

    const fields = kernel.params;
    if (fields.length * 4 > PARAM_SLOT) throw new GpuError(`${kernel.label}: Params has more than ${PARAM_SLOT / 4} fields`);
    const slot = this.pendingDispatches;
    try {
      packParams(fields, args.params ?? {}, this.paramsView, slot * PARAM_SLOT, label);
    } catch (e) {
      throw new GpuError((e as Error).message);
    }
    this.pendingDispatches++;
    const paramBytes = Math.max(16, Math.ceil((fields.length * 4) / 16) * 16);

    const bindGroup = this.device.createBindGroup({
      label,
      layout: kernel.layout,
      entries: [
        { binding: 0, resource: { buffer: this.paramBuffer, offset: slot * PARAM_SLOT, size: paramBytes } },
        ...ranges.map((resource, i) => ({ binding: i + 1, resource })),
      ],
    });
    const pass = this.profiler ? this.profiledPass(label, ranges, args.work) : this.openPass();
    pass.setPipeline(kernel.pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(x, y, z);
    if (this.profiler) {
      pass.end();
    }
    for (const [i, access] of kernel.spec.bindings.entries()) if (access === 'write') this.wrote(ranges[i].buffer);
    this.dispatchCount++;
    this.workgroupCount += x * y * z;
    this.lastLabels.push(label);
    if (this.lastLabels.length > 8) this.lastLabels.shift();
  }

  /** Copies `data` into `buffer` at `byteOffset`, ordered after the dispatches recorded so far. */
  upload(buffer: GPUBuffer, data: ArrayBufferView, byteOffset = 0): void {
    this.raisePending();
    if (this.dry) return;
    const bytes = Math.ceil(data.byteLength / 4) * 4;
    const staging = this.device.createBuffer({ size: Math.max(bytes, 4), usage: Usage.COPY_SRC, mappedAtCreation: true, label: 'upload' });
    new Uint8Array(staging.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    staging.unmap();
    this.closePass();
    this.commandEncoder().copyBufferToBuffer(staging, 0, buffer, byteOffset, bytes);
    this.toDestroy.push(staging);
    this.wrote(buffer);
  }

  /** Copies `bytes` bytes between storage buffers, ordered with the dispatches. */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    this.raisePending();
    if (this.dry) return;
    this.closePass();
    this.commandEncoder().copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
    this.wrote(dst);
  }

  /**
   * A number that changes whenever `buffer` is written: by a dispatch that binds it for writing, an
   * upload or a copy into it, the only ways gpunet writes a buffer. Taken when the write is
   * recorded, so in the order the GPU runs them. What is computed from a buffer's values and kept
   * (Tensor.derived) is valid while this stays the same.
   */
  writeVersion(buffer: GPUBuffer): number {
    return this.lastWrite.get(buffer) ?? 0;
  }

  private wrote(buffer: GPUBuffer): void {
    this.lastWrite.set(buffer, ++this.writes);
  }

  /** Submits everything recorded so far (no wait). */
  flush(): void {
    if (!this.encoder) return;
    this.closePass();
    if (this.pendingDispatches > 0) {
      this.device.queue.writeBuffer(this.paramBuffer, 0, this.params, 0, this.pendingDispatches * PARAM_SLOT);
    }
    this.profiler?.resolve(this.encoder);
    this.device.queue.submit([this.encoder.finish()]);
    this.submitCount++;
    this.encoder = null;
    this.pendingDispatches = 0;
    for (const b of this.toDestroy) b.destroy();
    this.toDestroy = [];
  }

  /** Reads `bytes` bytes of `buffer` back to the CPU: flushes, then waits for the GPU. */
  async read(buffer: GPUBuffer, byteOffset = 0, bytes = buffer.size - byteOffset): Promise<ArrayBuffer> {
    if (this.dry) throw new GpuError('read-back during a dry run');
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.device.createBuffer({ size: Math.max(size, 4), usage: Usage.MAP_READ | Usage.COPY_DST, label: 'readback' });
    this.closePass();
    this.commandEncoder().copyBufferToBuffer(buffer, byteOffset, staging, 0, size);
    this.flush();
    try {
      await quietly(staging.mapAsync(MapMode.READ));
    } catch (e) {
      await this.raiseCompileErrors();
      this.raisePending();
      throw new GpuError(`read-back failed: ${(e as Error).message}`);
    }
    const out = staging.getMappedRange().slice(0, bytes);
    staging.unmap();
    staging.destroy();
    await this.raiseCompileErrors();
    this.raisePending();
    return out;
  }

  /** Waits until the GPU has finished everything submitted, and raises any error it reported. */
  async sync(): Promise<void> {
    this.flush();
    await quietly(this.device.queue.onSubmittedWorkDone());
    await this.raiseCompileErrors();
    this.raisePending();
  }

  /** The layer (module path) dispatches are attributed to: the innermost withScope(). */
  get scope(): string {
    return this.scopes[this.scopes.length - 1] ?? '';
  }

  /** Runs `fn` with dispatches attributed to `name` (a layer), for the profiler. */
  withScope<T>(name: string, fn: () => T): T {
    this.scopes.push(name);
    try {
      return fn();
    } finally {
      this.scopes.pop();
    }
  }

  /** Starts timing every dispatch with timestamp queries (one compute pass each while on). */
  startProfiling(): void {
    if (!this.features.has('timestamp-query')) throw new GpuError('profiling needs the timestamp-query feature, which this adapter lacks');
    if (this.profiler) throw new GpuError('startProfiling: already profiling');
    this.flush();
    this.profiler = new Profiler(this.device);
    this.profileStart = { wall: performance.now(), cpu: threadCpuMs(), wait: waitCpuMs(), submits: this.submitCount };
  }

  /** Stops profiling at once (later dispatches are not timed), waits for the GPU and returns every
   *  dispatch timed since the start. */
  async stopProfiling(): Promise<Profile> {
    const profiler = this.profiler;
    if (!profiler) throw new GpuError('stopProfiling: profiling was not started');
    this.flush();
    this.profiler = null;
    const start = this.profileStart;
    await this.sync();
    const wallMs = performance.now() - start.wall;
    const cpuMs = threadCpuMs() - start.cpu - (waitCpuMs() - start.wait);
    return { events: await profiler.collect(), submits: this.submitCount - start.submits, wallMs, cpuMs };
  }

  destroy(): void {
    this.flush();
    this.pool.trim();
    this.device.destroy();
  }

  /** whether a dryRun() is under way (its ops compute no values) */
  get dryRunning(): boolean {
    return this.dry;
  }

  /**
   * Runs `fn` (synchronous) with nothing reaching the device: buffers are placeholders that only
   * know their size, and dispatches, uploads and copies only check their arguments. Ops still
   * compute every output shape and refuse what they cannot run, so the graph runner plans a
   * graph this way before running it (what PyTorch's meta tensors do). Reading back is an error.
   */
  dryRun<T>(fn: () => T): T {
    if (this.dry) return fn();
    this.dry = true;
    this.pool.dry = true;
    try {
      const r = fn();
      if (r instanceof Promise) throw new GpuError('dryRun: the function must be synchronous');
      return r;
    } finally {
      this.dry = false;
      this.pool.dry = false;
    }
  }

  /** Refuses a launch the adapter cannot do: too many workgroups, a binding outside its buffer or too large. */
  private checkLaunch(label: string, workgroups: DispatchArgs['workgroups'], ranges: BufferRange[]): void {
    const [x, y = 1, z = 1] = workgroups;
    const maxWg = this.limits.maxComputeWorkgroupsPerDimension;
    if (!(x >= 0 && y >= 0 && z >= 0)) throw new GpuError(`${label}: workgroup counts [${x},${y},${z}] are not counts`);
    if (Math.max(x, y, z) > maxWg) {
      throw new GpuLimitError(`${label}: a grid of [${x},${y},${z}] workgroups`, 'maxComputeWorkgroupsPerDimension', Math.max(x, y, z), maxWg, 'workgroups');
    }
    const { maxStorageBufferBindingSize: maxBinding, minStorageBufferOffsetAlignment: align } = this.limits;
    for (const [i, { buffer, offset = 0, size = buffer.size - offset }] of ranges.entries()) {
      if (offset % align !== 0 || offset + size > buffer.size) {
        throw new GpuError(`${label}: binding ${i + 1} range [${offset}, ${offset + size}) is not ${align}-byte aligned or lies outside its ${buffer.size}-byte buffer`);
      }
      if (size > maxBinding) {
        // the label names the op and its shapes; the op has to bind the tensor in smaller ranges
        throw new GpuLimitError(`${label}: binding ${i + 1}`, 'maxStorageBufferBindingSize', size, maxBinding, 'bytes');
      }
    }
  }

  private commandEncoder(): GPUCommandEncoder {
    this.encoder ??= this.device.createCommandEncoder({ label: 'step' });
    return this.encoder;
  }

  private openPass(): GPUComputePassEncoder {
    this.pass ??= this.commandEncoder().beginComputePass();
    return this.pass;
  }

  private profiledPass(label: string, ranges: { buffer: GPUBuffer; offset?: number; size?: number }[], work: DispatchWork = {}): GPUComputePassEncoder {
    this.closePass();
    const bound = ranges.reduce((sum, { buffer, offset = 0, size = buffer.size - offset }) => sum + size, 0);
    const info = {
      label, kind: label.split(' ')[0], scope: this.scope, submit: this.submitCount - this.profileStart.submits,
      flops: work.flops ?? 0, bytes: work.bytes ?? bound,
    };
    return this.commandEncoder().beginComputePass({ timestampWrites: this.profiler!.next(info) });
  }

  private closePass(): void {
    this.pass?.end();
    this.pass = null;
  }

  private raisePending(): void {
    if (this.error) {
      const msg = this.error;
      this.error = null;
      throw new GpuError(`WebGPU error (recent dispatches: ${this.lastLabels.join(' | ') || 'none'}): ${msg}`);
    }
  }

  private async raiseCompileErrors(): Promise<void> {
    const failures = await quietly(this.pipelines.failures());
    if (failures.length) {
      this.error = null; // what followed (an invalid pipeline in the step) is a consequence
      throw new GpuError(failures[0]);
    }
  }
}

/** Workgroup counts covering `n` items at `perGroup` items per workgroup, folded into 2-D when
 *  needed. Shaders recover the flat workgroup index as `wid.x + wid.y * nwg.x`. */
export function grid(n: number, perGroup: number, maxPerDim = 65535): [number, number] {
  const groups = Math.ceil(n / perGroup);
  if (groups <= maxPerDim) return [groups, 1];
  const y = Math.ceil(groups / maxPerDim);
  return [Math.ceil(groups / y), y];
}

/**
 * Workgroups (1-D) for a grid-strided loop over `items` at `perGroup` items per workgroup pass:
 * one item per invocation on a GPU; on a CPU adapter at most 64 workgroups, each looping longer.
 */
export function stridedWorkgroups(items: number, perGroup: number): number {
  const gpu = getGpu();
  const max = gpu.isCpu ? 64 : gpu.limits.maxComputeWorkgroupsPerDimension;
  return Math.max(1, Math.min(max, Math.ceil(items / perGroup)));
}

let current: Gpu | null = null;

/** Opens the device (once per process) and returns the Gpu. `select` picks an adapter. */
export async function initGpu(select?: string): Promise<Gpu> {
  if (current) return current;
  const { device, adapter } = await openDevice(select);
  current = new Gpu(device, adapter);
  return current;
}

export interface InitOptions {
  /** the adapter: its index as `gpunet devices` lists them, or a case-insensitive part of its name */
  device?: number | string;
}

/**
 * Opens the GPU; `await gpunet.init()` comes before any tensor is made. Later calls return the
 * adapter already open. Throws NoAdapterError (saying what to install) when there is none.
 */
export async function init(opts: InitOptions = {}): Promise<AdapterSummary> {
  return (await initGpu(opts.device === undefined ? undefined : String(opts.device))).adapter;
}

/** The Gpu opened by initGpu(). */
export function getGpu(): Gpu {
  if (!current) throw new GpuError('the GPU is not initialised: await initGpu() first');
  return current;
}
