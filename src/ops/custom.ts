// Custom ops: an op of your own, with its own WGSL kernels, used like a built-in one. defineOp()
// gives it the machinery the built-in ops use: its kernels go through the same pipeline cache and
// dispatch (Params by name, errors naming the kernel, file, line and column), its result is
// recorded on the tape (recordOp) with the gradient rule you write, tidy() frees what it makes,
// and gradcheck() checks that rule against finite differences of your float64 reference.
//
//   const swish = defineOp({
//     name: 'swish',
//     wgsl: SWISH_WGSL,                         // text, or new URL('./swish.wgsl', import.meta.url)
//     forward: (k, x: Tensor) => k.run('forward', { output: x.shape, inputs: [x], params: { n: x.size }, workgroups: [Math.ceil(x.size / 64)] }),
//     backward: (k, dy, { args: [x] }) => [k.run('backward', { output: x.shape, inputs: [x, dy], params: { n: x.size }, workgroups: [Math.ceil(x.size / 64)] })],
//   });
//   const y = swish(x);                         // recorded; y.backward() reaches x.grad
//
// A kernel of the op binds, as every gpunet kernel does: @binding(0) the uniform `struct Params`,
// @binding(1) the output (read_write), then the inputs in order (read). The backward may launch
// kernels, or be composed of existing ops (it runs without recording: its ops build no graph).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { getGpu } from '../gpu/index.ts';
import { noGrad, OpError, recordOp, type Shape, shapeStr, Tensor } from '../tensor/index.ts';

/** One launch of a kernel of the op's WGSL. */
export interface KernelLaunch {
  /** the output's shape: a new tensor, bound at @binding(1) */
  output: Shape;
  /** tensors bound at @binding(2), (3), ... as read-only storage */
  inputs: readonly Tensor[];
  /** the values of the shader's `struct Params` fields, by name (booleans as 0/1) */
  params?: Readonly<Record<string, number | boolean>>;
  /** workgroups to launch, e.g. [Math.ceil(n / 64)] for @workgroup_size(64) */
  workgroups: readonly [number, number?, number?];
  /** values of the shader's `override` constants */
  constants?: Record<string, number>;
}

/** What forward and backward launch their kernels through. */
export interface Kernels {
  /** Runs entry point `entry` of the op's WGSL into a new tensor of `launch.output`. */
  run(entry: string, launch: KernelLaunch): Tensor;
}

/** What the backward knows of the forward call. */
export interface SavedCall<A extends unknown[]> {
  /** the forward's arguments as given (tensors and other values) */
  args: A;
  /** its tensor arguments, in order: the inputs backward returns gradients for */
  inputs: readonly Tensor[];
  /** the forward's result */
  output: Tensor;
  /** which inputs need a gradient: return null for the others, so none is computed */
  needs: readonly boolean[];
}

export interface OpDefinition<A extends unknown[]> {
  /** names the op on the tape, in dispatch labels and errors */
  name: string;
  /** the WGSL of its kernels: the text, or a file URL to read it from */
  wgsl: string | URL;
  /** the output from the arguments (tensors and options), launching kernels with `k.run` */
  forward(k: Kernels, ...args: A): Tensor;
  /** the gradient of each tensor argument, in order, from the output's gradient dy */
  backward(k: Kernels, dy: Tensor, saved: SavedCall<A>): (Tensor | null)[];
}

/**
 * An op with its own kernels: call it like a built-in one (`myOp(x, w, { stride: 2 })`). Its
 * tensor arguments are its inputs on the tape.
 */
export function defineOp<A extends unknown[]>(def: OpDefinition<A>): (...args: A) => Tensor {
  if (!/^[\w.-]+$/.test(def.name ?? '')) throw new OpError('defineOp', `an op needs a name of letters, digits, '.', '-' or '_', got ${JSON.stringify(def.name)}`);
  const file = def.wgsl instanceof URL ? fileURLToPath(def.wgsl) : null;
  let source: string;
  try {
    source = file ? readFileSync(file, 'utf8') : String(def.wgsl);
  } catch (e) {
    throw new OpError(def.name, `cannot read its WGSL ${file}: ${(e as Error).message}`);
  }
  const shader = file ?? `${def.name} (custom op)`;
  const kernels: Kernels = {
    run(entry, launch) {
      for (const t of launch.inputs) if (!(t instanceof Tensor)) throw new OpError(def.name, `${entry}: inputs must be tensors, got ${typeof t}`);
      const out = Tensor.empty(launch.output);
      getGpu().dispatch({
        kernel: { shader, source, entry, bindings: ['write', ...launch.inputs.map(() => 'read' as const)], constants: launch.constants },
        buffers: [out.buffer, ...launch.inputs.map((t) => t.buffer)],
        params: launch.params,
        workgroups: launch.workgroups,
        label: `${def.name}.${entry} ${launch.inputs.map((t) => shapeStr(t.shape)).join(' ')} -> ${shapeStr(launch.output)}`,
      });
      return out;
    },
  };
  const op = (...args: A): Tensor => {
    const inputs = args.filter((a): a is Tensor => a instanceof Tensor);
    const output = def.forward(kernels, ...args);
    if (!(output instanceof Tensor)) throw new OpError(def.name, `forward must return a tensor, got ${typeof output}`);
    return recordOp(def.name, inputs, output, (dy, needs) => {
      const grads = noGrad(() => def.backward(kernels, dy, { args, inputs, output, needs }));
      if (!Array.isArray(grads) || grads.length !== inputs.length) {
        throw new OpError(def.name, `backward must return one gradient (or null) per tensor input, ${inputs.length}, got ${Array.isArray(grads) ? grads.length : typeof grads}`);
      }
      return grads;
    });
  };
  Object.defineProperty(op, 'name', { value: def.name });
  return op;
}
