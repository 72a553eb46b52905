// Elementwise ops: activations (Relu, Sigmoid, HardSwish, Gelu, ...), arithmetic with numpy
// broadcasting (Add, Sub, Mul, Div, Pow, Max, ...), comparisons and logic (Equal, Where, Not, ...).
// Each has its host loop, which folds shape arithmetic and constants before the graph runs, and,
// where the engine's elementwise table has the row, its GPU form. A one-element host operand is
// passed to the kernel as a number (no upload).
import {
  abs, add, clip, div, erf, exp, gelu, hardSigmoid, hardSwish, leakyRelu, log, maximum, minimum, mul, neg, pow, reciprocal, relu, sigmoid, sqrt, sub,
  tanh, where, type Operand,
} from '../../ops/elementwise.ts';
import { OpError, shapeStr, Tensor } from '../../tensor/index.ts';
import { DataType, type OnnxTensor } from '../ir.ts';
import { hostTensor, mapBroadcast, values } from './host.ts';
import type { NodeContext, OnnxOp } from './op.ts';

/** Largest finite f32: Clip's open bounds (kept finite so no shader compiler's fast math meets inf). */
const F32_MAX = 3.4028234663852886e38;

const isInteger = (t: number) => t !== DataType.FLOAT && t !== DataType.DOUBLE && t !== DataType.FLOAT16;

/** Before opset 7, a binary op broadcasts only with broadcast=1, aligning b with a at `axis`
 *  (default: the trailing dimensions, numpy's rule); the dims b gets for numpy broadcasting. */
function legacyDims(c: NodeContext, a: number[], b: number[]): number[] {
  if (c.opset >= 7 || c.int('broadcast', 0) === 0) return b;
  const axis = c.attr('axis') === undefined ? a.length - b.length : c.int('axis');
  if (axis < 0 || axis + b.length > a.length) throw new OpError(c.op, `axis ${axis} does not place ${shapeStr(b)} inside ${shapeStr(a)}`);
  return [...Array(axis).fill(1), ...b, ...Array(a.length - axis - b.length).fill(1)];
}

/** Input i on the host, re-dimensioned for legacy broadcasting (input 1 of a binary op). */
function hostOperand(c: NodeContext, i: number): OnnxTensor {
  const t = c.host(i);
  return i === 1 && c.inputCount === 2 ? { ...t, dims: legacyDims(c, c.shape(0), t.dims) } : t;
}

/** Input i for a GPU kernel: a number for a one-element host constant that adds no dimension to
 *  the result, else a tensor (legacy-broadcast as a view). */
function gpuOperand(c: NodeContext, i: number): Operand {
  const others = Array.from({ length: c.inputCount }, (_, k) => k).filter((k) => k !== i);
  const tensorOperand = others.some((k) => !c.isHost(k) || c.host(k).data.length !== 1);
  const otherRank = Math.max(0, ...others.map((k) => c.shape(k).length));
  if (c.isHost(i) && c.host(i).data.length === 1 && tensorOperand && c.shape(i).length <= otherRank) return c.scalar(i);
  // Pow's exponent may be an integer tensor: its values are exact in f32
  const t = c.op === 'Pow' && i === 1 && c.isHost(1) ? Tensor.from(Float32Array.from(values(c.host(1))), c.shape(1)) : c.gpu(i);
  const dims = i === 1 && c.inputCount === 2 ? legacyDims(c, c.shape(0), [...t.shape]) : t.shape;
  return dims === t.shape ? t : t.reshape(dims);
}

/** Python's modulo (sign of the divisor), ONNX Mod's default for integers; fmod=1 is C's. */
const pyMod = (a: number, b: number) => a - Math.floor(a / b) * b;

interface Variadic {
  /** the host computation of two operands (integer types: Div truncates toward zero, as onnxruntime does) */
  host: (a: number, b: number, integer: boolean, c: NodeContext) => number;
  /** comparisons and logic produce bool */
  bool?: boolean;
  gpu?: (a: Operand, b: Operand) => Tensor;
}

/** Binary ops (Max, Min, Sum, Mean take any number of operands, folded left to right). */
const BINARY: Record<string, Variadic> = {
  Add: { host: (a, b) => a + b, gpu: add },
  Sub: { host: (a, b) => a - b, gpu: sub },
  Mul: { host: (a, b) => a * b, gpu: mul },
  Div: { host: (a, b, int) => (int ? Math.trunc(a / b) : a / b), gpu: div },
  Pow: { host: (a, b) => a ** b, gpu: pow },
  Max: { host: (a, b) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.max(a, b)), gpu: maximum },
  Min: { host: (a, b) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.min(a, b)), gpu: minimum },
  Sum: { host: (a, b) => a + b, gpu: add },
  Mod: { host: (a, b, _, c) => (c.int('fmod', 0) === 1 ? a % b : pyMod(a, b)) },
  Equal: { host: (a, b) => Number(a === b), bool: true },
  Less: { host: (a, b) => Number(a < b), bool: true },
  LessOrEqual: { host: (a, b) => Number(a <= b), bool: true },
  Greater: { host: (a, b) => Number(a > b), bool: true },
  GreaterOrEqual: { host: (a, b) => Number(a >= b), bool: true },
  And: { host: (a, b) => Number(a && b), bool: true },
  Or: { host: (a, b) => Number(a || b), bool: true },
  Xor: { host: (a, b) => Number(!a !== !b), bool: true },
};

function binaryOp(b: Variadic): OnnxOp {
  return {
    // arithmetic with a weight (a bias added after MatMul, ConvNeXt's layer scale) trains it
    params: b.bool ? undefined : [0, 1],
    scalarsAreConstants: true,
    fold: (c) => {
      const operands = Array.from({ length: c.inputCount }, (_, i) => hostOperand(c, i));
      const type = operands[0].dataType;
      const f = (x: number, y: number) => b.host(x, y, isInteger(type), c);
      return [operands.slice(1).reduce((acc, t) => mapBroadcast(c.op, c.output(), b.bool ? DataType.BOOL : type, [acc, t], f), operands[0])];
    },
    run: b.gpu && ((c) => [foldOperands(c, b.gpu!)]),
  };
}

/** op(op(x0, x1), x2)... on the GPU, the intermediates discarded. */
function foldOperands(c: NodeContext, kernel: (a: Operand, b: Operand) => Tensor): Tensor {
  if (c.inputCount === 1) return c.gpu(0).reshape(c.shape(0)); // Max/Min/Sum of one operand
  let y = kernel(gpuOperand(c, 0), gpuOperand(c, 1));
  for (let i = 2; i < c.inputCount; i++) {
    const next = kernel(y, gpuOperand(c, i));
    y.discard();
    y = next;
  }
  return y;
}

interface Unary {
  host: (x: number, c: NodeContext) => number;
  bool?: boolean;
  gpu?: (x: Tensor, c: NodeContext) => Tensor;
}

/** Clip's bounds: attributes before opset 11, optional inputs 1 and 2 from it. */
function clipBounds(c: NodeContext): [number, number] {
  if (c.opset < 11) return [c.float('min', -F32_MAX), c.float('max', F32_MAX)];
  return [c.has(1) ? c.scalar(1) : -F32_MAX, c.has(2) ? c.scalar(2) : F32_MAX];
}

/** erf to float64 precision: its Taylor series below 2.5, erfc's continued fraction above. */
function erfHost(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let sum = x;
    let term = x;
    for (let n = 1; n < 60; n++) {
      term *= (-x * x) / n;
      sum += term / (2 * n + 1);
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc continued fraction (Lentz) for |x| >= 2.5
  let f = ax;
  for (let n = 60; n >= 1; n--) f = ax + n / 2 / f;
  const erfc = Math.exp(-ax * ax) / (f * Math.sqrt(Math.PI));
  return Math.sign(x) * (1 - erfc);
}

const hardSigmoidParams = (c: NodeContext): [number, number] => [c.float('alpha', 0.2), c.float('beta', 0.5)];
const sigmoidHost = (x: number) => 1 / (1 + Math.exp(-x));

const UNARY: Record<string, Unary> = {
  Relu: { host: (x) => Math.max(x, 0), gpu: relu },
  LeakyRelu: { host: (x, c) => (x > 0 ? x : x * c.float('alpha', 0.01)), gpu: (x, c) => leakyRelu(x, c.float('alpha', 0.01)) },
  Clip: {
    host: (x, c) => {
      const [lo, hi] = clipBounds(c);
      return Math.min(Math.max(x, lo), hi);
    },
    gpu: (x, c) => clip(x, ...clipBounds(c)),
  },
  Sigmoid: { host: sigmoidHost, gpu: sigmoid },
  Tanh: { host: Math.tanh, gpu: tanh },
  HardSigmoid: {
    host: (x, c) => {
      const [alpha, beta] = hardSigmoidParams(c);
      return Math.min(Math.max(alpha * x + beta, 0), 1);
    },
    gpu: (x, c) => hardSigmoid(x, ...hardSigmoidParams(c)),
  },
  HardSwish: { host: (x) => (x * Math.min(Math.max(x + 3, 0), 6)) / 6, gpu: hardSwish },
  Erf: { host: erfHost, gpu: erf },
  // opset 20's Gelu; earlier exports spell it out with Erf (or Tanh)
  Gelu: {
    host: (x, c) => (c.str('approximate', 'none') === 'tanh' ? 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))) : 0.5 * x * (1 + erfHost(x / Math.SQRT2))),
    gpu: (x, c) => gelu(x, c.str('approximate', 'none') === 'tanh' ? 'tanh' : 'none'),
  },
  Exp: { host: Math.exp, gpu: exp },
  Log: { host: Math.log, gpu: log },
  Sqrt: { host: Math.sqrt, gpu: sqrt },
  Neg: { host: (x) => -x, gpu: neg },
  Abs: { host: Math.abs, gpu: abs },
  Reciprocal: { host: (x) => 1 / x, gpu: reciprocal },
  Floor: { host: Math.floor },
  Ceil: { host: Math.ceil },
  Sign: { host: Math.sign },
  Not: { host: (x) => Number(!x), bool: true },
};

function unaryOp(u: Unary): OnnxOp {
  return {
    fold: (c) => {
      const x = c.host(0);
      return [hostTensor(c.output(), u.bool ? DataType.BOOL : x.dataType, x.dims, values(x).map((v) => u.host(v, c)))];
    },
    run: u.gpu && ((c) => [u.gpu!(c.gpu(0), c)]),
  };
}

export const ELEMENTWISE_OPS: Record<string, OnnxOp> = {
  ...Object.fromEntries(Object.entries(BINARY).map(([name, b]) => [name, binaryOp(b)])),
  ...Object.fromEntries(Object.entries(UNARY).map(([name, u]) => [name, unaryOp(u)])),
  Where: {
    fold: (c) => {
      const [cond, x, y] = [0, 1, 2].map((i) => c.host(i));
      return [mapBroadcast(c.op, c.output(), x.dataType, [cond, x, y], (k, a, b) => (k ? a : b))];
    },
    // the condition is known (a mask computed from shapes) or an activation; the branches are tensors or numbers
    run: (c) => {
      const cond = c.isHost(0) ? Tensor.from(Float32Array.from(values(c.host(0))), c.shape(0)) : c.gpu(0);
      const y = where(cond, gpuOperand(c, 1), gpuOperand(c, 2));
      if (c.isHost(0)) cond.discard();
      return [y];
    },
  },
};
