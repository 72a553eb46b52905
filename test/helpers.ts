// Shared test utilities: GPU set-up with output poisoning, seeded random inputs, relative error,
// and gradient checking of a GPU op against central finite differences of a float64 reference.
import { beforeAll, vi } from 'vitest';
import type { Command } from '../src/cli/main.ts';
import { getGpu, initGpu, type BufferRange, type DispatchArgs } from '../src/gpu/index.ts';
import { relError, setPoison, shapeSize } from '../src/tensor/index.ts';

/** Opens the GPU once per test file and poisons every new uninitialised tensor with NaN. */
export function useGpu(): void {
  beforeAll(async () => {
    await initGpu();
    setPoison(true);
  });
}

export { relError, shapeSize };

/**
 * Runs `fn` with the kernel layouts a GPU gets (ops read getGpu().isCpu to pick workgroup sizes,
 * invocations per row and slices): the same kernels, walked as on a discrete adapter, so those
 * paths are checked here on lavapipe too.
 */
export async function withGpuLayouts<T>(fn: () => Promise<T>): Promise<T> {
  const gpu = getGpu() as { isCpu: boolean };
  const was = gpu.isCpu;
  gpu.isCpu = false;
  try {
    return await fn();
  } finally {
    gpu.isCpu = was;
  }
}

/** Runs `fn`, counting the dispatches of shaders/`shader`.wgsl and the largest storage range any
 *  of them bound (bytes): how the tests see work split across binding pieces. */
export async function dispatchesOf<T>(shader: string, fn: () => Promise<T>): Promise<{ result: T; dispatches: number; largest: number }> {
  const gpu = getGpu();
  const dispatch = gpu.dispatch;
  let dispatches = 0;
  let largest = 0;
  gpu.dispatch = (args: DispatchArgs) => {
    if ('shader' in args.kernel && args.kernel.shader === shader) {
      dispatches++;
      for (const b of args.buffers as BufferRange[]) largest = Math.max(largest, b.size!);
    }
    dispatch.call(gpu, args);
  };
  try {
    return { result: await fn(), dispatches, largest };
  } finally {
    gpu.dispatch = dispatch;
  }
}

// the gradient-checking machinery is the engine's own (src/ops/gradcheck.ts), as `gpunet gradcheck` runs it
export { numericGrads } from '../src/reference/finite-differences.ts';
export { randomArray, runWithGrads, toGpu } from '../src/ops/gradcheck.ts';

/** Runs a command as main() would, returning its exit code, stdout lines and stderr messages. */
export async function runCommand(cmd: Command, args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((...a) => void out.push(...a.join(' ').split('\n')));
  const error = vi.spyOn(console, 'error').mockImplementation((...a) => void err.push(a.join(' ')));
  try {
    return { code: await cmd.run(args), out, err };
  } finally {
    log.mockRestore();
    error.mockRestore();
  }
}
