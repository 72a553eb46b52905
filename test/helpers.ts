// Shared test utilities: GPU set-up with output poisoning, seeded random inputs, relative error,
// and gradient checking of a GPU op against central finite differences of a float64 reference.
import { beforeAll, vi } from 'vitest';
import type { Command } from '../src/cli/main.ts';
import { getGpu, initGpu } from '../src/gpu/index.ts';
import { relError, Rng, setPoison, shapeSize, Tensor, tidy } from '../src/tensor/index.ts';

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

/** Uniform(-1, 1) values, never all zeros, in float64. */
export function randomArray(shape: readonly number[], rng: Rng, lo = -1, hi = 1): Float64Array {
  const a = new Float64Array(shapeSize(shape));
  for (let i = 0; i < a.length; i++) a[i] = rng.uniform(lo, hi);
  return a;
}

export function toGpu(a: Float64Array | Float32Array, shape: readonly number[], requiresGrad = false): Tensor {
  const t = Tensor.from(Float32Array.from(a), shape);
  t.requiresGrad = requiresGrad;
  return t;
}


/**
 * Central finite differences of L(inputs) = sum(f(inputs) * dy) in float64: the gradient of every
 * input, which the GPU backward with incoming gradient dy must reproduce.
 */
export function numericGrads(
  f: (inputs: Float64Array[]) => Float64Array,
  inputs: Float64Array[],
  dy: Float64Array,
  which: readonly number[] = inputs.map((_, i) => i),
  h = 1e-6,
): Float64Array[] {
  const loss = (xs: Float64Array[]) => {
    const y = f(xs);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += y[i] * dy[i];
    return s;
  };
  return which.map((k) => {
    const g = new Float64Array(inputs[k].length);
    for (let i = 0; i < g.length; i++) {
      const orig = inputs[k][i];
      inputs[k][i] = orig + h;
      const up = loss(inputs);
      inputs[k][i] = orig - h;
      const down = loss(inputs);
      inputs[k][i] = orig;
      g[i] = (up - down) / (2 * h);
    }
    return g;
  });
}

/**
 * Runs `op` on the GPU with the given inputs (all requiring grad), backpropagates dy, and returns
 * the output and each input's gradient as float32 arrays.
 */
export async function runWithGrads(
  op: (ts: Tensor[]) => Tensor,
  inputs: { data: Float64Array; shape: readonly number[]; grad?: boolean }[],
  dy: Float64Array,
): Promise<{ out: Float32Array; grads: (Float32Array | null)[] }> {
  return tidy(async () => {
    const ts = inputs.map((x) => toGpu(x.data, x.shape, x.grad !== false));
    const y = op(ts);
    y.backward(toGpu(dy, y.shape));
    const out = await y.toArray();
    const grads = await Promise.all(ts.map((t) => (t.grad ? t.grad.toArray() : null)));
    for (const t of ts) t.grad?.release();
    return { out, grads };
  });
}

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
