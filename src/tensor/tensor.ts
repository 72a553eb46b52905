// Tensor: an f32 array on the GPU with a shape, and its place on the autograd tape.
//
// Lifetime is explicit, as GPU memory must be: every tensor is created inside the innermost
// `tidy()` scope and goes back to the buffer pool when that scope ends, unless it is returned from
// the scope or kept (`keep()`: parameters, optimizer state, running statistics). A tensor used
// after release raises an error naming it.
import { type BufferRange, getGpu, GpuLimitError, grid } from '../gpu/index.ts';
import { runBackward, type GradNode } from './autograd.ts';
import { Rng } from './random.ts';

/** GPU memory shared by a tensor and its views (reshape); returned to the pool when the last goes,
 *  with the tensors computed from its values (Tensor.derived). */
class Storage {
  refs = 1;
  derived: Map<string, { version: number; tensor: Tensor }> | null = null;
  constructor(readonly buffer: GPUBuffer) {}

  dropDerived(): void {
    for (const { tensor } of this.derived?.values() ?? []) tensor.release();
    this.derived = null;
  }
}

export type Shape = readonly number[];

export function shapeSize(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapeStr(shape: Shape): string {
  return `[${shape.join(',')}]`;
}

/** An error in how an op was called: names the op and the shapes involved. */
export class OpError extends Error {
  constructor(op: string, message: string) {
    super(`${op}: ${message}`);
    this.name = 'OpError';
  }
}

const scopes: Set<Tensor>[] = [];
/** tensors discard() must leave: kept ones (keep()) and inputs of recorded ops (recordOp()) */
const stillRead = new WeakSet<Tensor>();
let poison = false;
let nextId = 1;

/** While on, every new uninitialised tensor is filled with NaN, so an element a kernel forgot to
 *  write shows up in the result (the tests turn it on). */
export function setPoison(on: boolean): void {
  poison = on;
}

export class Tensor {
  readonly id = nextId++;
  readonly shape: Shape;
  readonly size: number;
  /** true for a parameter (or anything else) whose gradient should be computed */
  requiresGrad = false;
  /** accumulated gradient of a leaf tensor after backward() */
  grad: Tensor | null = null;
  /** the op that produced this tensor, while its graph is alive */
  node: GradNode | null = null;
  name: string | undefined;
  private storage: Storage | null;

  private constructor(shape: Shape, storage: Storage) {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new OpError('tensor', `invalid shape ${shapeStr(shape)}`);
    }
    this.shape = Object.freeze([...shape]);
    this.size = shapeSize(shape);
    this.storage = storage;
    scopes[scopes.length - 1]?.add(this);
  }

  /** An uninitialised tensor (NaN-filled while poisoning is on). */
  static empty(shape: Shape, label = 'tensor'): Tensor {
    const bytes = Math.max(4, shapeSize(shape) * 4);
    let buffer: GPUBuffer;
    try {
      buffer = getGpu().pool.acquire(bytes, label);
    } catch (e) {
      // the pool knows bytes; say which tensor
      if (e instanceof GpuLimitError) throw new GpuLimitError(`${label} ${shapeStr(shape)}: a buffer`, e.limit, e.needed, e.allowed, e.unit);
      throw e;
    }
    const t = new Tensor(shape, new Storage(buffer));
    if (poison) t.fill(NaN);
    return t;
  }

  static full(shape: Shape, value: number): Tensor {
    return Tensor.empty(shape).fill(value);
  }

  static zeros(shape: Shape): Tensor {
    return Tensor.full(shape, 0);
  }

  static ones(shape: Shape): Tensor {
    return Tensor.full(shape, 1);
  }

  /** A tensor holding `data` (Float32Array or numbers), which must have shape's number of elements. */
  static from(data: Float32Array | readonly number[], shape: Shape): Tensor {
    if (!(data instanceof Float32Array) && !Array.isArray(data)) {
      throw new OpError('Tensor.from', `expected a Float32Array or number[], got ${Object.prototype.toString.call(data)} (only f32 tensors exist)`);
    }
    if (data.length !== shapeSize(shape)) {
      throw new OpError('Tensor.from', `${data.length} values do not fill shape ${shapeStr(shape)} (${shapeSize(shape)} elements)`);
    }
    const t = Tensor.empty(shape);
    const f32 = data instanceof Float32Array ? data : Float32Array.from(data);
    if (f32.length > 0) getGpu().upload(t.buffer, f32);
    return t;
  }

  /** Normal(mean, std) values from a seeded generator. */
  static randn(shape: Shape, rng: Rng, std = 1, mean = 0): Tensor {
    const a = new Float32Array(shapeSize(shape));
    for (let i = 0; i < a.length; i++) a[i] = mean + std * rng.normal();
    return Tensor.from(a, shape);
  }

  /** Uniform(lo, hi) values from a seeded generator. */
  static uniform(shape: Shape, rng: Rng, lo: number, hi: number): Tensor {
    const a = new Float32Array(shapeSize(shape));
    for (let i = 0; i < a.length; i++) a[i] = rng.uniform(lo, hi);
    return Tensor.from(a, shape);
  }

  get buffer(): GPUBuffer {
    if (!this.storage) throw new OpError('tensor', `${this.describe()} used after release`);
    return this.storage.buffer;
  }

  /** Elements [start, start + length) of the buffer, as a binding (a piece of Gpu.bindingPieces:
   *  the ops that split a tensor larger than one storage binding bind their tensors this way). */
  range(piece: { start: number; length: number }): BufferRange {
    return { buffer: this.buffer, offset: 4 * piece.start, size: 4 * piece.length };
  }

  get released(): boolean {
    return this.storage === null;
  }

  /** A number that changes whenever this tensor's memory is written (a kernel, an upload or a copy
   *  into it: an optimizer step, fill, set, copyFrom, loading weights); shared with its views. */
  get version(): number {
    return getGpu().writeVersion(this.buffer);
  }

  /**
   * The tensor `make()` computes from this one's values (Winograd's transformed weights), kept and
   * returned again until this tensor's memory is next written (`version`), then made anew;
   * released with that memory (or by dropDerived). `key` tells a tensor's derivations apart. The
   * caller must not release what this returns. In a dry run (Gpu.dryRun) nothing is kept.
   */
  derived(key: string, make: () => Tensor): Tensor {
    const storage = this.storage;
    if (!storage) throw new OpError('tensor', `${this.describe()} used after release`);
    const gpu = getGpu();
    if (gpu.dryRunning) return make();
    const version = gpu.writeVersion(storage.buffer);
    const kept = storage.derived?.get(key);
    if (kept?.version === version && !kept.tensor.released) return kept.tensor;
    kept?.tensor.release();
    const tensor = keep(make());
    (storage.derived ??= new Map()).set(key, { version, tensor });
    return tensor;
  }

  /** Releases what derived() keeps for this tensor's memory (a weight about to be trained). */
  dropDerived(): void {
    this.storage?.dropDerived();
  }

  get ndim(): number {
    return this.shape.length;
  }

  describe(): string {
    return `tensor${this.name ? ` '${this.name}'` : ` #${this.id}`} ${shapeStr(this.shape)}`;
  }

  /** Fills in place (not recorded on the tape). */
  fill(value: number): this {
    const gpu = getGpu();
    // a binding holds at most maxStorageBufferBindingSize bytes (128 MiB on lavapipe, less than
    // VGG's classifier weight): a larger tensor is filled one aligned range at a time, written in
    // vec4s: the buffer is a whole number of them (pool.ts)
    for (const { start, length } of gpu.bindingPieces(this.size)) {
      const vecs = Math.ceil(length / 4);
      gpu.dispatch({
        kernel: { shader: 'tensor', entry: 'fill', bindings: ['write'] },
        buffers: [{ buffer: this.buffer, offset: start * 4, size: vecs * 16 }],
        params: { n: vecs, value },
        workgroups: grid(vecs, 256),
        label: `fill ${shapeStr(this.shape)}`,
      });
    }
    return this;
  }

  /** Overwrites the contents with `data` (not recorded on the tape). */
  set(data: Float32Array): this {
    if (data.length !== this.size) throw new OpError('Tensor.set', `${data.length} values for ${this.describe()}`);
    getGpu().upload(this.buffer, data);
    return this;
  }

  /** A view with another shape of the same number of elements; on the tape, its gradient is the
   *  incoming gradient viewed back. One dimension may be -1. */
  reshape(shape: Shape): Tensor {
    const resolved = resolveShape(shape, this.size, this.shape);
    const out = this.view(resolved);
    return recordOp('reshape', [this], out, (dy) => [dy.view(this.shape)]);
  }

  /** [N, ...] -> [N, rest] */
  flatten(): Tensor {
    return this.reshape([this.shape[0], -1]);
  }

  /** A new tensor object sharing this one's storage (not recorded on the tape). */
  view(shape: Shape): Tensor {
    if (shapeSize(shape) !== this.size) {
      throw new OpError('view', `cannot view ${this.describe()} as ${shapeStr(shape)}`);
    }
    const storage = this.storage;
    if (!storage) throw new OpError('view', `${this.describe()} used after release`);
    storage.refs++;
    return new Tensor(shape, storage);
  }

  /** The same data with no gradient history (a view). */
  detach(): Tensor {
    return this.view(this.shape);
  }

  /** A copy in fresh memory (not recorded on the tape). */
  clone(): Tensor {
    const out = Tensor.empty(this.shape);
    if (this.size > 0) getGpu().copy(this.buffer, 0, out.buffer, 0, this.size * 4);
    return out;
  }

  /** Copies `src`'s values into this tensor (not recorded on the tape). */
  copyFrom(src: Tensor): this {
    if (src.size !== this.size) throw new OpError('copyFrom', `${src.describe()} into ${this.describe()}`);
    if (this.size > 0) getGpu().copy(src.buffer, 0, this.buffer, 0, this.size * 4);
    return this;
  }

  /** Returns the memory to the pool (once the last view of it goes). Idempotent. */
  release(): void {
    const s = this.storage;
    if (!s) return;
    this.storage = null;
    this.node = null;
    for (const scope of scopes) scope.delete(this);
    if (--s.refs === 0) {
      s.dropDerived();
      getGpu().pool.release(s.buffer);
    }
  }

  /**
   * The consumer of an intermediate result is done with it: its memory goes back to the pool now,
   * unless something may still read it: the tape (it is the input or the output of a recorded op,
   * which backward reads) or its owner (a kept tensor: parameter, buffer, optimizer state).
   * Inference without a tape thus holds only the activations that still have a consumer ahead;
   * whatever stays is released by its tidy scope as usual.
   */
  discard(): void {
    if (!this.requiresGrad && !stillRead.has(this)) this.release();
  }

  /** Reads the values back (waits for the GPU). */
  async toArray(): Promise<Float32Array> {
    if (this.size === 0) return new Float32Array(0);
    return new Float32Array(await getGpu().read(this.buffer, 0, this.size * 4));
  }

  async item(): Promise<number> {
    if (this.size !== 1) throw new OpError('item', `${this.describe()} has ${this.size} elements, not 1`);
    return (await this.toArray())[0];
  }

  /** Computes gradients of this tensor with respect to every leaf that requires them. A non-scalar
   *  tensor needs the incoming gradient `grad`. */
  backward(grad?: Tensor): void {
    runBackward(this, grad);
  }
}

function resolveShape(shape: Shape, size: number, from: Shape): number[] {
  const out = [...shape];
  const free = out.indexOf(-1);
  if (free >= 0) {
    const rest = shapeSize(out.filter((_, i) => i !== free));
    if (rest === 0 || size % rest !== 0) throw new OpError('reshape', `cannot reshape ${shapeStr(from)} to ${shapeStr(shape)}`);
    out[free] = size / rest;
  }
  if (shapeSize(out) !== size) throw new OpError('reshape', `cannot reshape ${shapeStr(from)} to ${shapeStr(shape)}`);
  return out;
}

// ---- scopes ---------------------------------------------------------------------------------

type Kept = Tensor | Kept[] | { [k: string]: Kept } | unknown;

function collect(v: Kept, into: Set<Tensor>, depth = 0): void {
  if (depth > 4 || v === null || typeof v !== 'object' || ArrayBuffer.isView(v)) return;
  if (v instanceof Tensor) {
    into.add(v);
    if (v.grad) into.add(v.grad);
    return;
  }
  for (const x of Array.isArray(v) ? v : Object.values(v as object)) collect(x, into, depth + 1);
}

function endScope(result: unknown): void {
  const scope = scopes.pop()!;
  const kept = new Set<Tensor>();
  collect(result, kept);
  for (const t of scope) if (!kept.has(t)) t.release();
  const parent = scopes[scopes.length - 1];
  if (parent) for (const t of kept) if (!t.released && scope.has(t)) parent.add(t);
}

/**
 * Runs `fn` in a scope: every tensor created inside is released when it ends, except the tensors
 * in its result (a tensor, or arrays/objects of them), which move to the enclosing scope.
 * `fn` may be async; scopes must then not interleave.
 */
export function tidy<T>(fn: () => T): T {
  scopes.push(new Set());
  let result: T;
  try {
    result = fn();
  } catch (e) {
    endScope(undefined);
    throw e;
  }
  if (result instanceof Promise) {
    return result.then(
      (r) => (endScope(r), r),
      (e) => {
        endScope(undefined);
        throw e;
      },
    ) as T;
  }
  endScope(result);
  return result;
}

/** Takes tensors out of every scope: they live until released by hand. */
export function keep<T extends Tensor | null>(t: T): T {
  if (t) {
    for (const scope of scopes) scope.delete(t);
    stillRead.add(t);
  }
  return t;
}

// ---- the tape -------------------------------------------------------------------------------

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs `fn` without recording anything on the tape (inference, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    const r = fn();
    if (r instanceof Promise) return r.finally(() => (gradEnabled = prev)) as T;
    gradEnabled = prev;
    return r;
  } catch (e) {
    gradEnabled = prev;
    throw e;
  }
}

/** What observeOps() is told of each op: its name, its inputs and its output. */
export type OpObserver = (op: string, inputs: readonly (Tensor | null)[], out: Tensor) => void;

let opObserver: OpObserver | null = null;

/**
 * Runs `fn` (synchronous) telling `observer` of every op that reaches recordOp, recorded or not
 * (`gpunet trace` lists a forward pass this way). An op that returns early without a tape entry
 * (max pooling of an input that needs no gradient keeps no argmax) is seen only when its input
 * requires a gradient.
 */
export function observeOps<T>(observer: OpObserver, fn: () => T): T {
  const prev = opObserver;
  opObserver = observer;
  try {
    return fn();
  } finally {
    opObserver = prev;
  }
}

/**
 * Records `out = op(inputs)` on the tape when grad is enabled and some input requires a gradient.
 * `backward(dy, needs)` returns the gradient of each input; it must return null where
 * `needs[i]` is false, so the gradients of frozen parameters are never computed.
 */
export function recordOp(
  op: string,
  inputs: readonly (Tensor | null)[],
  out: Tensor,
  backward: (dy: Tensor, needs: readonly boolean[]) => (Tensor | null)[],
): Tensor {
  opObserver?.(op, inputs, out);
  if (!gradEnabled) return out;
  const needs = inputs.map((t) => t !== null && t.requiresGrad);
  if (!needs.some(Boolean)) return out;
  out.requiresGrad = true;
  out.node = { op, inputs, needs, backward, scope: getGpu().scope };
  for (const t of inputs) if (t) stillRead.add(t);
  return out;
}
