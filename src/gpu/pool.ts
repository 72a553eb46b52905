// Buffer pool: storage buffers are recycled by size class instead of being created and destroyed
// per op. Size classes are powers of two up to 1 MiB, then multiples of 1/8 of the enclosing power
// of two, so a reused buffer wastes at most ~12% of its bytes.
//
// Reuse within one not-yet-submitted command encoder is safe: WebGPU orders every dispatch after
// the previous ones, so a buffer released by one op and handed to the next is only written after
// its last reader ran. (Uploads go through the encoder too for that reason; see Gpu.upload.)

import { GpuLimitError } from './errors.ts';
import { Usage } from './usage.ts';

const STORAGE_USAGE = Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST;

export function sizeClass(bytes: number): number {
  const b = Math.max(16, Math.ceil(bytes / 16) * 16);
  const pow = 2 ** Math.ceil(Math.log2(b));
  if (pow <= 1 << 20) return pow;
  const step = pow / 16;
  return Math.ceil(b / step) * step;
}

export interface PoolStats {
  /** buffers handed out and not yet released */
  liveBuffers: number;
  liveBytes: number;
  /** buffers kept for reuse */
  freeBuffers: number;
  freeBytes: number;
  /** buffers ever created by the pool */
  created: number;
}

export class BufferPool {
  private free = new Map<number, GPUBuffer[]>();
  private live = new Set<GPUBuffer>();
  private liveBytes = 0;
  private freeBytes = 0;
  private created = 0;
  /** during Gpu.dryRun: acquire hands out placeholders that only know their size */
  dry = false;
  private readonly placeholders = new WeakSet<GPUBuffer>();

  constructor(private readonly device: GPUDevice, private readonly maxBufferSize: number) {}

  acquire(bytes: number, label = 'tensor'): GPUBuffer {
    const size = sizeClass(bytes);
    if (size > this.maxBufferSize) throw new GpuLimitError(`${label}: a buffer`, 'maxBufferSize', bytes, this.maxBufferSize, 'bytes');
    if (this.dry) {
      const placeholder = { size, label, destroy() {} } as unknown as GPUBuffer;
      this.placeholders.add(placeholder);
      return placeholder;
    }
    const bucket = this.free.get(size);
    let buffer = bucket?.pop();
    if (buffer) {
      this.freeBytes -= size;
    } else {
      buffer = this.device.createBuffer({ size, usage: STORAGE_USAGE, label });
      this.created++;
    }
    this.live.add(buffer);
    this.liveBytes += size;
    return buffer;
  }

  release(buffer: GPUBuffer): void {
    if (this.placeholders.has(buffer)) return;
    if (!this.live.delete(buffer)) throw new Error('BufferPool.release: buffer is not live (released twice?)');
    const size = buffer.size;
    this.liveBytes -= size;
    this.freeBytes += size;
    let bucket = this.free.get(size);
    if (!bucket) this.free.set(size, (bucket = []));
    bucket.push(buffer);
  }

  /** Destroys the buffers kept for reuse (live ones stay). */
  trim(): void {
    for (const bucket of this.free.values()) for (const b of bucket) b.destroy();
    this.free.clear();
    this.freeBytes = 0;
  }

  stats(): PoolStats {
    let freeBuffers = 0;
    for (const bucket of this.free.values()) freeBuffers += bucket.length;
    return { liveBuffers: this.live.size, liveBytes: this.liveBytes, freeBuffers, freeBytes: this.freeBytes, created: this.created };
  }
}
