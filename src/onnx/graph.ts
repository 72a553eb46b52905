// GraphModule: runs an ONNX graph built from supported ops on the engine, node by node in
// topological order, each node mapped onto engine ops (conv2d, batchNorm2d, gemm, pooling, ...).
//
// Values live in two places while a graph runs:
//  - on the GPU as Tensors (activations, parameters, buffers);
//  - on the host as OnnxTensors (Constant nodes, initializers that are not weights, and the
//    values ops need at graph-building time: Reshape's shape, Clip's bounds, labels). A host value
//    that a kernel needs is uploaded on use; a GPU value needed on the host is refused, as reading
//    back inside the forward pass would stall the GPU.
// The weights of Conv, Gemm, MatMul and BatchNormalization become parameters (trainable), the
// batchnorm running statistics buffers, each named after its initializer; exportGraph() writes
// their current values back into the initializers.
// Every intermediate is discarded (Tensor.discard) as soon as its last consumer has run.
import { getGpu } from '../gpu/index.ts';
import { batchNorm2d } from '../ops/batchnorm.ts';
import { concat, padAxis } from '../ops/concat.ts';
import { conv2d } from '../ops/conv2d.ts';
import { dropout } from '../ops/dropout.ts';
import { add, clip, leakyRelu, mul, relu, scale } from '../ops/elementwise.ts';
import { linear, matmul } from '../ops/matmul.ts';
import { avgPool2d, globalAvgPool2d, maxPool2d } from '../ops/pool.ts';
import { softmax, softmaxCrossEntropy } from '../ops/softmax.ts';
import { Module } from '../nn/module.ts';
import { OpError, shapeSize, shapeStr, Tensor } from '../tensor/index.ts';
import { DataType, type AttrValue, type OnnxGraph, type OnnxModel, type OnnxNode, type OnnxTensor } from './ir.ts';
import { OnnxError } from './read.ts';

/** The ONNX ops (default domain) GraphModule runs. */
export const SUPPORTED_OPS = [
  'Add', 'AveragePool', 'BatchNormalization', 'Clip', 'Concat', 'Constant', 'Conv', 'Dropout', 'Flatten', 'Gemm',
  'GlobalAveragePool', 'Identity', 'LeakyRelu', 'MatMul', 'MaxPool', 'Pad', 'Relu', 'Reshape', 'Softmax', 'SoftmaxCrossEntropyLoss',
] as const;

/** Largest finite f32: Clip's open bounds (kept finite so no shader compiler's fast math meets inf). */
const F32_MAX = 3.4028234663852886e38;

/** Which inputs of an op are weights on the GPU: parameters (trainable) or buffers (state). */
const WEIGHT_INPUTS: Record<string, { params: number[]; buffers: number[] }> = {
  Conv: { params: [1, 2], buffers: [] },
  Gemm: { params: [0, 1, 2], buffers: [] },
  MatMul: { params: [0, 1], buffers: [] },
  BatchNormalization: { params: [1, 2], buffers: [3, 4] },
};

const ints = (v: AttrValue | undefined, dflt: number[]): number[] => (v === undefined ? dflt : (v as number[]));
const int = (v: AttrValue | undefined, dflt: number): number => (v === undefined ? dflt : (v as number));
const str = (v: AttrValue | undefined, dflt: string): string => (v === undefined ? dflt : (v as string));

/** A node's name, or its position in the graph for an unnamed one. */
const nodeName = (node: OnnxNode, index: number): string => node.name || `#${index}`;

/** Features of supported ops that are not supported, found from attributes and outputs alone;
 *  `consumed` holds the values other nodes read and the graph outputs. */
function unsupportedFeature(node: OnnxNode, consumed: ReadonlySet<string>): string | null {
  const a = node.attrs;
  const extraOutputs = node.outputs.slice(1).some((o) => o !== '');
  const dil = ints(a.dilations, []);
  switch (node.opType) {
    case 'MaxPool':
    case 'AveragePool':
      if (dil.some((d) => d !== 1)) return `dilations ${JSON.stringify(dil)}`;
      if (extraOutputs) return 'the Indices output';
      return null;
    case 'BatchNormalization':
      // a training-mode export's running statistics outputs are ignored, unless something reads them
      return node.outputs.slice(1).some((o) => consumed.has(o)) ? 'the running statistics outputs (training_mode) in use' : null;
    case 'Pad':
      return str(a.mode, 'constant') !== 'constant' ? `mode '${str(a.mode, 'constant')}'` : null;
    case 'Dropout':
      return extraOutputs ? 'the mask output' : null;
    case 'SoftmaxCrossEntropyLoss':
      if (node.inputs.length > 2 && node.inputs[2] !== '') return 'class weights';
      if (a.ignore_index !== undefined) return 'ignore_index';
      if (str(a.reduction, 'mean') === 'none') return "reduction 'none'";
      if (extraOutputs) return 'the log_prob output';
      return null;
    default:
      return null;
  }
}

/**
 * Refuses, before anything runs, a model using an op (or a feature of one) GraphModule cannot run,
 * with one line: `<source>: unsupported ONNX op 'Foo' (node 'name', opset 13); supported: ...`.
 */
export function checkSupported(model: OnnxModel, source = '<onnx model>'): void {
  const consumed = new Set([...model.graph.nodes.flatMap((n) => n.inputs), ...model.graph.outputs.map((v) => v.name)]);
  for (const [i, node] of model.graph.nodes.entries()) {
    const where = `node '${nodeName(node, i)}', opset ${model.opset}`;
    const op = node.domain && node.domain !== 'ai.onnx' ? `${node.domain}.${node.opType}` : node.opType;
    if (op !== node.opType || !(SUPPORTED_OPS as readonly string[]).includes(op)) {
      throw new OnnxError(source, `unsupported ONNX op '${op}' (${where}); supported: ${SUPPORTED_OPS.join(', ')}`);
    }
    const feature = unsupportedFeature(node, consumed);
    if (feature) throw new OnnxError(source, `unsupported ONNX op '${op}' with ${feature} (${where})`);
  }
}

/** Nodes ordered so that every value is produced before it is consumed. */
function topologicalOrder(graph: OnnxGraph): OnnxNode[] {
  const available = new Set<string>(['', ...graph.inputs.map((v) => v.name), ...graph.initializers.keys()]);
  const pending = [...graph.nodes];
  const order: OnnxNode[] = [];
  while (pending.length) {
    const i = pending.findIndex((n) => n.inputs.every((x) => available.has(x)));
    if (i < 0) {
      const n = pending[0];
      const missing = n.inputs.filter((x) => !available.has(x));
      throw new OnnxError(graph.name || '<graph>', `node '${n.name}' (${n.opType}) reads '${missing[0]}', which no input, initializer or node provides (or the graph has a cycle)`);
    }
    const [n] = pending.splice(i, 1);
    order.push(n);
    for (const o of n.outputs) available.add(o);
  }
  return order;
}

/** A host tensor's values as numbers (int64 included). */
function hostNumbers(t: OnnxTensor): number[] {
  return Array.from(t.data as ArrayLike<number | bigint>, Number);
}

function hostFloats(t: OnnxTensor, op: string): Float32Array {
  if (t.dataType !== DataType.FLOAT && t.dataType !== DataType.DOUBLE) {
    throw new OpError(op, `'${t.name}' is a tensor of ONNX data type ${t.dataType}; only float tensors run on the GPU`);
  }
  return t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as Float64Array);
}

/** Numpy broadcasting of two shapes, or null when they do not broadcast. */
function broadcastShape(a: readonly number[], b: readonly number[]): number[] | null {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) return null;
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** Host-side numpy broadcast of `data` with shape `from` to shape `to`. */
function expandHost(data: Float32Array, from: readonly number[], to: readonly number[]): Float32Array {
  const n = to.length;
  const fromFull = [...Array(n - from.length).fill(1), ...from];
  const out = new Float32Array(shapeSize(to));
  const idx = new Array(n).fill(0);
  for (let k = 0; k < out.length; k++) {
    let src = 0;
    for (let d = 0; d < n; d++) src = src * fromFull[d] + (fromFull[d] === 1 ? 0 : idx[d]);
    out[k] = data[src];
    for (let d = n - 1; d >= 0; d--) {
      if (++idx[d] < to[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

/** ONNX pads of a 2-D window op as [top, left, bottom, right], resolving auto_pad. */
function windowPads(node: OnnxNode, H: number, W: number, k: [number, number], s: [number, number], d: [number, number]): number[] {
  const autoPad = str(node.attrs.auto_pad, 'NOTSET');
  if (autoPad === 'NOTSET') return ints(node.attrs.pads, [0, 0, 0, 0]);
  if (autoPad === 'VALID') return [0, 0, 0, 0];
  if (autoPad !== 'SAME_UPPER' && autoPad !== 'SAME_LOWER') throw new OpError(node.opType, `unknown auto_pad '${autoPad}'`);
  const pads = [0, 0, 0, 0];
  [H, W].forEach((size, i) => {
    const out = Math.ceil(size / s[i]);
    const total = Math.max(0, (out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - size);
    const small = Math.floor(total / 2);
    // SAME_UPPER puts the extra padding at the end, SAME_LOWER at the beginning
    pads[i] = autoPad === 'SAME_UPPER' ? small : total - small;
    pads[i + 2] = total - pads[i];
  });
  return pads;
}

/**
 * Splits ONNX pads [top, left, bottom, right] into the symmetric part the engine's kernels take
 * (at most `limit` per side) and the rest, applied as an explicit pad step of `value` rows.
 */
function splitPads(x: Tensor, pads: number[], limit: [number, number], value: number): { x: Tensor; padding: [number, number] } {
  if (pads.length !== 4 || pads.some((p) => !Number.isInteger(p) || p < 0)) throw new OpError('pads', `expected 4 non-negative pads, got ${JSON.stringify(pads)}`);
  const padding: [number, number] = [0, 0];
  let y = x;
  for (const i of [0, 1]) {
    padding[i] = Math.min(pads[i], pads[i + 2], limit[i]);
    const before = pads[i] - padding[i];
    const after = pads[i + 2] - padding[i];
    if (before > 0 || after > 0) {
      const next = padAxis(y, 2 + i, before, after, value);
      if (y !== x) y.discard();
      y = next;
    }
  }
  return { x: y, padding };
}

/** The Module's view of a 2-D window attribute (kernel_shape, strides, ...). */
function pairAttr(node: OnnxNode, name: string, dflt: number): [number, number] {
  const v = ints(node.attrs[name], [dflt, dflt]);
  if (v.length !== 2) throw new OpError(node.opType, `only 2-D ${node.opType} is supported: ${name} ${JSON.stringify(v)}`);
  return [v[0], v[1]];
}

type Value = Tensor | OnnxTensor;

/** One run's values by name, with what to release when. */
class Env {
  readonly values = new Map<string, Value>();
  /** host values uploaded during this run */
  readonly uploads = new Map<string, Tensor>();
  constructor(readonly module: GraphModule) {}

  /** The value as a GPU tensor (host values are uploaded once per run). */
  gpu(name: string, op: string): Tensor {
    const v = this.values.get(name) ?? this.module.weights.get(name) ?? this.module.graph.initializers.get(name);
    if (v === undefined) throw new OpError(op, `no value '${name}'`);
    if (v instanceof Tensor) return v;
    let t = this.uploads.get(name);
    if (!t) {
      t = Tensor.from(hostFloats(v, op), v.dims);
      this.uploads.set(name, t);
    }
    return t;
  }

  /** The value as a host tensor: it must be known before anything runs (a constant or a host input). */
  host(name: string, op: string): OnnxTensor {
    const v = this.values.get(name) ?? this.module.graph.initializers.get(name);
    if (v === undefined) throw new OpError(op, `no value '${name}'`);
    if (v instanceof Tensor) throw new OpError(op, `'${name}' must be a constant (an initializer, a Constant node or a host input), but it is computed on the GPU`);
    return v;
  }

  /** The value's shape wherever it lives. */
  shape(name: string, op: string): number[] {
    const v = this.values.get(name) ?? this.module.weights.get(name) ?? this.module.graph.initializers.get(name);
    if (v === undefined) throw new OpError(op, `no value '${name}'`);
    return v instanceof Tensor ? [...v.shape] : v.dims;
  }

  isHost(name: string): boolean {
    const v = this.values.get(name) ?? this.module.weights.get(name) ?? this.module.graph.initializers.get(name);
    return v !== undefined && !(v instanceof Tensor);
  }
}

export interface GraphModuleOptions {
  /** names the model in error messages (its file) */
  source?: string;
}

export class GraphModule extends Module {
  readonly graph: OnnxGraph;
  readonly opset: number;
  readonly source: string;
  /** parameters and buffers by initializer name */
  readonly weights = new Map<string, Tensor>();
  private readonly order: OnnxNode[];
  /** index in `order` of the last node reading each value */
  private readonly lastUse = new Map<string, number>();
  private dropoutSeed = 1;

  /** Checks the model (checkSupported) and uploads its weights. Starts in eval mode, as ONNX runtimes run it. */
  constructor(model: OnnxModel, opts: GraphModuleOptions = {}) {
    super();
    this.source = opts.source ?? (model.graph.name || '<onnx model>');
    checkSupported(model, this.source);
    this.graph = model.graph;
    this.opset = model.opset;
    this.order = topologicalOrder(model.graph);
    this.order.forEach((n, i) => n.inputs.forEach((x) => this.lastUse.set(x, i)));
    for (const node of this.order) {
      const roles = WEIGHT_INPUTS[node.opType];
      if (!roles) continue;
      for (const [kind, slots] of [['param', roles.params], ['buffer', roles.buffers]] as const) {
        for (const i of slots) {
          const name = node.inputs[i];
          const init = name ? model.graph.initializers.get(name) : undefined;
          if (!init || this.weights.has(name)) continue;
          const t = Tensor.from(hostFloats(init, node.opType), init.dims);
          this.weights.set(name, kind === 'param' ? this.param(name, t) : this.buffer(name, t));
        }
      }
    }
    this.eval();
  }

  /** The graph's single input -> its first output. */
  forward(x: Tensor): Tensor {
    const inputs = this.graph.inputs;
    if (inputs.length !== 1) {
      throw new OpError('GraphModule', `${this.source} has ${inputs.length} inputs (${inputs.map((v) => v.name).join(', ')}): use run()`);
    }
    const out = this.run({ [inputs[0].name]: x });
    const first = this.graph.outputs[0].name;
    const y = out[first];
    if (!(y instanceof Tensor)) throw new OpError('GraphModule', `output '${first}' of ${this.source} is a constant`);
    return y;
  }

  /**
   * Runs the graph on named inputs: GPU tensors, or host tensors for values ops need as constants
   * (Reshape's shape, Clip's bounds, class labels). Returns every graph output.
   */
  run(inputs: Record<string, Tensor | OnnxTensor>): Record<string, Tensor | OnnxTensor> {
    const env = new Env(this);
    for (const v of this.graph.inputs) {
      const x = inputs[v.name];
      if (x === undefined) throw new OpError('GraphModule', `${this.source}: missing input '${v.name}'`);
      env.values.set(v.name, x);
    }
    const outputs = new Set(this.graph.outputs.map((v) => v.name));
    this.order.forEach((node, i) => {
      let results: Value[];
      try {
        results = getGpu().withScope(nodeName(node, i), () => this.runNode(node, env));
      } catch (e) {
        if (e instanceof OpError) throw new OpError(`${this.source}: node '${nodeName(node, this.graph.nodes.indexOf(node))}'`, e.message);
        throw e;
      }
      node.outputs.forEach((o, k) => o !== '' && env.values.set(o, results[k]));
      for (const name of new Set(node.inputs)) {
        if (this.lastUse.get(name) !== i || outputs.has(name) || name in inputs) continue;
        const v = env.values.get(name);
        if (v instanceof Tensor) v.discard();
        env.uploads.get(name)?.discard();
      }
    });
    const result: Record<string, Tensor | OnnxTensor> = {};
    for (const name of outputs) {
      const v = env.values.get(name) ?? this.graph.initializers.get(name);
      if (v === undefined) throw new OpError('GraphModule', `${this.source}: no node produces output '${name}'`);
      result[name] = v;
    }
    return result;
  }

  /** The graph with its initializers replaced by the current parameters and buffers (for export). */
  async exportGraph(): Promise<OnnxGraph> {
    const initializers = new Map(this.graph.initializers);
    for (const [name, t] of this.weights) {
      const old = initializers.get(name)!;
      initializers.set(name, { name, dims: [...old.dims], dataType: DataType.FLOAT, data: await t.toArray() });
    }
    return { ...this.graph, initializers };
  }

  private runNode(node: OnnxNode, env: Env): Value[] {
    const op = node.opType;
    const a = node.attrs;
    const x = () => env.gpu(node.inputs[0], op);
    const optional = (i: number) => (i < node.inputs.length && node.inputs[i] !== '' ? node.inputs[i] : null);
    switch (op) {
      case 'Constant':
        return [this.constantValue(node)];
      case 'Identity':
      case 'Dropout': {
        if (env.isHost(node.inputs[0])) return [env.host(node.inputs[0], op)];
        // ONNX drops only with the training_mode input (opset 12+) set; a module in training mode always does
        const modeName = optional(2);
        if (op === 'Dropout' && (this.training || (modeName !== null && hostNumbers(env.host(modeName, op))[0] !== 0))) {
          const ratioName = optional(1);
          const ratio = ratioName ? hostNumbers(env.host(ratioName, op))[0] : (a.ratio as number | undefined) ?? 0.5;
          return [dropout(x(), ratio, true, this.dropoutSeed++)];
        }
        const t = x();
        return [t.reshape(t.shape)]; // a view: same memory, gradient passed through
      }
      case 'Relu':
        return [relu(x())];
      case 'LeakyRelu':
        return [leakyRelu(x(), (a.alpha as number | undefined) ?? 0.01)];
      case 'Clip': {
        let lo = -F32_MAX;
        let hi = F32_MAX;
        if (this.opset < 11) {
          lo = (a.min as number | undefined) ?? lo;
          hi = (a.max as number | undefined) ?? hi;
        } else {
          const min = optional(1);
          const max = optional(2);
          if (min) lo = hostNumbers(env.host(min, op))[0];
          if (max) hi = hostNumbers(env.host(max, op))[0];
        }
        return [clip(x(), lo, hi)];
      }
      case 'Add':
        return [this.add(node, env)];
      case 'Conv':
        return [this.conv(node, env)];
      case 'BatchNormalization': {
        const eps = (a.epsilon as number | undefined) ?? 1e-5;
        // ONNX's momentum weighs the running value, torch's the batch statistic
        const momentum = 1 - ((a.momentum as number | undefined) ?? 0.9);
        // a training-mode export (running statistics outputs, which checkSupported saw are unused)
        // describes the same network as an eval-mode one: the module's mode decides
        const statsOutputs = node.outputs.slice(1).some((o) => o !== '');
        const training = this.training || (int(a.training_mode, 0) === 1 && !statsOutputs);
        const [w, b, mean, v] = [1, 2, 3, 4].map((i) => env.gpu(node.inputs[i], op));
        return [batchNorm2d(x(), w, b, mean, v, { training, eps, momentum })];
      }
      case 'MaxPool':
      case 'AveragePool':
        return [this.pool(node, env)];
      case 'GlobalAveragePool':
        return [globalAvgPool2d(x())];
      case 'Pad':
        return [this.pad(node, env)];
      case 'Gemm':
        return [this.gemm(node, env)];
      case 'MatMul': {
        const [p, q] = [env.gpu(node.inputs[0], op), env.gpu(node.inputs[1], op)];
        if (p.ndim !== 2 || q.ndim !== 2) throw new OpError(op, `only 2-D MatMul is supported, got ${shapeStr(p.shape)} x ${shapeStr(q.shape)}`);
        return [matmul(p, q)];
      }
      case 'Flatten': {
        const t = x();
        const axis = int(a.axis, 1) < 0 ? int(a.axis, 1) + t.ndim : int(a.axis, 1);
        if (axis < 0 || axis > t.ndim) throw new OpError(op, `axis ${a.axis} out of range for ${shapeStr(t.shape)}`);
        return [t.reshape([shapeSize(t.shape.slice(0, axis)), shapeSize(t.shape.slice(axis))])];
      }
      case 'Reshape':
        return [this.reshape(node, env)];
      case 'Softmax':
        return [this.softmax(node, env)];
      case 'Concat': {
        const axis = a.axis as number | undefined;
        if (axis === undefined) throw new OpError(op, 'the axis attribute is required');
        return [concat(node.inputs.filter((n) => n !== '').map((n) => env.gpu(n, op)), axis)];
      }
      case 'SoftmaxCrossEntropyLoss': {
        const scores = x();
        const labels = hostNumbers(env.host(node.inputs[1], op));
        const reduction = str(a.reduction, 'mean') as 'mean' | 'sum';
        return [softmaxCrossEntropy(scores, labels, { reduction }).reshape([])];
      }
      default:
        throw new OpError(op, 'unsupported op'); // checkSupported refused it already
    }
  }

  private constantValue(node: OnnxNode): OnnxTensor {
    const a = node.attrs;
    const name = node.outputs[0];
    if (a.value !== undefined) return { ...(a.value as OnnxTensor), name };
    if (a.value_float !== undefined) return { name, dims: [], dataType: DataType.FLOAT, data: Float32Array.of(a.value_float as number) };
    if (a.value_floats !== undefined) {
      const v = a.value_floats as number[];
      return { name, dims: [v.length], dataType: DataType.FLOAT, data: Float32Array.from(v) };
    }
    if (a.value_int !== undefined) return { name, dims: [], dataType: DataType.INT64, data: BigInt64Array.of(BigInt(a.value_int as number)) };
    if (a.value_ints !== undefined) {
      const v = a.value_ints as number[];
      return { name, dims: [v.length], dataType: DataType.INT64, data: BigInt64Array.from(v, (n) => BigInt(n)) };
    }
    throw new OpError('Constant', `only value, value_float(s) and value_int(s) are supported, got ${Object.keys(a).join(', ')}`);
  }

  /** Constant-mode Pad: pads [begin per axis..., end per axis...] from the attribute (opset < 11) or
   *  the host input 1 with the value of input 2 (opset 11+), over every axis or those of input 3. */
  private pad(node: OnnxNode, env: Env): Tensor {
    const x = env.gpu(node.inputs[0], 'Pad');
    const input = (i: number) => (i < node.inputs.length && node.inputs[i] !== '' ? hostNumbers(env.host(node.inputs[i], 'Pad')) : null);
    const pads = this.opset < 11 ? ints(node.attrs.pads, []) : input(1) ?? [];
    const value = this.opset < 11 ? ((node.attrs.value as number | undefined) ?? 0) : input(2)?.[0] ?? 0;
    const axes = (input(3) ?? x.shape.map((_, i) => i)).map((ax) => (ax < 0 ? ax + x.ndim : ax));
    if (pads.length !== 2 * axes.length || pads.some((p) => !Number.isInteger(p) || p < 0)) {
      throw new OpError('Pad', `expected ${2 * axes.length} non-negative pads for x${shapeStr(x.shape)}, got ${JSON.stringify(pads)}`);
    }
    let y = x;
    axes.forEach((axis, i) => {
      const [before, after] = [pads[i], pads[i + axes.length]];
      if (before === 0 && after === 0) return;
      const next = padAxis(y, axis, before, after, value);
      if (y !== x) y.discard();
      y = next;
    });
    return y === x ? x.reshape(x.shape) : y; // no padding: a view, like Identity
  }

  /** Same shapes on the GPU; otherwise the operand that broadcasts must be a host constant, expanded on the host. */
  private add(node: OnnxNode, env: Env): Tensor {
    const [p, q] = node.inputs;
    const [sp, sq] = [env.shape(p, 'Add'), env.shape(q, 'Add')];
    const out = broadcastShape(sp, sq);
    if (!out) throw new OpError('Add', `shapes ${shapeStr(sp)} and ${shapeStr(sq)} do not broadcast`);
    const expanded: Tensor[] = [];
    const full = (name: string, shape: number[]): Tensor => {
      if (shapeSize(shape) === shapeSize(out) && shape.length === out.length) return env.gpu(name, 'Add');
      if (!env.isHost(name)) {
        throw new OpError('Add', `broadcasting ${shapeStr(sp)} + ${shapeStr(sq)} needs the smaller operand '${name}' to be a constant`);
      }
      const t = Tensor.from(expandHost(hostFloats(env.host(name, 'Add'), 'Add'), shape, out), out);
      expanded.push(t);
      return t;
    };
    const y = add(full(p, sp), full(q, sq));
    for (const t of expanded) t.discard();
    return y;
  }

  private conv(node: OnnxNode, env: Env): Tensor {
    const x = env.gpu(node.inputs[0], 'Conv');
    const w = env.gpu(node.inputs[1], 'Conv');
    const biasName = node.inputs[2];
    const b = biasName ? env.gpu(biasName, 'Conv') : null;
    if (x.ndim !== 4 || w.ndim !== 4) throw new OpError('Conv', `only 2-D Conv is supported, got x${shapeStr(x.shape)} w${shapeStr(w.shape)}`);
    const k: [number, number] = [w.shape[2], w.shape[3]];
    const stride = pairAttr(node, 'strides', 1);
    const dilation = pairAttr(node, 'dilations', 1);
    const pads = windowPads(node, x.shape[2], x.shape[3], k, stride, dilation);
    // asymmetric pads: the symmetric part in the kernel, the rest as a zero-padding step
    const padded = splitPads(x, pads, [Infinity, Infinity], 0);
    const y = conv2d(padded.x, w, b, { stride, dilation, padding: padded.padding, groups: int(node.attrs.group, 1) });
    if (padded.x !== x) padded.x.discard();
    return y;
  }

  /**
   * MaxPool / AveragePool. The engine's kernels take symmetric padding up to half the window; other
   * pads become an explicit pad step (-inf for max). An average that excludes padding
   * (count_include_pad = 0) over explicitly padded input is corrected by the host-computed factor
   * window / valid elements per output position.
   */
  private pool(node: OnnxNode, env: Env): Tensor {
    const op = node.opType;
    const x = env.gpu(node.inputs[0], op);
    if (x.ndim !== 4) throw new OpError(op, `only 2-D ${op} is supported, got x${shapeStr(x.shape)}`);
    const [N, C, H, W] = x.shape;
    const k = pairAttr(node, 'kernel_shape', 0);
    const stride = pairAttr(node, 'strides', 1);
    const pads = windowPads(node, H, W, k, stride, [1, 1]);
    const ceilMode = int(node.attrs.ceil_mode, 0) === 1;
    const half: [number, number] = [Math.floor(k[0] / 2), Math.floor(k[1] / 2)];
    if (op === 'MaxPool') {
      const padded = splitPads(x, pads, half, -Infinity);
      const y = maxPool2d(padded.x, { kernel: k, stride, padding: padded.padding, ceilMode });
      if (padded.x !== x) padded.x.discard();
      return y;
    }
    const includePad = int(node.attrs.count_include_pad, 0) === 1;
    const symmetric = pads[0] === pads[2] && pads[1] === pads[3] && pads[0] <= half[0] && pads[1] <= half[1];
    if (symmetric || includePad) {
      const padded = splitPads(x, pads, half, 0);
      const y = avgPool2d(padded.x, { kernel: k, stride, padding: padded.padding, ceilMode, countIncludePad: includePad });
      if (padded.x !== x) padded.x.discard();
      return y;
    }
    const padded = splitPads(x, pads, [0, 0], 0);
    const sums = avgPool2d(padded.x, { kernel: k, stride, ceilMode, countIncludePad: true });
    const [OH, OW] = [sums.shape[2], sums.shape[3]];
    const factor = new Float32Array(N * C * OH * OW);
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        const h0 = oh * stride[0] - pads[0];
        const w0 = ow * stride[1] - pads[1];
        const rows = Math.min(h0 + k[0], H) - Math.max(h0, 0);
        const cols = Math.min(w0 + k[1], W) - Math.max(w0, 0);
        // the kernel divided by the window's cells inside the padded input
        const cells = (Math.min(h0 + k[0], H + pads[2]) - h0) * (Math.min(w0 + k[1], W + pads[3]) - w0);
        for (let p = 0; p < N * C; p++) factor[(p * OH + oh) * OW + ow] = cells / Math.max(1, rows * cols);
      }
    }
    const f = Tensor.from(factor, sums.shape);
    const y = mul(sums, f);
    if (padded.x !== x) padded.x.discard();
    sums.discard();
    f.discard();
    return y;
  }

  /** Gemm: y = alpha op(A) op(B) + beta C, C broadcast to [M, N]. */
  private gemm(node: OnnxNode, env: Env): Tensor {
    const a = node.attrs;
    const alpha = (a.alpha as number | undefined) ?? 1;
    const beta = (a.beta as number | undefined) ?? 1;
    const transA = int(a.transA, 0) === 1;
    const transB = int(a.transB, 0) === 1;
    const A = env.gpu(node.inputs[0], 'Gemm');
    const B = env.gpu(node.inputs[1], 'Gemm');
    const cName = node.inputs[2] || null;
    let C = cName ? env.gpu(cName, 'Gemm') : null;
    if (A.ndim !== 2 || B.ndim !== 2) throw new OpError('Gemm', `A and B must be 2-D, got ${shapeStr(A.shape)}, ${shapeStr(B.shape)}`);
    const M = transA ? A.shape[1] : A.shape[0];
    const N = transB ? B.shape[0] : B.shape[1];
    // the common case, a torch Linear layer: one kernel with the bias fused
    if (!transA && transB && alpha === 1 && beta === 1 && (!C || (C.size === N && C.shape[C.ndim - 1] === N && C.ndim <= 2))) {
      return linear(A, B, C && C.ndim === 2 ? C.reshape([N]) : C);
    }
    let y = matmul(A, B, { transA, transB });
    if (alpha !== 1) y = scale(y, alpha);
    if (!C || beta === 0) return y;
    if (beta !== 1) C = scale(C, beta);
    // broadcast C ([], [1], [N], [1,N], [M,1] or [M,N]) to [M,N] by products with ones, which the tape differentiates
    const [rows, cols] = C.ndim === 2 ? C.shape : [1, C.ndim === 1 ? C.shape[0] : 1];
    if ((rows !== 1 && rows !== M) || (cols !== 1 && cols !== N)) throw new OpError('Gemm', `C ${shapeStr(C.shape)} does not broadcast to [${M},${N}]`);
    let c = C.reshape([rows, cols]);
    if (rows === 1 && M !== 1) c = matmul(Tensor.ones([M, 1]), c);
    if (cols === 1 && N !== 1) c = matmul(c, Tensor.ones([1, N]));
    return add(y, c);
  }

  /** Reshape with ONNX's 0 (copy the input's dimension, unless allowzero) and -1 (inferred). */
  private reshape(node: OnnxNode, env: Env): Value {
    const spec = hostNumbers(env.host(node.inputs[1], 'Reshape'));
    const allowZero = int(node.attrs.allowzero, 0) === 1;
    const inShape = env.shape(node.inputs[0], 'Reshape');
    const shape = spec.map((d, i) => (d === 0 && !allowZero ? inShape[i] : d));
    const free = shape.indexOf(-1);
    if (free >= 0) {
      const rest = shapeSize(shape.filter((_, i) => i !== free));
      if (rest === 0 || shapeSize(inShape) % rest !== 0) throw new OpError('Reshape', `cannot reshape ${shapeStr(inShape)} to ${shapeStr(spec)}`);
      shape[free] = shapeSize(inShape) / rest;
    }
    if (env.isHost(node.inputs[0])) {
      const t = env.host(node.inputs[0], 'Reshape');
      if (shapeSize(shape) !== shapeSize(t.dims)) throw new OpError('Reshape', `cannot reshape ${shapeStr(inShape)} to ${shapeStr(spec)}`);
      return { ...t, dims: shape };
    }
    return env.gpu(node.inputs[0], 'Reshape').reshape(shape);
  }

  /**
   * Softmax. Opset < 13 coerces the input to 2-D at `axis` (rows: the dimensions before it) and
   * normalizes each row; opset 13 normalizes along `axis` alone, which is the same when every
   * dimension after it is 1 (the last axis, the usual case). Other axes would need a transpose.
   */
  private softmax(node: OnnxNode, env: Env): Tensor {
    const x = env.gpu(node.inputs[0], 'Softmax');
    const r = x.ndim;
    const raw = int(node.attrs.axis, this.opset < 13 ? 1 : -1);
    const axis = raw < 0 ? raw + r : raw;
    if (axis < 0 || axis >= r) throw new OpError('Softmax', `axis ${raw} out of range for ${shapeStr(x.shape)}`);
    if (this.opset >= 13 && shapeSize(x.shape.slice(axis + 1)) !== 1) {
      throw new OpError('Softmax', `softmax along axis ${raw} of ${shapeStr(x.shape)} is not supported (only along the last axis)`);
    }
    const rows = shapeSize(x.shape.slice(0, axis));
    const rows2d = x.reshape([rows, x.size / Math.max(1, rows)]);
    const y = softmax(rows2d);
    const out = y.reshape(x.shape);
    for (const view of [rows2d, y]) view.discard(); // `out` holds the memory
    return out;
  }
}
