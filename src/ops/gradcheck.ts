// gradcheck: an op's GPU forward against its float64 reference, and its GPU backward against
// central finite differences of that reference (src/reference/finite-differences.ts), on seeded
// random inputs. The tests and `gpunet gradcheck` run the same code.
//
// Each op registers how to check it next to its definition (registerGradcheck in conv2d.ts,
// pool.ts, ...): its inputs and their default shapes, its options, the GPU call and the reference.
// A custom op brings its own spec (see defineOp and `gpunet gradcheck ./my-op.ts`).
import { numericGrads } from '../reference/finite-differences.ts';
import { OpError, relError, Rng, type Shape, shapeSize, shapeStr, Tensor, tidy } from '../tensor/index.ts';

/** How to check one op. `O` is its options object (stride, padding, training, ...). */
export interface GradcheckSpec<O extends object = Record<string, unknown>> {
  /** what `gpunet gradcheck NAME` takes */
  name: string;
  /** the inputs' names, in order ('x', 'weight', 'bias') */
  inputs: readonly string[];
  /** the input shapes from the first few given (`--shape`, in order), defaults for the rest;
   *  later defaults follow earlier shapes (conv2d's weight takes x's channels) and the options */
  shapes(given: readonly Shape[], options: O): Shape[];
  /** the options the op runs with, which `--options` overrides key by key */
  options: O;
  /** which inputs take a gradient (default: all) */
  differentiable?: readonly boolean[];
  /** the values of input i (default: uniform in [-1, 1]) */
  sample?(i: number, shape: Shape, rng: Rng): Float64Array;
  /** the op on the GPU */
  run(inputs: Tensor[], options: O): Tensor;
  /** the same op in float64: the textbook loops of src/reference */
  reference(inputs: Float64Array[], shapes: Shape[], options: O): Float64Array;
}

/** The largest errors of one compared array: max |actual - expected| and relError's max relative. */
export interface ErrorStats {
  maxAbs: number;
  /** max |actual - expected| / max |expected| (relError) */
  rel: number;
}

export interface GradcheckResult {
  name: string;
  shapes: Shape[];
  options: Record<string, unknown>;
  seed: number;
  tolerance: number;
  /** the forward output against the reference */
  forward: ErrorStats;
  /** each differentiable input's gradient against finite differences */
  grads: ({ input: string } & ErrorStats)[];
  pass: boolean;
}

export interface GradcheckOptions {
  /** shapes of the first inputs (the rest from the spec's defaults) */
  shapes?: readonly Shape[];
  /** overrides of the spec's options */
  options?: Record<string, unknown>;
  /** seed of the random inputs and output gradient (default 0) */
  seed?: number;
  /** largest relative error that passes (default 1e-4: float32 kernels against float64) */
  tolerance?: number;
}

const registry = new Map<string, GradcheckSpec<never>>();

/** Makes `spec` available to gradcheckSpec(), `gpunet gradcheck` and the gradcheck test. */
export function registerGradcheck<O extends object>(spec: GradcheckSpec<O>): void {
  if (registry.has(spec.name)) throw new Error(`gradcheck: '${spec.name}' is registered twice`);
  registry.set(spec.name, spec as unknown as GradcheckSpec<never>);
}

/** Every registered spec, by name. */
export function gradcheckSpecs(): GradcheckSpec[] {
  return [...registry.values()].sort((a, b) => a.name.localeCompare(b.name)) as unknown as GradcheckSpec[];
}

export function gradcheckSpec(name: string): GradcheckSpec | undefined {
  return registry.get(name) as unknown as GradcheckSpec | undefined;
}

/** Uniform(lo, hi) values in float64 (never all zeros). */
export function randomArray(shape: Shape, rng: Rng, lo = -1, hi = 1): Float64Array {
  const a = new Float64Array(shapeSize(shape));
  for (let i = 0; i < a.length; i++) a[i] = rng.uniform(lo, hi);
  return a;
}

/** A float32 tensor of float64 values. */
export function toGpu(a: Float64Array | Float32Array, shape: Shape, requiresGrad = false): Tensor {
  const t = Tensor.from(Float32Array.from(a), shape);
  t.requiresGrad = requiresGrad;
  return t;
}

/**
 * Runs `op` on the GPU with the given inputs (requiring grad unless `grad: false`), backpropagates
 * dy, and returns the output and each input's gradient as float32 arrays. Everything it makes is
 * freed.
 */
export async function runWithGrads(
  op: (ts: Tensor[]) => Tensor,
  inputs: { data: Float64Array; shape: Shape; grad?: boolean }[],
  dy: Float64Array,
): Promise<{ out: Float32Array; grads: (Float32Array | null)[] }> {
  return tidy(async () => {
    const ts = inputs.map((x) => toGpu(x.data, x.shape, x.grad !== false));
    const y = op(ts);
    if (y.size !== dy.length) throw new OpError('gradcheck', `the op's output ${shapeStr(y.shape)} has ${y.size} elements, the reference's ${dy.length}`);
    if (y.requiresGrad) y.backward(toGpu(dy, y.shape));
    const out = await y.toArray();
    const grads = await Promise.all(ts.map((t) => (t.grad ? t.grad.toArray() : null)));
    for (const t of ts) t.grad?.release();
    return { out, grads };
  });
}

function errorStats(actual: ArrayLike<number>, expected: ArrayLike<number>): ErrorStats {
  let maxAbs = 0;
  for (let i = 0; i < actual.length; i++) maxAbs = Math.max(maxAbs, Number.isFinite(actual[i]) ? Math.abs(actual[i] - expected[i]) : Infinity);
  return { maxAbs, rel: relError(actual, expected) };
}

/**
 * Checks one op: seeded random inputs, the GPU forward against the reference, and the GPU backward
 * of a random output gradient dy against central finite differences of the reference.
 */
export async function gradcheck(spec: GradcheckSpec, opts: GradcheckOptions = {}): Promise<GradcheckResult> {
  const seed = opts.seed ?? 0;
  const tolerance = opts.tolerance ?? 1e-4;
  const options = { ...spec.options, ...opts.options };
  const unknown = Object.keys(opts.options ?? {}).filter((k) => !(k in spec.options));
  if (unknown.length) throw new OpError(spec.name, `no option '${unknown[0]}' (it has ${Object.keys(spec.options).join(', ') || 'none'})`);
  const given = opts.shapes ?? [];
  if (given.length > spec.inputs.length) throw new OpError(spec.name, `${given.length} shapes for its ${spec.inputs.length} inputs (${spec.inputs.join(', ')})`);
  const shapes = spec.shapes(given, options);
  const rng = new Rng(seed);
  const values = shapes.map((shape, i) => spec.sample?.(i, shape, rng) ?? randomArray(shape, rng));
  const differentiable = spec.differentiable ?? spec.inputs.map(() => true);
  const expected = spec.reference(values.map((v) => v.slice()), shapes, options);
  const dy = randomArray([expected.length], rng);
  const { out, grads } = await runWithGrads(
    (ts) => spec.run(ts, options),
    values.map((data, i) => ({ data, shape: shapes[i], grad: differentiable[i] })),
    dy,
  );
  const which = spec.inputs.map((_, i) => i).filter((i) => differentiable[i]);
  const numeric = numericGrads((xs) => spec.reference(xs, shapes, options), values, dy, which);
  const forward = errorStats(out, expected);
  const gradStats = which.map((i, k) => {
    const g = grads[i];
    return { input: spec.inputs[i], ...(g ? errorStats(g, numeric[k]) : { maxAbs: Infinity, rel: Infinity }) };
  });
  const pass = forward.rel <= tolerance && gradStats.every((g) => g.rel <= tolerance);
  return { name: spec.name, shapes, options, seed, tolerance, forward, grads: gradStats, pass };
}
