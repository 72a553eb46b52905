// One ONNX op, as the registry (src/onnx/ops/index.ts) holds it: which of its inputs are weights,
// what of it gpunet refuses, how it folds on the host when its inputs are known before the graph
// runs, and how it runs on engine ops. NodeContext is what an entry sees of its node.
import { OpError, shapeStr, Tensor } from '../../tensor/index.ts';
import { DataType, type AttrValue, type OnnxNode, type OnnxTensor } from '../ir.ts';
import { typeName, values } from './host.ts';

/** A value of the graph: on the GPU (f32 activations, weights) or on the host (constants, shapes). */
export type Value = Tensor | OnnxTensor;

export interface OnnxOp {
  /** input slots whose (float) initializer is a trainable parameter: Conv's weight and bias, an
   *  operand of arithmetic, or of an op that moves a weight's data on its way to one (a Transpose
   *  of a Linear weight); such a node never folds, so that the gradient reaches the weight */
  params?: readonly number[];
  /** input slots whose initializer is state that is not trained (batchnorm's running statistics) */
  buffers?: readonly number[];
  /** a one-element initializer in a param slot is a constant (GELU's 0.5, a scale), not a weight */
  scalarsAreConstants?: boolean;
  /** a feature of the node gpunet does not run, seen from its attributes and outputs alone (the
   *  refusal's wording: "with <feature>"), or null */
  refuse?(node: OnnxNode, graph: { opset: number; consumed: ReadonlySet<string> }): string | null;
  /** the outputs computed on the host from inputs known before the graph runs (constant folding);
   *  null when this node must run all the same (a Dropout that drops) */
  fold?(c: NodeContext): OnnxTensor[] | null;
  /** fold reads only the inputs' shapes (Shape, Size), which are known of GPU values too */
  foldsOnShapes?: boolean;
  /** the outputs computed on engine ops */
  run?(c: NodeContext): Value[];
}

/** What NodeContext needs from the graph runner. */
export interface ValueSource {
  readonly opset: number;
  readonly training: boolean;
  /** the value named `name` (activations, folded constants, weights, initializers) */
  value(name: string): Value | undefined;
  /** `t` (a float host value) as a GPU tensor, uploaded once per run */
  upload(name: string, t: OnnxTensor): Tensor;
  /** a fresh seed for a random op (Dropout) */
  seed(): number;
}

export const isFloat = (dataType: number): boolean => dataType === DataType.FLOAT;

/** A float host tensor's values as f32 (the only type the GPU holds). */
export function floats(t: OnnxTensor, what: string): Float32Array {
  if (!isFloat(t.dataType)) throw new OpError(what, `'${t.name}' is a ${typeName(t.dataType)} tensor: only float tensors run on the GPU`);
  return t.data as Float32Array;
}

export class NodeContext {
  constructor(
    readonly node: OnnxNode,
    private readonly source: ValueSource,
  ) {}

  get op(): string {
    return this.node.opType;
  }

  get opset(): number {
    return this.source.opset;
  }

  get training(): boolean {
    return this.source.training;
  }

  seed(): number {
    return this.source.seed();
  }

  // ---- attributes ----

  attr(name: string): AttrValue | undefined {
    return this.node.attrs[name];
  }

  int(name: string, dflt?: number): number {
    const v = this.node.attrs[name] ?? dflt;
    if (typeof v !== 'number') throw new OpError(this.op, v === undefined ? `the ${name} attribute is required` : `attribute ${name} is not a number`);
    return v;
  }

  float(name: string, dflt: number): number {
    return this.int(name, dflt);
  }

  ints(name: string, dflt?: number[]): number[] {
    const v = this.node.attrs[name] ?? dflt;
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'number')) throw new OpError(this.op, v === undefined ? `the ${name} attribute is required` : `attribute ${name} is not a list of numbers`);
    return v as number[];
  }

  floats(name: string, dflt?: number[]): number[] {
    return this.ints(name, dflt);
  }

  str(name: string, dflt: string): string {
    const v = this.node.attrs[name] ?? dflt;
    if (typeof v !== 'string') throw new OpError(this.op, `attribute ${name} is not a string`);
    return v;
  }

  // ---- inputs ----

  /** input i is given (present and not '') */
  has(i: number): boolean {
    return i < this.node.inputs.length && this.node.inputs[i] !== '';
  }

  /** the given inputs' count, trailing omitted ones left out */
  get inputCount(): number {
    let n = this.node.inputs.length;
    while (n > 0 && this.node.inputs[n - 1] === '') n--;
    return n;
  }

  private value(i: number): Value {
    if (!this.has(i)) throw new OpError(this.op, `input ${i} is required`);
    const name = this.node.inputs[i];
    const v = this.source.value(name);
    if (v === undefined) throw new OpError(this.op, `no value '${name}'`);
    return v;
  }

  /** input i is known on the host */
  isHost(i: number): boolean {
    return !(this.value(i) instanceof Tensor);
  }

  /** input i on the GPU (a float constant is uploaded) */
  gpu(i: number): Tensor {
    const v = this.value(i);
    if (v instanceof Tensor) return v;
    floats(v, this.op);
    return this.source.upload(this.node.inputs[i], v);
  }

  /** input i as a host value: it must be known before the graph runs */
  host(i: number): OnnxTensor {
    const v = this.value(i);
    if (v instanceof Tensor) {
      throw new OpError(this.op, `input '${this.node.inputs[i]}' must be known before the graph runs (a constant, or computed from shapes), but it is computed on the GPU`);
    }
    return v;
  }

  /** input i's values (a host value) as numbers */
  numbers(i: number): number[] {
    return values(this.host(i));
  }

  /** input i's single value (a host scalar or one-element tensor) */
  scalar(i: number): number {
    const v = this.numbers(i);
    if (v.length !== 1) throw new OpError(this.op, `input '${this.node.inputs[i]}' must hold one value, it has shape ${shapeStr(this.host(i).dims)}`);
    return v[0];
  }

  /** input i's shape, wherever it lives */
  shape(i: number): number[] {
    const v = this.value(i);
    return v instanceof Tensor ? [...v.shape] : v.dims;
  }

  /** input i's ONNX data type (GPU values are float) */
  dataType(i: number): number {
    const v = this.value(i);
    return v instanceof Tensor ? DataType.FLOAT : v.dataType;
  }

  /** the name of output k */
  output(k = 0): string {
    return this.node.outputs[k];
  }
}
