// A small module system in the manner of torch.nn: a Module owns named parameters (trainable
// tensors), buffers (state such as batchnorm running statistics) and child modules, so every
// tensor has its state-dict name (`layer1.0.conv1.weight`, `bn1.running_mean`, `fc.bias`, ...).
import { getGpu } from '../gpu/index.ts';
import { keep, OpError, shapeStr, Tensor } from '../tensor/index.ts';

/** Saved weights by state-dict name: tensors, or values read back (Float32Array). */
export type StateDict = Map<string, Tensor | Float32Array> | Record<string, Tensor | Float32Array>;

export interface LoadStateDictOptions {
  /** every name must match in both directions (default true, as torch's) */
  strict?: boolean;
  /** where the weights came from, for errors (a file name) */
  source?: string;
}

export abstract class Module {
  training = true;
  private readonly ownParams = new Map<string, Tensor>();
  private readonly ownBuffers = new Map<string, Tensor>();
  private readonly ownChildren = new Map<string, Module>();
  private parent: { module: Module; name: string } | null = null;

  abstract forward(x: Tensor): Tensor;

  /** A trainable tensor, kept out of every tidy scope. */
  protected param(name: string, t: Tensor): Tensor {
    t.requiresGrad = true;
    t.name = name;
    this.ownParams.set(name, keep(t));
    return t;
  }

  /** A non-trainable state tensor (saved and loaded with the parameters). */
  protected buffer(name: string, t: Tensor): Tensor {
    t.name = name;
    this.ownBuffers.set(name, keep(t));
    return t;
  }

  protected child<M extends Module>(name: string, m: M): M {
    this.ownChildren.set(name, m);
    m.parent = { module: this, name };
    return m;
  }

  /** The dotted name below the root module ('layer1.0.conv1'), '' for the root or a module that is
   *  no one's child. The profiler attributes each layer's kernels to it. */
  get path(): string {
    if (!this.parent) return '';
    const up = this.parent.module.path;
    return up ? `${up}.${this.parent.name}` : this.parent.name;
  }

  /** Replaces a child (e.g. a new classification head), releasing the old one's tensors. */
  replaceChild(name: string, m: Module): void {
    const old = this.ownChildren.get(name);
    if (!old) throw new Error(`no child module '${name}'`);
    old.release();
    m.train(this.training);
    this.ownChildren.set(name, m);
    m.parent = { module: this, name };
  }

  getChild(name: string): Module | undefined {
    return this.ownChildren.get(name);
  }

  children(): [string, Module][] {
    return [...this.ownChildren];
  }

  /** Every module below this one with its dotted name ('' for this one), depth first. */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [n, c] of this.ownChildren) out.push(...c.namedModules(prefix ? `${prefix}.${n}` : n));
    return out;
  }

  namedParameters(): [string, Tensor][] {
    return this.namedModules().flatMap(([p, m]) => [...m.ownParams].map(([n, t]): [string, Tensor] => [p ? `${p}.${n}` : n, t]));
  }

  namedBuffers(): [string, Tensor][] {
    return this.namedModules().flatMap(([p, m]) => [...m.ownBuffers].map(([n, t]): [string, Tensor] => [p ? `${p}.${n}` : n, t]));
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Parameters and buffers by state-dict name (the live tensors, as torch's state_dict()). */
  stateDict(): Map<string, Tensor> {
    return new Map([...this.namedParameters(), ...this.namedBuffers()]);
  }

  /**
   * Copies saved weights into the parameters and buffers of the same names (torch's
   * load_state_dict); each must hold as many values. Strict (the default): every name must match
   * in both directions. Returns the names missing from `state` and those it has that the model
   * does not.
   */
  loadStateDict(state: StateDict, opts: LoadStateDictOptions = {}): { missing: string[]; unexpected: string[] } {
    const { strict = true, source = 'loadStateDict' } = opts;
    const given = state instanceof Map ? state : new Map(Object.entries(state));
    const dict = this.stateDict();
    const missing = [...dict.keys()].filter((n) => !given.has(n));
    const unexpected = [...given.keys()].filter((n) => !dict.has(n));
    if (strict && (missing.length || unexpected.length)) {
      throw new OpError(source, `the saved weights do not fit the model (missing ${missing.slice(0, 3).join(', ') || 'none'}; unexpected ${unexpected.slice(0, 3).join(', ') || 'none'})`);
    }
    for (const [name, t] of dict) {
      const v = given.get(name);
      if (v === undefined) continue;
      const size = v instanceof Tensor ? v.size : v.length;
      if (size !== t.size) throw new OpError(source, `'${name}' holds ${size} values, the model's ${shapeStr(t.shape)} holds ${t.size}`);
      if (v instanceof Tensor) t.copyFrom(v);
      else t.set(v);
    }
    return { missing, unexpected };
  }

  /** Releases every parameter's gradient (torch's zero_grad(set_to_none=True)). */
  zeroGrad(): void {
    for (const t of this.parameters()) {
      t.grad?.release();
      t.grad = null;
    }
  }

  train(on = true): this {
    for (const [, m] of this.namedModules()) m.training = on;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Sets requiresGrad on every parameter whose name starts with one of `prefixes` ('' = all). */
  setTrainable(prefixes: string | string[], trainable: boolean): this {
    const ps = Array.isArray(prefixes) ? prefixes : [prefixes];
    for (const [name, t] of this.namedParameters()) {
      if (ps.some((p) => p === '' || name === p || name.startsWith(p.endsWith('.') ? p : `${p}.`))) t.requiresGrad = trainable;
    }
    return this;
  }

  freeze(prefixes: string | string[] = ''): this {
    return this.setTrainable(prefixes, false);
  }

  unfreeze(prefixes: string | string[] = ''): this {
    return this.setTrainable(prefixes, true);
  }

  /** Names of the normalization layers' scales and shifts: they keep training while the backbone
   *  is frozen (fastai's train_bn). */
  normParameterNames(): Set<string> {
    const out = new Set<string>();
    for (const [prefix, m] of this.namedModules()) for (const n of m.ownNormParameters()) out.add(prefix ? `${prefix}.${n}` : n);
    return out;
  }

  /** This module's own normalization parameters (BatchNorm2d: weight and bias). */
  protected ownNormParameters(): string[] {
    return [];
  }

  /** Parameter counts, as Keras' summary reports them. */
  countParameters(): { total: number; trainable: number; frozen: number } {
    let total = 0;
    let trainable = 0;
    for (const [, t] of this.namedParameters()) {
      total += t.size;
      if (t.requiresGrad) trainable += t.size;
    }
    return { total, trainable, frozen: total - trainable };
  }

  /** Returns every parameter, gradient and buffer to the pool. */
  release(): void {
    this.zeroGrad();
    for (const [, t] of [...this.namedParameters(), ...this.namedBuffers()]) t.release();
  }
}

/**
 * Runs `layers` in order, discarding each intermediate output once the next layer has consumed it:
 * inference holds one or two activations at a time instead of all of them.
 */
export function runLayers(layers: readonly Module[], x: Tensor): Tensor {
  let y = x;
  const gpu = getGpu();
  for (const m of layers) {
    const path = m.path;
    const next = path ? gpu.withScope(path, () => m.forward(y)) : m.forward(y);
    if (y !== x && next !== y) y.discard();
    y = next;
  }
  return y;
}
