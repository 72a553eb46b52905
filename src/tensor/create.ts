// Making tensors the way torch does: gpunet.tensor(data) from nested arrays or a Float32Array, and
// zeros, ones, full, randn, rand from a shape. Random values come from the default generator
// (manualSeed) unless a generator is given.
import { defaultRng, type Rng } from './random.ts';
import { OpError, type Shape, shapeStr, Tensor } from './tensor.ts';

/** A number, or arrays of them nested to any depth (each level of equal length). */
export type NestedArray = number | readonly NestedArray[];

export interface TensorOptions {
  /** record operations on it so backward() fills its .grad (a leaf: a parameter, an input) */
  requiresGrad?: boolean;
  /** shown in errors and traces */
  name?: string;
}

export interface FromDataOptions extends TensorOptions {
  /** the shape of flat data (a Float32Array or a flat array); nested arrays give their own */
  shape?: Shape;
}

export interface RandomOptions extends TensorOptions {
  /** the generator to draw from (default: the global one, seeded by manualSeed) */
  rng?: Rng;
}

function withOptions(t: Tensor, opts: TensorOptions): Tensor {
  if (opts.requiresGrad) t.requiresGrad = true;
  if (opts.name !== undefined) t.name = opts.name;
  return t;
}

/** The shape of a nested array and its values flattened in row-major order. */
function flattenNested(data: NestedArray): { shape: number[]; values: number[] } {
  const shape: number[] = [];
  for (let level: NestedArray = data; Array.isArray(level); level = level[0]) shape.push(level.length);
  const values: number[] = [];
  const walk = (v: NestedArray, depth: number, at: string): void => {
    if (depth === shape.length) {
      if (typeof v !== 'number') throw new OpError('tensor', `expected a number at ${at || 'the top'}, got ${Array.isArray(v) ? 'an array' : typeof v} (nesting must be regular, of shape ${shapeStr(shape)})`);
      values.push(v);
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[depth]) {
      throw new OpError('tensor', `ragged nested array: ${at || 'the top'} has ${Array.isArray(v) ? v.length : 'no'} elements where shape ${shapeStr(shape)} needs ${shape[depth]}`);
    }
    v.forEach((x, i) => walk(x, depth + 1, `${at}[${i}]`));
  };
  walk(data, 0, '');
  return { shape, values };
}

/**
 * A tensor holding `data` (torch.tensor): nested arrays give their shape (`[[1, 2], [3, 4]]` is
 * [2, 2], a number is a scalar of shape []); a Float32Array or flat array takes `opts.shape`
 * (default: 1-D).
 */
export function tensor(data: NestedArray | Float32Array, opts: FromDataOptions = {}): Tensor {
  if (data instanceof Float32Array) return withOptions(Tensor.from(data, opts.shape ?? [data.length]), opts);
  if (typeof data !== 'number' && !Array.isArray(data)) {
    throw new OpError('tensor', `expected nested arrays of numbers or a Float32Array, got ${Object.prototype.toString.call(data)}`);
  }
  const { shape, values } = flattenNested(data);
  if (opts.shape && shape.length > 1) throw new OpError('tensor', `shape ${shapeStr(opts.shape)} given for nested data of shape ${shapeStr(shape)}: give one or the other`);
  return withOptions(Tensor.from(values, opts.shape ?? shape), opts);
}

/** A tensor of `shape` filled with `value` (torch.full). */
export function full(shape: Shape, value: number, opts: TensorOptions = {}): Tensor {
  return withOptions(Tensor.full(shape, value), opts);
}

/** A tensor of zeros (torch.zeros). */
export function zeros(shape: Shape, opts: TensorOptions = {}): Tensor {
  return full(shape, 0, opts);
}

/** A tensor of ones (torch.ones). */
export function ones(shape: Shape, opts: TensorOptions = {}): Tensor {
  return full(shape, 1, opts);
}

/** Standard normal values (torch.randn). */
export function randn(shape: Shape, opts: RandomOptions = {}): Tensor {
  return withOptions(Tensor.randn(shape, opts.rng ?? defaultRng()), opts);
}

/** Uniform values in [0, 1) (torch.rand). */
export function rand(shape: Shape, opts: RandomOptions = {}): Tensor {
  return withOptions(Tensor.uniform(shape, opts.rng ?? defaultRng(), 0, 1), opts);
}
