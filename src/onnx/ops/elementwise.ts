// Elementwise ops: activations (Relu, LeakyRelu, Clip, ...), arithmetic with numpy broadcasting
// (Add, Sub, Mul, Div, Pow, ...), comparisons and logic (Equal, Where, Not, ...). Each has its
// host loop, which folds shape arithmetic and constants before the graph runs, and, where the
// engine has the kernel, its GPU form.
import { add, clip, leakyRelu, mul, relu, sub } from '../../ops/elementwise.ts';
import { OpError, shapeSize, shapeStr, Tensor } from '../../tensor/index.ts';
import { DataType, type OnnxTensor } from '../ir.ts';
import { broadcastIndex, broadcastShape, hostTensor, mapBroadcast, values } from './host.ts';
import { floats, type NodeContext, type OnnxOp } from './op.ts';

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

/** The operands of a binary node on the host, b re-dimensioned for legacy broadcasting. */
function hostOperands(c: NodeContext): OnnxTensor[] {
  const [a, b] = [c.host(0), c.host(1)];
  return [a, { ...b, dims: legacyDims(c, a.dims, b.dims) }];
}

/**
 * A binary op on the GPU: same shapes run the kernel; otherwise the operand that broadcasts must be
 * a host constant, expanded on the host to the full shape.
 */
function gpuBinary(c: NodeContext, kernel: (a: Tensor, b: Tensor) => Tensor): Tensor {
  const shapes = [c.shape(0), legacyDims(c, c.shape(0), c.shape(1))];
  const out = broadcastShape(...shapes);
  if (!out) throw new OpError(c.op, `shapes ${shapeStr(c.shape(0))} and ${shapeStr(c.shape(1))} do not broadcast`);
  const expanded: Tensor[] = [];
  const full = (i: number): Tensor => {
    if (shapes[i].length === out.length && shapeSize(shapes[i]) === shapeSize(out)) return c.gpu(i);
    if (!c.isHost(i)) throw new OpError(c.op, `broadcasting ${shapeStr(c.shape(0))} with ${shapeStr(c.shape(1))} on the GPU needs '${c.node.inputs[i]}' to be a constant`);
    const v = floats(c.host(i), c.op);
    const index = broadcastIndex(shapes[i], out);
    const t = Tensor.from(Float32Array.from(index, (k) => v[k]), out);
    expanded.push(t);
    return t;
  };
  const y = kernel(full(0), full(1));
  for (const t of expanded) t.discard();
  return y;
}

/** Python's modulo (sign of the divisor), ONNX Mod's default for integers; fmod=1 is C's. */
const pyMod = (a: number, b: number) => a - Math.floor(a / b) * b;

interface Binary {
  /** the host computation (integer types: Div truncates toward zero, as onnxruntime does) */
  host: (a: number, b: number, integer: boolean) => number;
  /** comparisons and logic produce bool */
  bool?: boolean;
  gpu?: (a: Tensor, b: Tensor) => Tensor;
}

const BINARY: Record<string, Binary> = {
  Add: { host: (a, b) => a + b, gpu: add },
  Sub: { host: (a, b) => a - b, gpu: sub },
  Mul: { host: (a, b) => a * b, gpu: mul },
  Div: { host: (a, b, int) => (int ? Math.trunc(a / b) : a / b) },
  Pow: { host: (a, b) => a ** b },
  Equal: { host: (a, b) => Number(a === b), bool: true },
  Less: { host: (a, b) => Number(a < b), bool: true },
  LessOrEqual: { host: (a, b) => Number(a <= b), bool: true },
  Greater: { host: (a, b) => Number(a > b), bool: true },
  GreaterOrEqual: { host: (a, b) => Number(a >= b), bool: true },
  And: { host: (a, b) => Number(a && b), bool: true },
  Or: { host: (a, b) => Number(a || b), bool: true },
  Xor: { host: (a, b) => Number(!a !== !b), bool: true },
};

function binaryOp(b: Binary): OnnxOp {
  return {
    // arithmetic with a weight (a bias added after MatMul, ConvNeXt's layer scale) trains it
    params: b.bool ? undefined : [0, 1],
    scalarsAreConstants: true,
    fold: (c) => {
      const operands = hostOperands(c);
      const type = operands[0].dataType;
      return [mapBroadcast(c.op, c.output(), b.bool ? DataType.BOOL : type, operands, (x, y) => b.host(x, y, isInteger(type)))];
    },
    run: b.gpu && ((c) => [gpuBinary(c, b.gpu!)]),
  };
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
  Neg: { host: (x) => -x },
  Abs: { host: (x) => Math.abs(x) },
  Sqrt: { host: (x) => Math.sqrt(x) },
  Reciprocal: { host: (x) => 1 / x },
  Exp: { host: (x) => Math.exp(x) },
  Log: { host: (x) => Math.log(x) },
  Floor: { host: (x) => Math.floor(x) },
  Ceil: { host: (x) => Math.ceil(x) },
  Sign: { host: (x) => Math.sign(x) },
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
  Mod: {
    fold: (c) => {
      const fmod = c.int('fmod', 0) === 1;
      const operands = hostOperands(c);
      return [mapBroadcast(c.op, c.output(), operands[0].dataType, operands, (a, b) => (fmod ? a % b : pyMod(a, b)))];
    },
  },
  Where: {
    fold: (c) => {
      const [cond, x, y] = [0, 1, 2].map((i) => c.host(i));
      return [mapBroadcast(c.op, c.output(), x.dataType, [cond, x, y], (k, a, b) => (k ? a : b))];
    },
  },
};
