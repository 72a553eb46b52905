// Elementwise ops as one declarative table, in the manner of tinygrad and webgpu-torch: each row
// gives the forward expression and, per input, the expression of its gradient. From a row come
// the WGSL kernel (shaders/elementwise.wgsl with the expression filled in) and the autograd rule.
// Expressions see the inputs by name, `dy` (the output's gradient), `y` (the output) and `alpha`,
// `beta` (the op's scalars); T is the element type (f32 or vec4<f32>), so constants are written
// T(0.0). A gradient written exactly 'dy' passes the incoming gradient through with no kernel at
// all; a null gradient means the input takes none (a condition).
//
// Operands broadcast as in numpy: the output has the broadcast shape, and the gradient of an
// operand that was repeated is summed over the repeated axes (reduce.ts). Same-shaped operands take
// the vec4 path when the length allows. A number operand (x * 0.5, 1 - x) needs no tensor: it is
// bound to alpha (the rows that have scalars of their own are unary, so never meet one).
// Read first: the plain float64 rows in src/reference/elementwise.ts.
import { getGpu, grid } from '../gpu/index.ts';
import { ELEMENTWISE_REF, elementwiseRef } from '../reference/elementwise.ts';
import { OpError, recordOp, type Rng, shapeStr, Tensor, type Shape } from '../tensor/index.ts';
import { broadcastAxes, broadcastShapes, broadcastStrides, coalesce, contiguousStrides } from '../tensor/layout.ts';
import { randomArray, registerGradcheck } from './gradcheck.ts';
import { reduceSumTo } from './reduce.ts';

interface ElementwiseOp {
  inputs: readonly string[];
  forward: string;
  /** gradient expression per input, in the order of `inputs` (null: the input takes no gradient) */
  grads: readonly (string | null)[];
}

// GELU's constants: 1/sqrt(2), 1/sqrt(2 pi), and sqrt(2/pi) of the tanh form
const SQRT1_2 = 'T(0.70710678118654752)';
const INV_SQRT_2PI = 'T(0.39894228040143268)';
const GELU_TANH_INNER = '(T(0.79788456080286536) * (x + T(0.044715) * x * x * x))';

export const ELEMENTWISE = {
  relu: { inputs: ['x'], forward: 'max(x, T(0.0))', grads: ['select(T(0.0), dy, x > T(0.0))'] },
  leakyRelu: { inputs: ['x'], forward: 'select(x * alpha, x, x > T(0.0))', grads: ['select(dy * alpha, dy, x > T(0.0))'] },
  scale: { inputs: ['x'], forward: 'x * alpha', grads: ['dy * alpha'] },
  // clamp to [alpha, beta] (ONNX Clip: beta wins when alpha > beta); dy passes where x is inside,
  // bounds included, as torch.clamp
  clip: { inputs: ['x'], forward: 'min(max(x, T(alpha)), T(beta))', grads: ['select(T(0.0), dy, (x >= T(alpha)) & (x <= T(beta)))'] },
  sigmoid: { inputs: ['x'], forward: 'sigmoid(x)', grads: ['dy * y * (T(1.0) - y)'] },
  tanh: { inputs: ['x'], forward: 'tanh(x)', grads: ['dy * (T(1.0) - y * y)'] },
  // clamp(alpha * x + beta, 0, 1); torch's has alpha 1/6 and beta 1/2, ONNX's default alpha 0.2
  hardSigmoid: { inputs: ['x'], forward: 'clamp(alpha * x + beta, T(0.0), T(1.0))', grads: ['select(T(0.0), dy * alpha, abs(alpha * x + beta - T(0.5)) < T(0.5))'] },
  // x * relu6(x + 3) / 6; the gradient as torch's hardswish_backward (x / 3 + 1/2 on [-3, 3])
  hardSwish: { inputs: ['x'], forward: 'x * clamp(x + T(3.0), T(0.0), T(6.0)) / T(6.0)', grads: ['select(select(dy * (x / T(3.0) + T(0.5)), dy, x > T(3.0)), T(0.0), x < T(-3.0))'] },
  silu: { inputs: ['x'], forward: 'x * sigmoid(x)', grads: ['dy * sigmoid(x) * (T(1.0) + x * (T(1.0) - sigmoid(x)))'] },
  // x * Phi(x), Phi the normal distribution function; d/dx = Phi(x) + x * phi(x)
  gelu: { inputs: ['x'], forward: `T(0.5) * x * (T(1.0) + erf(x * ${SQRT1_2}))`, grads: [`dy * (T(0.5) * (T(1.0) + erf(x * ${SQRT1_2})) + x * exp(T(-0.5) * x * x) * ${INV_SQRT_2PI})`] },
  // torch's approximate='tanh': x/2 * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  geluTanh: {
    inputs: ['x'],
    forward: `T(0.5) * x * (T(1.0) + tanh(${GELU_TANH_INNER}))`,
    grads: [`dy * (T(0.5) * (T(1.0) + tanh(${GELU_TANH_INNER})) + T(0.5) * x * (T(1.0) - tanh(${GELU_TANH_INNER}) * tanh(${GELU_TANH_INNER})) * T(0.79788456080286536) * (T(1.0) + T(0.134145) * x * x))`],
  },
  erf: { inputs: ['x'], forward: 'erf(x)', grads: ['dy * T(1.1283791670955126) * exp(-x * x)'] },
  exp: { inputs: ['x'], forward: 'exp(x)', grads: ['dy * y'] },
  log: { inputs: ['x'], forward: 'log(x)', grads: ['dy / x'] },
  sqrt: { inputs: ['x'], forward: 'sqrt(x)', grads: ['dy / (T(2.0) * y)'] },
  neg: { inputs: ['x'], forward: '-x', grads: ['-dy'] },
  abs: { inputs: ['x'], forward: 'abs(x)', grads: ['dy * sign(x)'] },
  reciprocal: { inputs: ['x'], forward: 'T(1.0) / x', grads: ['-dy * y * y'] },
  add: { inputs: ['a', 'b'], forward: 'a + b', grads: ['dy', 'dy'] },
  sub: { inputs: ['a', 'b'], forward: 'a - b', grads: ['dy', '-dy'] },
  mul: { inputs: ['a', 'b'], forward: 'a * b', grads: ['dy * b', 'dy * a'] },
  div: { inputs: ['a', 'b'], forward: 'a / b', grads: ['dy / b', '-dy * a / (b * b)'] },
  // torch.pow's gradients: none through a zero exponent, none into the exponent at a zero base
  pow: { inputs: ['a', 'b'], forward: 'pow_torch(a, b)', grads: ['select(dy * b * pow_torch(a, b - T(1.0)), T(0.0), b == T(0.0))', 'select(dy * y * log(a), T(0.0), (a == T(0.0)) & (b >= T(0.0)))'] },
  // ties send half of dy each way, as torch.maximum / torch.minimum
  maximum: { inputs: ['a', 'b'], forward: 'max_nan(a, b)', grads: ['select(select(T(0.0), dy, a > b), dy * T(0.5), a == b)', 'select(select(T(0.0), dy, b > a), dy * T(0.5), a == b)'] },
  minimum: { inputs: ['a', 'b'], forward: 'min_nan(a, b)', grads: ['select(select(T(0.0), dy, a < b), dy * T(0.5), a == b)', 'select(select(T(0.0), dy, b < a), dy * T(0.5), a == b)'] },
  // torch.where(c != 0, a, b): the condition takes no gradient
  where: { inputs: ['c', 'a', 'b'], forward: 'select(b, a, c != T(0.0))', grads: [null, 'select(T(0.0), dy, c != T(0.0))', 'select(dy, T(0.0), c != T(0.0))'] },
} as const satisfies Record<string, ElementwiseOp>;

export type ElementwiseName = keyof typeof ELEMENTWISE;

/** A tensor, or a number that stands for a tensor of that value (bound to alpha). */
export type Operand = Tensor | number;

/** at most this many merged dimensions (coalesce) in a broadcast, and operands per kernel */
const MAX_DIMS = 4;
const MAX_INPUTS = 4;

const uses = (expr: string, name: string) => new RegExp(`\\b${name}\\b`).test(expr);

/**
 * Launches `out = expr(operands)` elementwise over `shape`; the operands are bound in0, in1, ...
 * under `names` (a number is the constant alpha). When every tensor operand has `shape`, they are
 * read at the output's index; else all are read through their broadcast strides. Both walk vec4s
 * when they can: the same-shaped when the length is a multiple of 4, the broadcast when the
 * innermost merged dim is, and each operand either runs along it (a vec4 load) or repeats along it
 * (a scalar load, splat).
 */
function launch(label: string, expr: string, names: readonly string[], operands: readonly Operand[], scalars: [number, number], shape: Shape): Tensor {
  const out = Tensor.empty(shape);
  const n = out.size;
  if (n === 0) return out;
  const tensors = operands.filter((o): o is Tensor => o instanceof Tensor);
  const same = (t: Tensor) => t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i]);
  const broadcast = !tensors.every(same);
  // merged dims of the walk over the output, and each tensor operand's strides over them
  const walk = broadcast ? coalesce(shape, [contiguousStrides(shape), ...tensors.map((t) => broadcastStrides(t.shape, shape))]) : null;
  if (walk && walk.sizes.length > MAX_DIMS) {
    throw new OpError(label, `broadcasting ${tensors.map((t) => shapeStr(t.shape)).join(', ')} to ${shapeStr(shape)} needs more than ${MAX_DIMS} merged dimensions`);
  }
  const operandStrides = walk ? walk.strides.slice(1) : [];
  const vec = walk ? walk.sizes[0] % 4 === 0 && operandStrides.every((s) => s[0] <= 1) : n % 4 === 0;
  // counted in vec4s: the innermost dim, and the strides of the operands that run along it (their
  // others are multiples of it); a repeating operand keeps its float strides (its innermost is 0)
  const params: Record<string, number> = { n: vec ? n / 4 : n, alpha: scalars[0], beta: scalars[1] };
  for (let d = 0; d < MAX_DIMS - 1; d++) params[`d${d}`] = walk ? (walk.sizes[d] ?? 1) / (vec && d === 0 ? 4 : 1) : 1;
  for (let k = 0; k < MAX_INPUTS; k++) {
    const strides = operandStrides[k] ?? [];
    const runs = vec && strides[0] === 1;
    for (let d = 0; d < MAX_DIMS; d++) params[`s${k}${d}`] = (strides[d] ?? 0) / (runs && d > 0 ? 4 : 1);
  }
  let slot = 0;
  const loads = names.map((name, i) => {
    const o = operands[i];
    if (!(o instanceof Tensor)) return `let ${name} = T(alpha);`;
    const k = slot++;
    if (!broadcast) return `let ${name} = in${k}[i];`;
    // one kernel per expression and pattern of repeating operands, whatever the shapes
    const index = `dot(pos, vec4u(p.s${k}0, p.s${k}1, p.s${k}2, p.s${k}3))`;
    return vec && operandStrides[k][0] === 0 ? `let ${name} = T(in${k}s[${index}]);` : `let ${name} = in${k}[${index}];`;
  });
  // same shapes: one dispatch per storage binding's piece (a tensor may exceed one binding: VGG's
  // classifier weight), each binding its range of every tensor; a broadcast binds them whole
  const gpu = getGpu();
  const pieces = broadcast ? [{ start: 0, length: n }] : gpu.bindingPieces(n);
  for (const piece of pieces) {
    const { length } = piece;
    const range = (t: Tensor) => (broadcast ? t.buffer : t.range(piece));
    const count = vec ? length / 4 : length;
    gpu.dispatch({
      kernel: {
        shader: 'elementwise',
        entry: 'main',
        bindings: ['write', ...tensors.map(() => 'read' as const)],
        defines: { T: vec ? 'vec4<f32>' : 'f32', U: vec ? 'vec4<u32>' : 'u32', BODY: `${broadcast ? 'let pos = position(i); ' : ''}${loads.join(' ')} out[i] = ${expr};` },
      },
      buffers: [range(out), ...tensors.map(range)],
      params: { ...params, n: count },
      workgroups: grid(count, 256),
      label: `${label} ${shapeStr(shape)}`,
      work: { bytes: 4 * (length + tensors.reduce((b, t) => b + (broadcast ? t.size : length), 0)) },
    });
  }
  return out;
}

/**
 * Applies table row `name` to `inputs` (tensors of broadcastable shapes, or numbers) with scalars
 * alpha, beta, recording its gradient rule.
 */
export function elementwise(name: ElementwiseName, inputs: readonly Operand[], alpha = 0, beta = 0): Tensor {
  const op: ElementwiseOp = ELEMENTWISE[name];
  if (inputs.length !== op.inputs.length) throw new OpError(name, `takes ${op.inputs.length} inputs, got ${inputs.length}`);
  const tensors = inputs.filter((t): t is Tensor => t instanceof Tensor);
  for (const t of inputs) {
    if (!(t instanceof Tensor) && typeof t !== 'number') throw new OpError(name, `inputs must be tensors or numbers, got ${typeof t}`);
  }
  const numbers = inputs.filter((t): t is number => typeof t === 'number');
  if (numbers.length > 0) {
    // a number operand takes alpha's place (the rows with scalars of their own are unary)
    if (tensors.length === 0) throw new OpError(name, `needs at least one tensor input`);
    if (numbers.length > 1) throw new OpError(name, `takes at most one number operand, got ${numbers.length}`);
    alpha = numbers[0];
  }
  const shape = broadcastShapes(...tensors.map((t) => t.shape));
  if (!shape) throw new OpError(name, `shapes ${tensors.map((t) => shapeStr(t.shape)).join(' and ')} do not broadcast`);
  const out = launch(name, op.forward, op.inputs, inputs, [alpha, beta], shape);
  // numbers, and inputs that take no gradient, stay off the tape
  const tape = inputs.map((t, i) => (t instanceof Tensor && op.grads[i] !== null ? t : null));
  return recordOp(name, tape, out, (dy, needs) =>
    op.grads.map((expr, i) => {
      const input = tape[i];
      if (!needs[i] || !input || expr === null) return null;
      // the gradient at the output's shape: dy itself, or the expression over what it names
      const bound = [...op.inputs.map((v, k) => [v, inputs[k]] as const), ['dy', dy] as const, ['y', out] as const].filter(([v]) => uses(expr, v));
      const g = expr === 'dy' ? dy : launch(`${name}.grad${i}`, expr, bound.map(([v]) => v), bound.map(([, o]) => o), [alpha, beta], shape);
      if (input.size === g.size) {
        if (input.shape.length === shape.length) return g;
        // only leading 1s differ: the same values, viewed in the input's shape
        const view = g.view(input.shape);
        if (g !== dy) g.release();
        return view;
      }
      // a repeated operand: its gradient is the sum over the axes it was repeated along
      const summed = reduceSumTo(g, broadcastAxes(input.shape, shape), input.shape, 1, `${name}.grad${i} sum`);
      if (g !== dy) g.release();
      return summed;
    }),
  );
}

export const relu = (x: Tensor): Tensor => elementwise('relu', [x]);
export const leakyRelu = (x: Tensor, slope = 0.01): Tensor => elementwise('leakyRelu', [x], slope);
export const scale = (x: Tensor, s: number): Tensor => elementwise('scale', [x], s);
/** min(max(x, lo), hi) (ONNX Clip; torch.clamp when lo <= hi) */
export const clip = (x: Tensor, lo: number, hi: number): Tensor => elementwise('clip', [x], lo, hi);
export const sigmoid = (x: Tensor): Tensor => elementwise('sigmoid', [x]);
export const tanh = (x: Tensor): Tensor => elementwise('tanh', [x]);
/** clamp(alpha x + beta, 0, 1): torch's F.hardsigmoid by default, ONNX HardSigmoid with its alpha, beta */
export const hardSigmoid = (x: Tensor, alpha = 1 / 6, beta = 0.5): Tensor => elementwise('hardSigmoid', [x], alpha, beta);
export const hardSwish = (x: Tensor): Tensor => elementwise('hardSwish', [x]);
export const silu = (x: Tensor): Tensor => elementwise('silu', [x]);
/** F.gelu(x, approximate): 'none' through erf, or the 'tanh' form */
export const gelu = (x: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor => elementwise(approximate === 'tanh' ? 'geluTanh' : 'gelu', [x]);
export const erf = (x: Tensor): Tensor => elementwise('erf', [x]);
export const exp = (x: Tensor): Tensor => elementwise('exp', [x]);
export const log = (x: Tensor): Tensor => elementwise('log', [x]);
export const sqrt = (x: Tensor): Tensor => elementwise('sqrt', [x]);
export const neg = (x: Tensor): Tensor => elementwise('neg', [x]);
export const abs = (x: Tensor): Tensor => elementwise('abs', [x]);
export const reciprocal = (x: Tensor): Tensor => elementwise('reciprocal', [x]);
export const add = (a: Operand, b: Operand): Tensor => elementwise('add', [a, b]);
export const sub = (a: Operand, b: Operand): Tensor => elementwise('sub', [a, b]);
export const mul = (a: Operand, b: Operand): Tensor => elementwise('mul', [a, b]);
export const div = (a: Operand, b: Operand): Tensor => elementwise('div', [a, b]);
export const pow = (a: Operand, b: Operand): Tensor => elementwise('pow', [a, b]);
export const maximum = (a: Operand, b: Operand): Tensor => elementwise('maximum', [a, b]);
export const minimum = (a: Operand, b: Operand): Tensor => elementwise('minimum', [a, b]);
/** torch.where(cond != 0, a, b) */
export const where = (cond: Tensor, a: Operand, b: Operand): Tensor => elementwise('where', [cond, a, b]);

// ---- gradcheck: one entry per row (gpunet gradcheck sigmoid; --shape 2,3,5 --shape 3,1 broadcasts) --

/** Random inputs in each row's domain: positive where the function needs it, away from 0 where it divides. */
export function elementwiseSample(name: ElementwiseName, input: number, shape: Shape, rng: Rng): Float64Array {
  const x = randomArray(shape, rng);
  const positive = () => x.map((v) => 0.2 + 1.8 * Math.abs(v));
  if (name === 'log' || name === 'sqrt' || (name === 'pow' && input === 0)) return positive();
  if (name === 'reciprocal' || (name === 'div' && input === 1)) return x.map((v) => Math.sign(v || 1) * (0.3 + Math.abs(v)));
  if (name === 'pow') return x.map((v) => 2 * v);
  // the pieces of the hard functions lie on [-3, 3] and beyond
  if (name === 'hardSwish' || name === 'hardSigmoid') return x.map((v) => 4.5 * v);
  if (name === 'where' && input === 0) return x.map((v) => (v > 0 ? 1 : 0));
  return x;
}

for (const name of Object.keys(ELEMENTWISE) as ElementwiseName[]) {
  const row: ElementwiseOp = ELEMENTWISE[name];
  registerGradcheck({
    name: name.toLowerCase(),
    inputs: row.inputs,
    // every input the first one's shape unless given (inputs of other shapes broadcast)
    shapes: (given) => row.inputs.map((_, i) => given[i] ?? given[0] ?? [2, 3, 5]),
    // the row's scalars, where its expressions use them
    options: Object.fromEntries(
      (['alpha', 'beta'] as const).filter((k) => [row.forward, ...row.grads].some((e) => e !== null && uses(e, k))).map((k) => [k, k === 'alpha' && name === 'clip' ? -0.3 : k === 'alpha' ? 0.3 : 0.6]),
    ) as { alpha?: number; beta?: number },
    differentiable: row.grads.map((g) => g !== null),
    sample: (i, shape, rng) => elementwiseSample(name, i, shape, rng),
    run: (ts, o) => elementwise(name, ts, o.alpha ?? 0, o.beta ?? 0),
    reference: (xs, shapes, o) => elementwiseRef((v) => ELEMENTWISE_REF[name](v, o.alpha ?? 0, o.beta ?? 0), xs, shapes),
  });
}
