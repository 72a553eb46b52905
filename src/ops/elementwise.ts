// Elementwise ops as one declarative table, in the manner of tinygrad and webgpu-torch: each row
// gives the forward expression and, per input, the expression of its gradient. From a row come
// the WGSL kernel (shaders/elementwise.wgsl with the expression filled in) and the autograd rule.
// Expressions see the inputs by name, `dy` (the output's gradient) and `alpha`, `beta` (the op's
// scalars);
// T is the element type (f32 or vec4<f32>), so constants are written T(0.0).
// A gradient written exactly 'dy' passes the incoming gradient through with no kernel at all.
import { getGpu, grid } from '../gpu/index.ts';
import { OpError, recordOp, shapeStr, Tensor } from '../tensor/index.ts';

interface ElementwiseOp {
  inputs: readonly string[];
  forward: string;
  /** gradient expression per input, in the order of `inputs` */
  grads: readonly string[];
}

export const ELEMENTWISE = {
  relu: { inputs: ['x'], forward: 'max(x, T(0.0))', grads: ['select(T(0.0), dy, x > T(0.0))'] },
  leakyRelu: { inputs: ['x'], forward: 'select(x * alpha, x, x > T(0.0))', grads: ['select(dy * alpha, dy, x > T(0.0))'] },
  scale: { inputs: ['x'], forward: 'x * alpha', grads: ['dy * alpha'] },
  shift: { inputs: ['x'], forward: 'x + alpha', grads: ['dy'] },
  add: { inputs: ['a', 'b'], forward: 'a + b', grads: ['dy', 'dy'] },
  sub: { inputs: ['a', 'b'], forward: 'a - b', grads: ['dy', '-dy'] },
  mul: { inputs: ['a', 'b'], forward: 'a * b', grads: ['dy * b', 'dy * a'] },
  // clamp to [alpha, beta] (ONNX Clip: beta wins when alpha > beta); dy passes where x is inside,
  // bounds included, as torch.clamp
  clip: { inputs: ['x'], forward: 'min(max(x, T(alpha)), T(beta))', grads: ['select(T(0.0), dy, (x >= T(alpha)) & (x <= T(beta)))'] },
} as const satisfies Record<string, ElementwiseOp>;

export type ElementwiseName = keyof typeof ELEMENTWISE;

/** Launches `out = expr(inputs)` elementwise; the inputs are bound in0, in1, ... under `names`. */
function launch(label: string, expr: string, names: readonly string[], inputs: readonly Tensor[], scalars: [number, number], shape: readonly number[]): Tensor {
  const out = Tensor.empty(shape);
  const n = out.size;
  if (n === 0) return out;
  const vec = n % 4 === 0;
  const loads = names.map((name, i) => `let ${name} = in${i}[i];`).join(' ');
  getGpu().dispatch({
    kernel: {
      shader: 'elementwise',
      entry: 'main',
      bindings: ['write', ...names.map(() => 'read' as const)],
      defines: { T: vec ? 'vec4<f32>' : 'f32', BODY: `${loads} out[i] = ${expr};` },
    },
    buffers: [out.buffer, ...inputs.map((t) => t.buffer)],
    params: { n: vec ? n / 4 : n, alpha: scalars[0], beta: scalars[1] },
    workgroups: grid(vec ? n / 4 : n, 256),
    label: `${label} ${shapeStr(shape)}`,
    work: { bytes: 4 * n * (inputs.length + 1) },
  });
  return out;
}

/** Applies table row `name` to same-shaped inputs with scalars alpha, beta, recording its gradient rule. */
export function elementwise(name: ElementwiseName, inputs: readonly Tensor[], alpha = 0, beta = 0): Tensor {
  const op: ElementwiseOp = ELEMENTWISE[name];
  if (inputs.length !== op.inputs.length) throw new OpError(name, `takes ${op.inputs.length} inputs, got ${inputs.length}`);
  const shape = inputs[0].shape;
  for (const t of inputs) {
    if (!(t instanceof Tensor)) throw new OpError(name, `inputs must be tensors`);
    if (t.size !== inputs[0].size || t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new OpError(name, `shapes differ: ${inputs.map((x) => shapeStr(x.shape)).join(' vs ')}`);
    }
  }
  const out = launch(name, op.forward, op.inputs, inputs, [alpha, beta], shape);
  return recordOp(name, inputs, out, (dy, needs) =>
    op.grads.map((expr, i) => {
      if (!needs[i]) return null;
      if (expr === 'dy') return dy;
      // the gradient expression reads the inputs it names and dy
      const used = op.inputs.filter((v) => new RegExp(`\\b${v}\\b`).test(expr));
      return launch(`${name}.grad${i}`, expr, [...used, 'dy'], [...used.map((v) => inputs[op.inputs.indexOf(v)]), dy], [alpha, beta], shape);
    }),
  );
}

export const relu = (x: Tensor): Tensor => elementwise('relu', [x]);
export const leakyRelu = (x: Tensor, slope = 0.01): Tensor => elementwise('leakyRelu', [x], slope);
export const scale = (x: Tensor, s: number): Tensor => elementwise('scale', [x], s);
/** a + b, b a same-shaped tensor or a number */
export const add = (a: Tensor, b: Tensor | number): Tensor => (typeof b === 'number' ? elementwise('shift', [a], b) : elementwise('add', [a, b]));
/** a - b, b a same-shaped tensor or a number */
export const sub = (a: Tensor, b: Tensor | number): Tensor => (typeof b === 'number' ? elementwise('shift', [a], -b) : elementwise('sub', [a, b]));
/** a * b elementwise, b a same-shaped tensor or a number */
export const mul = (a: Tensor, b: Tensor | number): Tensor => (typeof b === 'number' ? elementwise('scale', [a], b) : elementwise('mul', [a, b]));
/** min(max(x, lo), hi) (ONNX Clip; torch.clamp when lo <= hi) */
export const clip = (x: Tensor, lo: number, hi: number): Tensor => elementwise('clip', [x], lo, hi);
