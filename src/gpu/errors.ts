// The GPU layer's errors: GpuError for what the device refuses or loses (validation, device loss,
// shader compiles), GpuLimitError for work larger than the adapter allows.

/** Raised for WebGPU validation errors, device loss and failed shader compiles. */
export class GpuError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GpuError';
  }
}

/**
 * Work larger than the adapter allows (a buffer, a binding, a workgroup grid), refused before
 * anything is allocated or launched: smaller images or batches fit. The message names the op with
 * its shapes, the size and the limit.
 */
export class GpuLimitError extends GpuError {
  constructor(what: string, readonly limit: string, readonly needed: number, readonly allowed: number, readonly unit: 'bytes' | 'workgroups') {
    const amount = (n: number) => (unit === 'bytes' ? mebibytes(n) : `${n} workgroups`);
    super(`${what} needs ${amount(needed)}, more than the adapter's ${limit} (${amount(allowed)}): use smaller images or batches`);
    this.name = 'GpuLimitError';
  }
}

/** True when `e`, or an error it wraps (`cause`), is a GpuLimitError. */
export function isGpuLimit(e: unknown): e is Error {
  for (let x = e; x instanceof Error; x = x.cause) if (x instanceof GpuLimitError) return true;
  return false;
}

function mebibytes(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(bytes < 2 ** 24 ? 1 : 0)} MiB`;
}
