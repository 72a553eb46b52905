// One input through a model, op by op (`gpunet trace`): each op's name, layer, input and output
// shapes, parameters, the FLOPs its kernels declare, its GPU time (timestamp queries) and the
// statistics of its output; then, on request, one cross-entropy backward and the gradient norm of
// every parameter.
//
// How: the forward runs with the input requiring a gradient, so that every op reaches recordOp
// (observeOps sees it) and keeps its output alive on the tape until the statistics are read; the
// dispatches an op launched are those counted between the previous op's report and its own, and
// the profiler times each of them.
import { getGpu, type Profile } from '../gpu/index.ts';
import type { Module } from '../nn/module.ts';
import { crossEntropy } from '../ops/softmax.ts';
import { observeOps, type Shape, Tensor } from '../tensor/index.ts';
import { argmaxRows } from './metrics.ts';

export interface TraceStats {
  mean: number;
  std: number;
  min: number;
  max: number;
}

export interface TraceRow {
  op: string;
  /** the layer (module path) that ran it, '' outside any */
  layer: string;
  inputs: Shape[];
  output: Shape;
  /** elements of the model's parameters among its inputs */
  params: number;
  /** floating-point operations its kernels declare (a multiply-add counts 2; 0 when none do) */
  flops: number;
  /** multiply-accumulates, as ptflops counts them: conv and linear from their kernels, and per
   *  element for batchnorm (2), ReLU and leaky ReLU (1 per output) and pooling (1 per input) */
  macs: number;
  /** GPU time of its dispatches, ms (NaN without timestamp queries) */
  gpuMs: number;
  dispatches: number;
  stats: TraceStats;
}

export interface GradNorm {
  name: string;
  shape: Shape;
  /** L2 norm of the parameter's gradient */
  norm: number;
}

export interface Trace {
  /** every dispatch of the forward, timed (none without timestamp queries): what --profile reports */
  profile?: Profile;
  rows: TraceRow[];
  logits: Float32Array;
  /** the backward's class and loss, and the gradient norms by parameter */
  backward?: { label: number; loss: number; grads: GradNorm[] };
}

export interface TraceOptions {
  /** one cross-entropy backward after the forward */
  backward?: boolean;
  /** the class the backward's loss targets (default: the top class) */
  label?: number;
}

/** multiply-accumulates of ops whose kernels declare no FLOPs, per element as ptflops counts them */
const ELEMENT_MACS: Record<string, (x: Tensor, out: Tensor) => number> = {
  batchNorm2d: (x) => 2 * x.size,
  relu: (_, out) => out.size,
  leakyRelu: (_, out) => out.size,
  maxPool2d: (x) => x.size,
  avgPool2d: (x) => x.size,
  globalAvgPool2d: (x) => x.size,
};

function statsOf(v: Float32Array): TraceStats {
  let sum = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const x of v) {
    sum += x;
    if (x < min) min = x;
    if (x > max) max = x;
  }
  const mean = sum / v.length;
  let sq = 0;
  for (const x of v) sq += (x - mean) ** 2;
  return { mean, std: Math.sqrt(sq / v.length), min, max };
}

/**
 * Runs `x` ([1, C, H, W]: one image) through `model` in eval mode and lists its ops; call it in a
 * tidy() scope, which frees the activations it keeps.
 */
export async function traceModel(model: Module, x: Tensor, opts: TraceOptions = {}): Promise<Trace> {
  const gpu = getGpu();
  model.eval();
  const weights = new Set<Tensor>(model.parameters());
  const input = x.detach();
  input.requiresGrad = true; // every op reaches recordOp and keeps its output for us
  const seen: { op: string; layer: string; inputs: Tensor[]; out: Tensor; lastDispatch: number }[] = [];
  const timed = gpu.features.has('timestamp-query');
  if (timed) gpu.startProfiling();
  const first = gpu.dispatchCount;
  const logitsT = observeOps(
    (op, inputs, out) => {
      // a graph plans its shapes by a dry run of its ops first (GraphModule): those compute nothing
      if (!gpu.dryRunning) seen.push({ op, layer: gpu.scope, inputs: inputs.filter((t): t is Tensor => t !== null), out, lastDispatch: gpu.dispatchCount });
    },
    () => model.forward(input),
  );
  const profile = timed ? await gpu.stopProfiling() : undefined;
  const events = profile?.events ?? [];
  let from = first;
  const rows: TraceRow[] = [];
  for (const s of seen) {
    const mine = events.slice(from - first, s.lastDispatch - first);
    const dispatches = s.lastDispatch - from;
    from = s.lastDispatch;
    const flops = mine.reduce((a, e) => a + e.flops, 0);
    const activation = s.inputs.find((t) => !weights.has(t)) ?? s.inputs[0];
    rows.push({
      op: s.op,
      layer: s.layer,
      inputs: s.inputs.map((t) => t.shape),
      output: s.out.shape,
      params: s.inputs.filter((t) => weights.has(t)).reduce((a, t) => a + t.size, 0),
      flops,
      macs: flops > 0 ? flops / 2 : (ELEMENT_MACS[s.op]?.(activation, s.out) ?? 0),
      gpuMs: timed ? mine.reduce((a, e) => a + (e.endNs - e.beginNs), 0) / 1e6 : NaN,
      dispatches,
      stats: statsOf(await s.out.toArray()),
    });
  }
  const logits = await logitsT.toArray();
  if (!opts.backward) return { rows, logits, profile };

  const classes = logits.length;
  const label = opts.label ?? argmaxRows(logits, classes)[0];
  const loss = crossEntropy(logitsT.reshape([1, classes]), [label]);
  for (const t of weights) {
    t.grad?.release();
    t.grad = null;
  }
  loss.backward();
  input.grad?.release(); // the image's own gradient, kept by backward like a parameter's
  input.grad = null;
  const grads: GradNorm[] = [];
  for (const [name, t] of model.namedParameters()) {
    if (!t.grad) continue;
    const g = await t.grad.toArray();
    grads.push({ name, shape: t.shape, norm: Math.sqrt(g.reduce((a, v) => a + v * v, 0)) });
    t.grad.release();
    t.grad = null;
  }
  return { rows, logits, profile, backward: { label, loss: await loss.item(), grads } };
}
