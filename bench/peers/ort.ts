// gpunet's own ResNet18 export run by ONNX Runtime: onnxruntime-web's WebGPU execution provider on
// the same Dawn adapter as gpunet (navigator.gpu is the webgpu package's GPU object), and
// onnxruntime-node on the CPU. Inference only (neither trains); each run reads its logits back.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { webgpuInstance } from '../../src/gpu/index.ts';

export interface OrtRunner {
  run: () => Promise<void>;
  dispose: () => Promise<void>;
}

/**
 * Dawn's Node binding rejects typed arrays over a SharedArrayBuffer in GPUQueue.writeBuffer, and
 * ONNX Runtime Web's wasm heap is one (its threaded build): give writeBuffer a plain copy.
 */
function acceptSharedViews(): void {
  const queue = (globalThis as { GPUQueue?: { prototype: GPUQueue & { plainCopies?: boolean } } }).GPUQueue?.prototype;
  if (!queue || queue.plainCopies) return;
  const write = queue.writeBuffer;
  queue.writeBuffer = function (this: GPUQueue, buffer: GPUBuffer, offset: number, data: AllowSharedBufferSource, dataOffset = 0, size?: number) {
    const view = ArrayBuffer.isView(data) ? data : new Uint8Array(data);
    if (!(view.buffer instanceof SharedArrayBuffer)) return write.call(this, buffer, offset, data as BufferSource, dataOffset, size);
    // dataOffset and size count elements of the view's type; copy only that range (often a
    // small part of the whole heap)
    const unit = 'BYTES_PER_ELEMENT' in view ? (view as Uint8Array).BYTES_PER_ELEMENT : 1;
    const bytes = (size ?? view.byteLength / unit - dataOffset) * unit;
    const copy = new Uint8Array(view.buffer, view.byteOffset + dataOffset * unit, bytes).slice();
    return write.call(this, buffer, offset, copy);
  } as GPUQueue['writeBuffer'];
  queue.plainCopies = true;
}

export async function ortWebGpu(model: Uint8Array, batch: number, size: number): Promise<OrtRunner> {
  const g = globalThis as { navigator?: { gpu?: unknown } };
  g.navigator ??= {};
  g.navigator.gpu ??= webgpuInstance();
  acceptSharedViews();
  // the JSEP build (WebGPU kernels in JS over navigator.gpu); in Node, the package's exports would
  // give the CPU-only build
  const ort: typeof import('onnxruntime-web') = await import(pathToFileURL(join(ortWebDist(), 'ort.bundle.min.mjs')).href);
  ort.env.wasm.wasmBinary = readFileSync(join(ortWebDist(), 'ort-wasm-simd-threaded.jsep.wasm'));
  ort.env.wasm.numThreads = 1;
  if (process.env.ORT_DEBUG) { ort.env.logLevel = 'verbose'; ort.env.debug = true; console.log('creating session'); }
  const session = await ort.InferenceSession.create(model, { executionProviders: ['webgpu'] });
  const x = new ort.Tensor('float32', randomInput(batch, size), [batch, 3, size, size]);
  return {
    run: async () => {
      const out = await session.run({ [session.inputNames[0]]: x });
      await out[session.outputNames[0]].getData();
    },
    dispose: () => session.release(),
  };
}

export async function ortNode(model: Uint8Array, batch: number, size: number): Promise<OrtRunner> {
  const ort = await import('onnxruntime-node');
  const session = await ort.InferenceSession.create(model);
  const x = new ort.Tensor('float32', randomInput(batch, size), [batch, 3, size, size]);
  return {
    run: async () => {
      const out = await session.run({ [session.inputNames[0]]: x });
      void out[session.outputNames[0]].data;
    },
    dispose: () => session.release(),
  };
}

function randomInput(batch: number, size: number): Float32Array {
  let s = 1;
  return Float32Array.from({ length: batch * 3 * size * size }, () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1);
}

/** onnxruntime-web's dist/ folder (its package exports no package.json) */
function ortWebDist(): string {
  return dirname(createRequire(import.meta.url).resolve('onnxruntime-web/webgpu'));
}

export function ortVersions(): { web: string; node: string } {
  const web = JSON.parse(readFileSync(join(ortWebDist(), '..', 'package.json'), 'utf8')).version;
  return { web, node: createRequire(import.meta.url)('onnxruntime-node/package.json').version };
}
