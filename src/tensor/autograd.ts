// Reverse-mode autodiff over the tape that recordOp() builds: walk the graph from the loss in
// reverse topological order, call each op's gradient rule with the gradient of its output, and sum
// the gradients flowing into each tensor. Gradients reaching leaves (parameters) accumulate into
// `.grad`; intermediate gradients are released as soon as they have been passed on, and the graph
// is dropped afterwards (as PyTorch does without retain_graph).
import { getGpu, grid } from '../gpu/index.ts';
import { keep, OpError, shapeStr, Tensor } from './tensor.ts';

export interface GradNode {
  op: string;
  inputs: readonly (Tensor | null)[];
  needs: readonly boolean[];
  backward: (dy: Tensor, needs: readonly boolean[]) => (Tensor | null)[];
  /** the layer that recorded it: its gradient kernels are attributed to the same (profiler) */
  scope: string;
}

/** a + b into a new tensor (sums gradients from several consumers), one storage binding's piece
 *  at a time (a gradient may exceed one binding: VGG's classifier weight) */
function addGrads(a: Tensor, b: Tensor): Tensor {
  const out = Tensor.empty(a.shape);
  const gpu = getGpu();
  for (const piece of gpu.bindingPieces(a.size)) {
    gpu.dispatch({
      kernel: { shader: 'tensor', entry: 'add', bindings: ['write', 'read', 'read'] },
      buffers: [out.range(piece), a.range(piece), b.range(piece)],
      params: { n: piece.length, value: 0 },
      workgroups: grid(piece.length, 256),
      label: `grad accumulate ${shapeStr(a.shape)}`,
    });
  }
  return out;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function topoOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  // iterative DFS (ResNet graphs are deep enough to make recursion a risk)
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    const inputs = t.node?.inputs ?? [];
    if (i < inputs.length) {
      top[1]++;
      const child = inputs[i];
      if (child && child.requiresGrad && !seen.has(child)) {
        seen.add(child);
        stack.push([child, 0]);
      }
    } else {
      order.push(t);
      stack.pop();
    }
  }
  return order.reverse(); // root first
}

export function runBackward(root: Tensor, seed?: Tensor): void {
  if (!root.requiresGrad) throw new OpError('backward', `${root.describe()} does not require grad (no parameter in its graph needs one)`);
  if (!seed && root.size !== 1) throw new OpError('backward', `${root.describe()} is not a scalar: pass the gradient of the output`);
  if (seed && seed.size !== root.size) throw new OpError('backward', `gradient ${shapeStr(seed.shape)} for ${root.describe()}`);
  const grads = new Map<Tensor, Tensor>();
  grads.set(root, seed ? seed.view(root.shape) : Tensor.ones(root.shape));

  for (const t of topoOrder(root)) {
    const g = grads.get(t);
    if (!g) continue;
    grads.delete(t);
    const node = t.node;
    if (!node) {
      // a leaf: accumulate into .grad, which outlives the current scope
      if (t.grad) {
        const sum = addGrads(t.grad, g);
        t.grad.release();
        g.release();
        t.grad = keep(sum);
      } else {
        t.grad = keep(sameShape(g.shape, t.shape) ? g : g.view(t.shape));
        if (t.grad !== g) g.release();
      }
      continue;
    }
    const inGrads = getGpu().withScope(node.scope, () => node.backward(g, node.needs));
    node.inputs.forEach((input, i) => {
      let gi = inGrads[i] ?? null;
      if (!input || !node.needs[i]) {
        if (gi && gi !== g) gi.release();
        return;
      }
      if (!gi) throw new OpError(node.op, `backward produced no gradient for input ${i} ${input.describe()}`);
      if (gi.size !== input.size) {
        throw new OpError(node.op, `backward produced a gradient ${shapeStr(gi.shape)} for input ${input.describe()}`);
      }
      // every slot owns its own tensor object: a rule may hand the same gradient to two inputs
      if (gi === g || inGrads.indexOf(gi) !== i) gi = gi.view(input.shape);
      const prev = grads.get(input);
      if (prev) {
        grads.set(input, addGrads(prev, gi));
        prev.release();
        gi.release();
      } else {
        grads.set(input, gi);
      }
    });
    g.release();
    t.node = null; // the graph is consumed
  }
}
