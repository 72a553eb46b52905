// What every optimizer shares, as torch.optim.Optimizer: parameter groups whose settings override
// the defaults and stay mutable (a schedule sets group.lr between steps), a step that updates every
// parameter holding a gradient (outside the tape; a group's parameters in one call, which SGD and
// Adam turn into a few launches: launchParameters, below), zeroGrad, and a per-parameter state
// (buffers such as momentum, and step counts) that state() reads back for checkpoints and
// loadState() restores, for an exact resume.
import { getGpu, stridedWorkgroups, type Access } from '../gpu/index.ts';
import { keep, noGrad, OpError, shapeStr, Tensor } from '../tensor/index.ts';

/** The settings every optimizer has. */
export interface OptimizerSettings {
  lr: number;
  weightDecay?: number;
}

/** A parameter group: its parameters and the settings in which it differs from the defaults. */
export type ParamGroup<O extends OptimizerSettings = OptimizerSettings> = Partial<O> & {
  params: Tensor[];
  name?: string;
};

/**
 * An optimizer's state for checkpoints: per-parameter buffers by name (parameters in group order,
 * null for one without a buffer yet) and the steps each parameter has taken (a parameter without a
 * gradient at a step is not updated, and its count stays).
 */
export interface OptimizerState {
  buffers: Record<string, (Float32Array | null)[]>;
  steps: number[];
}

/** A parameter to update at this step: its gradient and its step count (1 on its first). */
export interface ParamStep {
  param: Tensor;
  grad: Tensor;
  step: number;
}

/** What a trainer needs of an optimizer, whichever it is. */
export interface Optimizer {
  /** per group: its parameters and settings (defaults filled in), mutable between steps */
  readonly groups: readonly (ParamGroup & OptimizerSettings)[];
  /** updates every parameter that requires and has a gradient */
  step(): void;
  /** releases every parameter's gradient and sets it to null (torch's set_to_none=True) */
  zeroGrad(): void;
  state(): Promise<OptimizerState>;
  loadState(state: OptimizerState): void;
  /** frees the buffers (the optimizer starts afresh if it steps again) */
  release(): void;
}

/**
 * The shared machinery: groups, the step loop, buffers and step counts by parameter, state().
 * A subclass names its buffers, checks a group's settings (throwing torch's refusals) and updates
 * one parameter.
 */
export abstract class BaseOptimizer<O extends OptimizerSettings> implements Optimizer {
  readonly groups: (ParamGroup<O> & O)[];
  private readonly buffers = new Map<string, Map<Tensor, Tensor>>();
  private readonly steps = new Map<Tensor, number>();

  constructor(
    /** the optimizer's name, for errors */
    protected readonly kind: string,
    params: Tensor[] | ParamGroup<O>[],
    defaults: O,
    bufferNames: readonly string[],
  ) {
    const groups = params.every((p) => p instanceof Tensor) ? [{ params: params as Tensor[] } as ParamGroup<O>] : (params as ParamGroup<O>[]);
    // a group's own settings override the defaults; settings it leaves undefined do not
    this.groups = groups.map((g) => ({
      ...defaults,
      ...Object.fromEntries(Object.entries(g).filter(([, v]) => v !== undefined)),
      params: [...g.params],
    }) as ParamGroup<O> & O);
    for (const name of bufferNames) this.buffers.set(name, new Map());
    const seen = new Set<Tensor>();
    this.groups.forEach((g, i) => {
      this.check(g, this.where(g, i));
      for (const p of g.params) {
        if (!(p instanceof Tensor)) throw new OpError(kind, `group ${i} holds a ${typeof p}, not a tensor`);
        if (seen.has(p)) throw new OpError(kind, `${p.describe()} appears in more than one parameter group`);
        seen.add(p);
      }
    });
  }

  /** Throws (an OpError naming `where`) on settings torch refuses. */
  protected abstract check(g: ParamGroup<O> & O, where: string): void;

  /** Updates the parameters of group g that have a gradient at this step from it. */
  protected abstract updateGroup(items: ParamStep[], g: ParamGroup<O> & O): void;

  private where(g: ParamGroup<O> & O, i: number): string {
    return `group ${i}${g.name ? ` '${g.name}'` : ''}`;
  }

  protected get params(): Tensor[] {
    return this.groups.flatMap((g) => g.params);
  }

  step(): void {
    noGrad(() => {
      this.groups.forEach((g, i) => {
        this.check(g, this.where(g, i));
        const items: ParamStep[] = [];
        for (const p of g.params) {
          if (!p.requiresGrad || !p.grad) continue;
          if (p.grad.size !== p.size) throw new OpError(this.kind, `gradient ${shapeStr(p.grad.shape)} for ${p.describe()}`);
          if (p.size === 0) continue;
          const step = (this.steps.get(p) ?? 0) + 1;
          this.steps.set(p, step);
          items.push({ param: p, grad: p.grad, step });
        }
        if (items.length) this.updateGroup(items, g);
      });
    });
  }

  zeroGrad(): void {
    for (const p of this.params) {
      p.grad?.release();
      p.grad = null;
    }
  }

  /** Buffer `name` of p; created (kept beyond every scope, zero-filled when `zero`) when it has none yet. */
  protected buffer(name: string, p: Tensor, zero: boolean): { buf: Tensor; fresh: boolean } {
    const map = this.buffers.get(name)!;
    const have = map.get(p);
    if (have) return { buf: have, fresh: false };
    const buf = keep(zero ? Tensor.zeros(p.shape) : Tensor.empty(p.shape, name));
    map.set(p, buf);
    return { buf, fresh: true };
  }

  release(): void {
    for (const map of this.buffers.values()) {
      for (const buf of map.values()) buf.release();
      map.clear();
    }
    this.steps.clear();
  }

  async state(): Promise<OptimizerState> {
    const params = this.params;
    const buffers: Record<string, (Float32Array | null)[]> = {};
    for (const [name, map] of this.buffers) {
      buffers[name] = [];
      for (const p of params) buffers[name].push((await map.get(p)?.toArray()) ?? null);
    }
    return { buffers, steps: params.map((p) => this.steps.get(p) ?? 0) };
  }

  /** Restores what state() saved, for the same parameters in the same order. */
  loadState(state: OptimizerState): void {
    const where = `${this.kind}.loadState`;
    const params = this.params;
    const steps = state?.steps;
    if (steps?.length !== params.length || !steps.every((s) => Number.isInteger(s) && s >= 0)) {
      throw new OpError(where, `expected ${params.length} step counts (non-negative integers), got ${JSON.stringify(steps)?.slice(0, 60)}`);
    }
    for (const name of this.buffers.keys()) {
      const saved = state.buffers?.[name];
      if (saved?.length !== params.length) throw new OpError(where, `${saved ? saved.length : 'no'} ${name} buffers for ${params.length} parameters`);
      params.forEach((p, i) => {
        const data = saved[i];
        if (data && data.length !== p.size) throw new OpError(where, `${name} buffer ${i} holds ${data.length} values, for ${p.describe()}`);
      });
    }
    const unknown = Object.keys(state.buffers ?? {}).filter((name) => !this.buffers.has(name));
    if (unknown.length) throw new OpError(where, `no buffers named ${unknown.join(', ')} (${this.kind} keeps ${[...this.buffers.keys()].join(', ') || 'none'})`);
    for (const [name, map] of this.buffers) {
      params.forEach((p, i) => {
        map.get(p)?.release();
        map.delete(p);
        const data = state.buffers[name][i];
        if (data) map.set(p, keep(Tensor.from(data, p.shape)));
      });
    }
    params.forEach((p, i) => this.steps.set(p, steps[i]));
  }
}

// ---- many parameters per launch -------------------------------------------------------------

/** Parameters one launch updates: as many as the adapter's storage bindings per shader stage
 *  hold at `arrays` bindings each, at most 16 (the shader's code grows with them); on a CPU
 *  adapter, where a launch costs little and a kernel with more bindings runs slower (lavapipe,
 *  ResNet18's SGD step interleaved in one process: 101, 111 and 122 ms of CPU at 1, 2 and 4 per
 *  launch; bench/NOTES.md section 11), at most 2. */
function perLaunch(arrays: number): number {
  const gpu = getGpu();
  return Math.max(1, Math.min(gpu.isCpu ? 2 : 16, Math.floor(gpu.limits.maxStorageBuffersPerShaderStage / arrays)));
}

/** One array of each parameter an optimizer's kernel updates: its WGSL name and access. */
export interface ParamArray {
  name: string;
  access: Access;
}

let bindingLimitOverride: number | null = null;

/** Lowers the storage binding limit launchParameters splits parameters for (null: the adapter's).
 *  For tests. */
export function setParameterBindingLimit(bytes: number | null): void {
  bindingLimitOverride = bytes;
}

/**
 * Launches entry `shader` of shaders/`shader`.wgsl over `params` (each its tensors in `arrays`'
 * order, all of the parameter's length) in as few launches as the storage bindings allow, those
 * whose lengths are multiples of 4 as vec4s. A parameter larger than one storage binding (VGG11's
 * first classifier weight, 411 MB, against lavapipe's 128 MiB) is split into pieces that each fit
 * one (Gpu.bindingPieces), its tensors bound at the same offsets; a piece takes a parameter's place
 * in a launch. The shader declares `{{SIZES}}` in its Params, `{{BINDINGS}}` and `{{LOOPS}}` (in
 * an entry that defines `first` and `stride`), written here: n<k>, the arrays <name><k>, and for
 * each piece k a grid-strided loop over i running `body(k)`. Every workgroup takes its stride of
 * each piece in turn, so the work spreads evenly however the sizes differ.
 */
export function launchParameters(
  shader: string, arrays: readonly ParamArray[], params: Tensor[][], uniforms: Record<string, number | boolean>, body: (k: number) => string,
): void {
  const gpu = getGpu();
  const per = perLaunch(arrays.length);
  for (const vec of [true, false]) {
    const pieces = params
      .filter((ts) => (ts[0].size % 4 === 0) === vec)
      .flatMap((ts) => gpu.bindingPieces(ts[0].size, bindingLimitOverride ?? undefined).map((piece) => ({ ts, ...piece })));
    for (let start = 0; start < pieces.length; start += per) {
      const chunk = pieces.slice(start, start + per);
      const lengths = chunk.map((piece) => (vec ? piece.length / 4 : piece.length));
      const ks = chunk.map((_, k) => k);
      const binding = (k: number) =>
        arrays.map((a, j) => `@group(0) @binding(${1 + arrays.length * k + j}) var<storage, ${a.access === 'write' ? 'read_write' : 'read'}> ${a.name}${k}: array<T>;`).join('\n');
      const first = chunk[0].ts[0];
      const whole = chunk.length === 1 && chunk[0].length === first.size;
      gpu.dispatch({
        kernel: {
          shader,
          entry: shader,
          bindings: chunk.flatMap(() => arrays.map((a) => a.access)),
          defines: {
            T: vec ? 'vec4<f32>' : 'f32',
            SIZES: ks.map((k) => `n${k}: u32,`).join(' '),
            BINDINGS: ks.map(binding).join('\n'),
            LOOPS: ks.map((k) => `for (var i = first; i < p.n${k}; i += stride) { ${body(k)} }`).join('\n  '),
          },
        },
        buffers: chunk.flatMap((piece) => piece.ts.map((t) => t.range(piece))),
        params: { ...Object.fromEntries(lengths.map((n, k) => [`n${k}`, n])), ...uniforms },
        workgroups: [stridedWorkgroups(lengths.reduce((a, b) => a + b, 0), 256)],
        label: whole ? `${shader} ${first.name ?? `#${first.id}`} ${shapeStr(first.shape)}` : `${shader} ${chunk.length} parameter pieces`,
        work: { bytes: 4 * (arrays.length + arrays.filter((a) => a.access === 'write').length) * chunk.reduce((a, piece) => a + piece.length, 0) },
      });
    }
  }
}
