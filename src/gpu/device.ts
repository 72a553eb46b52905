// Adapter and device acquisition through Dawn's Node bindings (npm `webgpu`).
//
// Two traps of the Node binding are handled here:
//  - the object `create()` returns must outlive the device, or the process dies with
//    futex / std::system_error errors when it is garbage-collected: we keep it in a module variable;
//  - the default device limits cap a storage binding at 128 MiB: we request the adapter's own limits.
import { create, globals } from 'webgpu';

export interface AdapterSummary {
  index: number;
  name: string;
  vendor: string;
  architecture: string;
  backend: string;
  type: string;
  features: string[];
  limits: Record<string, number>;
}

/** Raised when no WebGPU adapter exists; the CLI turns it into one line and exit code 2. */
export class NoAdapterError extends Error {
  constructor(detail = '') {
    super(
      'no WebGPU adapter found' + (detail ? ` (${detail})` : '') +
        ': install a Vulkan driver, e.g. Mesa lavapipe with `bash tools/setup-system` ' +
        '(apt-get install -t bookworm-backports mesa-vulkan-drivers on Debian bookworm)',
    );
    this.name = 'NoAdapterError';
  }
}

/** Raised when --device names no adapter. */
export class AdapterSelectError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AdapterSelectError';
  }
}

let gpuRoot: GPU | null = null; // keeps Dawn's instance alive for the life of the process

/** The Dawn GPU object (navigator.gpu's equivalent) gpunet's device comes from: benchmarks hand it
 *  to peers (TF.js, ONNX Runtime Web) as navigator.gpu so that they run on the same adapter. */
export function webgpuInstance(): GPU {
  return instance();
}

function instance(backend?: string): GPU {
  if (gpuRoot) return gpuRoot;
  if (!process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = '/tmp'; // silences Dawn's warning
  Object.assign(globalThis, globals);
  gpuRoot = create(backend ? [`backend=${backend}`] : []);
  return gpuRoot;
}

const KEY_LIMITS = [
  'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
];

function summarize(adapter: GPUAdapter, index: number, backend: string): AdapterSummary {
  const info = adapter.info;
  const limits: Record<string, number> = {};
  for (const k of KEY_LIMITS) limits[k] = (adapter.limits as unknown as Record<string, number>)[k];
  return {
    index,
    name: info.description || info.device || 'unknown',
    vendor: info.vendor || 'unknown',
    architecture: info.architecture || '',
    backend,
    type: (info as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter ? 'fallback' : 'default',
    features: [...adapter.features].sort(),
    limits,
  };
}

// Dawn reports one adapter per request; asking per power preference and per backend finds the others.
async function enumerate(): Promise<{ adapter: GPUAdapter; summary: AdapterSummary }[]> {
  const gpu = instance();
  const found: { adapter: GPUAdapter; summary: AdapterSummary }[] = [];
  const seen = new Set<string>();
  for (const powerPreference of ['high-performance', 'low-power'] as const) {
    const adapter = await gpu.requestAdapter({ powerPreference });
    if (!adapter) continue;
    const key = `${adapter.info.vendor}|${adapter.info.device}|${adapter.info.description}`;
    if (seen.has(key)) continue;
    seen.add(key);
    found.push({ adapter, summary: summarize(adapter, found.length, 'vulkan') });
  }
  return found;
}

export async function listAdapters(): Promise<AdapterSummary[]> {
  return (await enumerate()).map((a) => a.summary);
}

export interface DeviceHandle {
  device: GPUDevice;
  adapter: AdapterSummary;
}

/** A CPU adapter (lavapipe, llvmpipe, SwiftShader, WARP): a software fallback or 'software' architecture. */
export function isCpuAdapter(a: AdapterSummary): boolean {
  return a.type === 'fallback' || a.architecture === 'software' || /llvmpipe|lavapipe|swiftshader|warp/i.test(a.name);
}

/** The adapter `select` names: 'cpu' (a CPU adapter), 'gpu' (the first real GPU), an index, or a part of a name. */
function pick<T extends { summary: AdapterSummary }>(adapters: T[], select: string): T {
  const key = select.toLowerCase();
  const match =
    key === 'cpu' ? adapters.find((a) => isCpuAdapter(a.summary))
    : key === 'gpu' ? adapters.find((a) => !isCpuAdapter(a.summary))
    : /^\d+$/.test(select) ? adapters[Number(select)]
    : adapters.find((a) => a.summary.name.toLowerCase().includes(key));
  if (match) return match;
  const names = adapters.map((a) => `${a.summary.index}: ${a.summary.name}${isCpuAdapter(a.summary) ? ' (CPU)' : ''}`).join(', ');
  const what = key === 'cpu' ? 'no CPU adapter' : key === 'gpu' ? 'no GPU adapter, only CPU ones' : 'no such adapter';
  throw new AdapterSelectError(`--device ${select}: ${what} (have ${names}); list them with \`gpunet devices\``);
}

/**
 * Opens a device on the adapter named by `select` ('cpu', 'gpu', an index from `gpunet devices`,
 * or a case-insensitive part of its name), or the first one. Requests all of the adapter's limits
 * and the optional features gpunet can use.
 */
export async function openDevice(select?: string): Promise<DeviceHandle> {
  const adapters = await enumerate();
  if (adapters.length === 0) throw new NoAdapterError();
  const chosen = select !== undefined && select !== '' ? pick(adapters, select) : adapters[0];
  const { adapter } = chosen;
  const requiredLimits: Record<string, number> = {};
  for (const k in adapter.limits) {
    const v = (adapter.limits as unknown as Record<string, number>)[k];
    if (typeof v === 'number') requiredLimits[k] = v;
  }
  const wanted: GPUFeatureName[] = ['timestamp-query', 'shader-f16', 'subgroups'] as GPUFeatureName[];
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures, label: 'gpunet' });
  return { device, adapter: chosen.summary };
}
