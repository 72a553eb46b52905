// GraphModule: runs an ONNX graph on the engine, each node through its entry in the op registry
// (src/onnx/ops/). A graph goes through three stages:
//
//  1. load (constructor): the graph is checked (every op in the registry, no feature gpunet lacks,
//     float32 tensors, every value produced once), nodes whose inputs are all constants are folded
//     into initializers (an Identity of a weight becomes a weight of its own), decomposed layer
//     norms are fused (src/onnx/fuse.ts), and the initializers in weight slots become parameters
//     (trainable) and buffers (batchnorm running statistics), each named after its initializer;
//     exportGraph() writes their current values back.
//  2. plan (once per input shape): with the input shapes fixed, every node whose inputs are known
//     (constants, and the shapes of activations: Shape -> Gather -> Concat -> Reshape) is folded on
//     the host, as onnxruntime's optimiser and onnx-simplifier do; the other nodes are run dry
//     (Gpu.dryRun: shapes only, nothing reaches the device), so every refusal comes as one line
//     naming the node, the op and the opset before anything runs.
//  3. run: the planned nodes run on the GPU in order; every intermediate is discarded
//     (Tensor.discard) as soon as its last consumer has run.
//
// Values live on the GPU (Tensors: activations, weights) or on the host (OnnxTensors: constants,
// folded shapes, and inputs an op reads as settings: Reshape's shape, Clip's bounds, labels).
import { getGpu, GpuError } from '../gpu/index.ts';
import { Module } from '../nn/module.ts';
import { type FeatureMapSplit, halves, type LayerRow, type ModelSplit } from '../nn/split.ts';
import { noGrad, OpError, type Rng, shapeStr, Tensor, tidy } from '../tensor/index.ts';
import { META } from './classifier.ts';
import { fuseLayerNorms } from './fuse.ts';
import { DataType, type OnnxGraph, type OnnxModel, type OnnxNode, type OnnxTensor, type ValueInfo } from './ir.ts';
import type { Network } from './network.ts';
import { NodeContext, ONNX_OPS, supportedOpsText, type OnnxOp, type Value, type ValueSource } from './ops/index.ts';
import { floats, isFloat } from './ops/op.ts';
import { typeName } from './ops/host.ts';
import { OnnxError } from './read.ts';
import { TransferModel } from './transfer.ts';
import { irVersionFor } from './write.ts';

/** A refusal: the model is valid ONNX, but uses an op, a feature or a type gpunet does not run. */
export class UnsupportedError extends OnnxError {
  constructor(source: string, problem: string) {
    super(source, problem);
    this.name = 'UnsupportedError';
  }
}

/** PyTorch's scoped node name without the scopes its next one repeats:
 *  '/features/features.5/features.5.0/block/block.0/Conv' -> 'features.5.0/block.0/Conv'. */
function shortNodeName(name: string): string {
  const parts = name.split('/').filter((p) => p !== '');
  return parts.filter((p, i) => !(parts[i + 1] ?? '').startsWith(`${p}.`)).join('/');
}

/** A node's name, or its position in the graph for an unnamed one. */
const nodeName = (node: OnnxNode, index: number): string => node.name || `#${index}`;

const opName = (node: OnnxNode) => (node.domain && node.domain !== 'ai.onnx' ? `${node.domain}.${node.opType}` : node.opType);

/** The registry entry of a node (checkSupported ran: it exists). */
const entry = (node: OnnxNode): OnnxOp => ONNX_OPS[node.opType];

/** How a node input is a weight: 'param', 'buffer', or null (a constant or an activation). */
function weightRole(def: OnnxOp, slot: number, init: OnnxTensor | undefined): 'param' | 'buffer' | null {
  if (!init || !isFloat(init.dataType)) return null;
  if (def.buffers?.includes(slot)) return 'buffer';
  if (!def.params?.includes(slot)) return null;
  return def.scalarsAreConstants && init.data.length <= 1 ? null : 'param';
}

/** Nodes ordered so that every value is produced before it is consumed. */
function topologicalOrder(graph: OnnxGraph, source: string, opset: number): OnnxNode[] {
  const available = new Set<string>(['', ...graph.inputs.map((v) => v.name), ...graph.initializers.keys()]);
  const pending = graph.nodes.map((n, i) => ({ n, i }));
  const order: OnnxNode[] = [];
  while (pending.length) {
    const k = pending.findIndex(({ n }) => n.inputs.every((x) => available.has(x)));
    if (k < 0) {
      const { n, i } = pending[0];
      const missing = n.inputs.find((x) => !available.has(x));
      throw new OnnxError(source, `node '${nodeName(n, i)}' (${n.opType}, opset ${opset}) reads '${missing}', which no input, initializer or node provides (a missing initializer, or a cycle)`);
    }
    const [{ n }] = pending.splice(k, 1);
    order.push(n);
    for (const o of n.outputs) available.add(o);
  }
  return order;
}

/**
 * Refuses, before anything runs, a model gpunet cannot run, with one line naming the file: an op
 * (or a feature of one) the registry lacks (`<source>: unsupported ONNX op 'Foo' (node 'name',
 * opset 13); supported: ...`), no outputs, a value produced twice, tensors that are not float32.
 */
export function checkSupported(model: OnnxModel, source = '<onnx model>'): void {
  const g = model.graph;
  if (g.outputs.length === 0) throw new OnnxError(source, 'the graph has no outputs');
  const produced = new Set<string>([...g.inputs.map((v) => v.name), ...g.initializers.keys()]);
  for (const [i, node] of g.nodes.entries()) {
    for (const o of node.outputs) {
      if (o === '') continue;
      if (produced.has(o)) throw new OnnxError(source, `node '${nodeName(node, i)}' (${node.opType}, opset ${model.opset}) writes '${o}', which an input, an initializer or another node provides already`);
      produced.add(o);
    }
  }
  const consumed = new Set([...g.nodes.flatMap((n) => n.inputs), ...g.outputs.map((v) => v.name)]);
  for (const [i, node] of g.nodes.entries()) {
    const where = `node '${nodeName(node, i)}', opset ${model.opset}`;
    const op = opName(node);
    const def = op === node.opType ? ONNX_OPS[op] : undefined;
    if (!def) throw new UnsupportedError(source, `unsupported ONNX op '${op}' (${where}); supported: ${supportedOpsText()}`);
    const feature = def.refuse?.(node, { opset: model.opset, consumed });
    if (feature) throw new UnsupportedError(source, `unsupported ONNX op '${op}' with ${feature} (${where})`);
  }
  const notFloat32 = (t: { name: string }, type: number, what: string) => {
    if (type === DataType.DOUBLE || type === DataType.FLOAT16) {
      throw new UnsupportedError(source, `${what} '${t.name}' is ${typeName(type)}: gpunet computes in float32 only (export the model in float32, e.g. model.float() in PyTorch)`);
    }
  };
  for (const t of g.initializers.values()) notFloat32(t, t.dataType, 'initializer');
  for (const v of g.inputs) notFloat32(v, v.elemType, 'input');
  for (const v of g.outputs) notFloat32(v, v.elemType, 'output');
}

/** Refuses float initializers holding NaN or infinity (a corrupt or diverged file), naming the first. */
export function checkFinite(graph: OnnxGraph, source: string): void {
  for (const t of graph.initializers.values()) {
    if (t.dataType !== DataType.FLOAT) continue;
    const data = t.data as Float32Array;
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i])) throw new OnnxError(source, `initializer '${t.name}' holds ${data[i]} at element ${i}: the file is corrupt or its weights diverged`);
    }
  }
}

/** The order, and the values of the nodes whose inputs are all constants (initializers or folded
 *  before): the outputs of foldable nodes become initializers and the nodes go. */
function foldConstants(model: OnnxModel, source: string): OnnxGraph {
  const g = model.graph;
  const initializers = new Map(g.initializers);
  const nodes: OnnxNode[] = [];
  for (const node of topologicalOrder(g, source, model.opset)) {
    const def = entry(node);
    const known = node.inputs.every((x, slot) => x === '' || (initializers.has(x) && !weightRole(def, slot, initializers.get(x))));
    const folded = def.fold && known ? foldNode(node, def, model.opset, (name) => initializers.get(name), source) : null;
    if (folded) folded.forEach((t, k) => node.outputs[k] !== '' && initializers.set(node.outputs[k], { ...t, name: node.outputs[k] }));
    else nodes.push(node);
  }
  // keep what the remaining nodes and the outputs read
  const used = new Set([...nodes.flatMap((n) => n.inputs), ...g.outputs.map((v) => v.name)]);
  return { ...g, nodes, initializers: new Map([...initializers].filter(([name]) => used.has(name))) };
}

/** A node's folded outputs from host values (null: it must run), its errors as one line naming it. */
function foldNode(node: OnnxNode, def: OnnxOp, opset: number, value: (name: string) => Value | undefined, source: string): OnnxTensor[] | null {
  const ctx = new NodeContext(node, { opset, training: false, value, upload: () => { throw new OpError(node.opType, 'cannot upload while folding'); }, seed: () => 0 });
  return atNode(node, opset, source, () => def.fold!(ctx));
}

/** Runs `fn` for `node`, turning an op's error into one line naming the file, the node, the op and the opset. */
function atNode<T>(node: OnnxNode, opset: number, source: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof OpError || e instanceof GpuError) {
      const message = e.message.startsWith(`${node.opType}: `) ? e.message.slice(node.opType.length + 2) : e.message;
      const wrapped = new OnnxError(source, `node '${node.name || node.outputs[0]}' (${node.opType}, opset ${opset}): ${message}`);
      wrapped.cause = e; // (inference sees a GPU limit it can meet with smaller batches)
      throw wrapped;
    }
    throw e;
  }
}

/** Gives every buffer initializer a copy of its own when something else reads it too (an exporter's
 *  deduplication: a running mean of zeros shared with a bias), since it is state that changes. */
function ownBuffers(graph: OnnxGraph): OnnxGraph {
  const readers = new Map<string, number>();
  for (const n of graph.nodes) for (const x of n.inputs) readers.set(x, (readers.get(x) ?? 0) + 1);
  const initializers = new Map(graph.initializers);
  const nodes = graph.nodes.map((node) => {
    const def = entry(node);
    const inputs = node.inputs.map((x, slot) => {
      const init = initializers.get(x);
      if (weightRole(def, slot, init) !== 'buffer' || (readers.get(x) ?? 0) <= 1) return x;
      readers.set(x, readers.get(x)! - 1);
      let name = `${x}.${node.outputs[0]}`;
      while (initializers.has(name)) name += '_';
      initializers.set(name, { ...init!, name, data: init!.data.slice() });
      return name;
    });
    return inputs.some((x, i) => x !== node.inputs[i]) ? { ...node, inputs } : node;
  });
  return { ...graph, nodes, initializers };
}

/** The nodes that run for one input signature, and the values folded for it. */
interface Plan {
  /** values known before the graph runs, beyond the initializers: folded shape arithmetic */
  constants: Map<string, OnnxTensor>;
  /** the nodes that run on the GPU, in order */
  steps: OnnxNode[];
  /** index in `steps` of the last step reading each value */
  lastUse: Map<string, number>;
  /** the shape of every value */
  shapes: Map<string, number[]>;
}

/** One run's values and uploads; the ValueSource of its NodeContexts. */
class Env implements ValueSource {
  readonly values = new Map<string, Value>();
  /** host values uploaded during this run */
  readonly uploads = new Map<string, Tensor>();
  constructor(
    private readonly module: GraphModule,
    private readonly constants: Map<string, OnnxTensor>,
  ) {}

  get opset(): number {
    return this.module.opset;
  }

  get training(): boolean {
    return this.module.training;
  }

  value(name: string): Value | undefined {
    return this.values.get(name) ?? this.constants.get(name) ?? this.module.weights.get(name) ?? this.module.graph.initializers.get(name);
  }

  upload(name: string, t: OnnxTensor): Tensor {
    let u = this.uploads.get(name);
    if (!u) {
      u = Tensor.from(floats(t, name), t.dims);
      this.uploads.set(name, u);
    }
    return u;
  }

  seed(): number {
    return this.module.nextSeed();
  }
}

export interface GraphModuleOptions {
  /** names the model in error messages (its file) */
  source?: string;
  /** the input shapes to plan for at load (a classifier's [1, 3, size, size]), so that refusals
   *  come with the model; without, the first run with each input signature plans it */
  inputShapes?: Record<string, number[]>;
  /** a module whose weights of the same names this one uses (a part of its graph), not copies */
  weightsFrom?: GraphModule;
}

/** How many input signatures keep their plan (training sees two batch sizes, eval a third). */
const PLAN_CACHE = 8;

export class GraphModule extends Module implements Network {
  /** the graph as loaded: constant subgraphs folded into initializers */
  readonly graph: OnnxGraph;
  readonly opset: number;
  readonly source: string;
  /** parameters and buffers by initializer name */
  readonly weights = new Map<string, Tensor>();
  /** the nodes in the order they run, fusions applied (src/onnx/fuse.ts) */
  private readonly order: OnnxNode[];
  private readonly plans = new Map<string, Plan>();
  private dropoutSeed = 1;

  /** Checks the model (checkSupported), folds its constants, uploads its weights and plans for
   *  opts.inputShapes. Starts in eval mode, as ONNX runtimes run it. */
  constructor(model: OnnxModel, opts: GraphModuleOptions = {}) {
    super();
    this.source = opts.source ?? (model.graph.name || '<onnx model>');
    checkSupported(model, this.source);
    if (!opts.weightsFrom) checkFinite(model.graph, this.source);
    this.opset = model.opset;
    this.graph = ownBuffers(foldConstants(model, this.source));
    this.order = fuseLayerNorms({ ...this.graph, outputs: new Set(this.graph.outputs.map((v) => v.name)), opset: this.opset });
    this.eval();
    for (const node of this.order) {
      const def = entry(node);
      node.inputs.forEach((name, slot) => {
        const init = this.graph.initializers.get(name);
        const role = weightRole(def, slot, init);
        if (!role || this.weights.has(name)) return;
        const shared = opts.weightsFrom?.weights.get(name);
        const t = shared ?? Tensor.from(init!.data as Float32Array, init!.dims);
        const trainable = t.requiresGrad;
        this.weights.set(name, role === 'param' ? this.param(name, t) : this.buffer(name, t));
        if (shared) t.requiresGrad = trainable; // sharing does not unfreeze
      });
    }
    try {
      if (opts.inputShapes) this.planFor(opts.inputShapes);
    } catch (e) {
      this.release();
      throw e;
    }
  }

  nextSeed(): number {
    return this.dropoutSeed++;
  }

  /** The graph's single input -> its first output. */
  forward(x: Tensor): Tensor {
    const inputs = this.graph.inputs;
    if (inputs.length !== 1) {
      throw new OpError('GraphModule', `${this.source} has ${inputs.length} inputs (${inputs.map((v) => v.name).join(', ')}): use run()`);
    }
    const first = this.graph.outputs[0].name;
    const y = this.run({ [inputs[0].name]: x })[first];
    if (!(y instanceof Tensor)) throw new OpError('GraphModule', `output '${first}' of ${this.source} is a constant`);
    return y;
  }

  /**
   * Runs the graph on named inputs: GPU tensors, or host tensors (float ones are uploaded; others
   * are read as settings: Reshape's shape, class labels). Returns every graph output.
   */
  run(inputs: Record<string, Value>): Record<string, Value> {
    for (const v of this.graph.inputs) {
      if (inputs[v.name] === undefined) throw new OpError('GraphModule', `${this.source}: missing input '${v.name}'`);
    }
    const plan = this.planFor(Object.fromEntries(this.graph.inputs.map((v) => [v.name, inputs[v.name]])));
    const env = new Env(this, plan.constants);
    for (const v of this.graph.inputs) env.values.set(v.name, inputs[v.name]);
    const keep = new Set([...this.graph.outputs.map((v) => v.name), ...this.graph.inputs.map((v) => v.name)]);
    const gpu = getGpu();
    plan.steps.forEach((node, k) => {
      const results = atNode(node, this.opset, this.source, () => gpu.withScope(node.name || node.outputs[0], () => entry(node).run!(new NodeContext(node, env))));
      node.outputs.forEach((o, j) => o !== '' && env.values.set(o, ownTensor(results[j], node, env)));
      for (const name of new Set(node.inputs)) {
        if (plan.lastUse.get(name) !== k || keep.has(name)) continue;
        const v = env.values.get(name);
        if (v instanceof Tensor) v.discard();
        env.uploads.get(name)?.discard();
      }
    });
    return Object.fromEntries(this.graph.outputs.map((v) => [v.name, env.value(v.name)!]));
  }

  /** Every value's shape and the nodes that run, for inputs of these shapes (nothing runs). */
  describe(inputShapes: Record<string, number[]>): { steps: OnnxNode[]; shapes: Map<string, number[]>; folded: number } {
    const plan = this.planFor(inputShapes);
    return { steps: plan.steps, shapes: plan.shapes, folded: this.order.length - plan.steps.length };
  }

  /**
   * The graph with its initializers replaced by the current parameters and buffers (for export);
   * `inputShape` replaces the declared shape of the (single) input, e.g. a new image size.
   */
  async exportGraph(inputShape?: (number | string)[]): Promise<OnnxGraph> {
    const initializers = new Map(this.graph.initializers);
    for (const [name, t] of this.weights) {
      const old = initializers.get(name)!;
      initializers.set(name, { name, dims: [...old.dims], dataType: DataType.FLOAT, data: await t.toArray() });
    }
    const inputs = inputShape ? this.graph.inputs.map((v, i) => (i === 0 ? { ...v, shape: inputShape } : v)) : this.graph.inputs;
    return { ...this.graph, initializers, inputs };
  }

  /** The classes of a classifier graph: its first output's last dimension, when fixed. */
  get numClasses(): number | undefined {
    const d = this.graph.outputs[0]?.shape.at(-1);
    return typeof d === 'number' && d > 0 ? d : undefined;
  }

  /** The graph with its current weights, for inputs [batch, 3, size, size]. */
  async toOnnx(opts: { size?: number; metadata: Record<string, string> }): Promise<OnnxModel> {
    const graph = await this.exportGraph(opts.size === undefined ? undefined : ['batch', 3, opts.size, opts.size]);
    return { irVersion: irVersionFor(this.opset), opset: this.opset, producerName: 'gpunet', graph, metadata: { ...opts.metadata, [META.arch]: 'graph' } };
  }

  /**
   * Backbone: the graph up to the input of its last weighted layer; head: the rest, fed with that
   * activation (both share this module's weights).
   */
  split(): ModelSplit {
    const { cut } = this.headCut();
    const backbone = this.subgraph(this.graph.inputs, [cut]);
    const head = this.subgraph([{ name: cut, elemType: DataType.FLOAT, shape: [] }], this.graph.outputs.map((v) => v.name));
    const names = this.namedParameters().map(([n]) => n);
    const groups = [...halves(names.filter((n) => !head.weights.has(n)), (n) => this.firstReader(n)), names.filter((n) => head.weights.has(n))];
    const groupLabels = groups.map((g, i) => (i === groups.length - 1 ? `head ${this.nodeRange(g)}` : this.nodeRange(g)));
    return { model: this, head, features: (x) => backbone.forward(x), groups, batchNormParams: this.normParameterNames(), groupLabels };
  }

  /** The position (in run order) of the first node that reads weight `name` (-1: none). */
  firstReader(name: string): number {
    return this.order.findIndex((n) => n.inputs.includes(name));
  }

  /** Where the weights `names` are read, in run order: 'nodes 1-31 of 62 (0/Conv…13/Conv)'. */
  nodeRange(names: readonly string[]): string {
    const wanted = new Set(names);
    const at = this.order.flatMap((n, i) => (n.inputs.some((x) => wanted.has(x)) ? [i] : []));
    if (at.length === 0) return 'no nodes';
    const [a, b] = [at[0], at[at.length - 1]];
    const name = (i: number) => shortNodeName(this.order[i].name || this.order[i].outputs[0]);
    return a === b ? `node ${a + 1} of ${this.order.length} (${name(a)})` : `nodes ${a + 1}-${b + 1} of ${this.order.length} (${name(a)}…${name(b)})`;
  }

  /** Cut at the input of the last GlobalAveragePool: the body computes the maps, the tail the rest. */
  featureMaps(): FeatureMapSplit {
    const pool = [...this.order].reverse().find((n) => n.opType === 'GlobalAveragePool');
    if (!pool) throw new OnnxError(this.source, 'no GlobalAveragePool before the classifier: Grad-CAM needs the last convolutional feature maps, and there are none to find');
    const cut = pool.inputs[0];
    const body = this.subgraph(this.graph.inputs, [cut]);
    const tail = this.subgraph([{ name: cut, elemType: DataType.FLOAT, shape: [] }], this.graph.outputs.map((v) => v.name));
    return { layer: cut, body: (x) => body.forward(x), tail: (a) => tail.forward(a) };
  }

  /** The backbone (cut before the last weighted layer) with a fresh `classes`-way linear head; this module is consumed. */
  withNewHead(classes: number, opts: { rng: Rng; size: number }): Network {
    const { node, cut } = this.headCut();
    const backbone = this.subgraph(this.graph.inputs, [cut]);
    const shape = backbone.describe({ [this.graph.inputs[0].name]: [1, 3, opts.size, opts.size] }).shapes.get(cut)!;
    if (shape.length !== 2 && shape.length !== 4) throw new OnnxError(this.source, `the features before '${node.name}' have shape [${shape}], not [N, F] or [N, C, H, W]`);
    for (const [name, t] of this.weights) if (!backbone.weights.has(name)) t.release(); // the old head's
    return new TransferModel(backbone, cut, shape, classes, opts.rng);
  }

  /** The nodes that run (constants and shape arithmetic folded), with their first output's shape
   *  and the parameters they read first, from the plan for [1, 3, size, size]: nothing runs. */
  layers(size: number): LayerRow[] {
    const paramSize = new Map(this.namedParameters().map(([n, t]) => [n, t.size]));
    const seen = new Set<string>();
    const { steps, shapes } = this.describe({ [this.graph.inputs[0].name]: [1, 3, size, size] });
    return steps.map((n) => {
      const params = n.inputs.reduce((s, x) => s + (seen.has(x) ? 0 : (seen.add(x), paramSize.get(x) ?? 0)), 0);
      return { name: n.name || n.outputs[0], type: n.opType, outputShape: shapes.get(n.outputs[0])!.slice(1), params };
    });
  }

  /** The scales and shifts of BatchNormalization and LayerNormalization nodes. */
  protected override ownNormParameters(): string[] {
    return this.order.filter((n) => n.opType === 'BatchNormalization' || n.opType === 'LayerNormalization').flatMap((n) => [n.inputs[1], n.inputs[2]].filter((x) => x && this.weights.has(x)));
  }

  /** The last weighted layer (Conv, Gemm, MatMul with a weight) and the activation it reads: where a classifier's top begins. */
  private headCut(): { node: OnnxNode; cut: string } {
    const node = [...this.order].reverse().find((n) => ['Conv', 'Gemm', 'MatMul'].includes(n.opType) && n.inputs.some((i) => this.weights.has(i)));
    if (!node) throw new OnnxError(this.source, 'no weighted layer (Conv, Gemm, MatMul) to replace with a new head');
    const cut = node.inputs.find((i) => i !== '' && !this.weights.has(i) && !this.graph.initializers.has(i));
    if (!cut || this.graph.inputs.some((v) => v.name === cut)) throw new OnnxError(this.source, `the last weighted layer '${node.name}' reads the graph input: nothing left to transfer`);
    return { node, cut };
  }

  /** The part of the graph computing `outputs` from `inputs` (the nodes it needs, their
   *  initializers), as a GraphModule sharing this one's weights. */
  subgraph(inputs: ValueInfo[], outputs: string[]): GraphModule {
    const g = this.graph;
    const producer = new Map<string, OnnxNode>();
    for (const n of g.nodes) for (const o of n.outputs) producer.set(o, n);
    const stop = new Set(inputs.map((v) => v.name));
    const needed = new Set<OnnxNode>();
    const stack = [...outputs];
    while (stack.length) {
      const name = stack.pop()!;
      const n = stop.has(name) ? undefined : producer.get(name);
      if (!n || needed.has(n)) continue;
      needed.add(n);
      stack.push(...n.inputs.filter((i) => i !== ''));
    }
    const nodes = g.nodes.filter((n) => needed.has(n));
    const used = new Set(nodes.flatMap((n) => n.inputs));
    const initializers = new Map([...g.initializers].filter(([name]) => used.has(name)));
    const outputInfo = outputs.map((name) => g.outputs.find((v) => v.name === name) ?? { name, elemType: DataType.FLOAT, shape: [] });
    const model: OnnxModel = { irVersion: irVersionFor(this.opset), opset: this.opset, producerName: 'gpunet', metadata: {}, graph: { ...g, nodes, initializers, inputs, outputs: outputInfo } };
    return new GraphModule(model, { source: this.source, weightsFrom: this });
  }

  /** The plan for inputs (values, or just shapes for float inputs), made once per signature. */
  private planFor(inputs: Record<string, Value | number[]>): Plan {
    const key = JSON.stringify([this.training, ...this.graph.inputs.map((v) => signature(inputs[v.name]))]);
    let plan = this.plans.get(key);
    if (!plan) {
      plan = this.makePlan(inputs);
      if (this.plans.size >= PLAN_CACHE) this.plans.delete(this.plans.keys().next().value!);
      this.plans.set(key, plan);
    }
    return plan;
  }

  /**
   * Folds every node whose inputs are known for these inputs (constants, and shapes: a Shape node
   * needs only its input's shape) and runs the others dry, which gives each value's shape and
   * raises every refusal as one line before anything runs.
   */
  private makePlan(inputs: Record<string, Value | number[]>): Plan {
    const constants = new Map<string, OnnxTensor>();
    const shapes = new Map<string, number[]>();
    const steps: OnnxNode[] = [];
    const seed = this.dropoutSeed;
    const gpu = getGpu();
    gpu.dryRun(() =>
      noGrad(() =>
        tidy(() => {
          const env = new Env(this, constants);
          for (const v of this.graph.inputs) {
            const x = inputs[v.name];
            // float inputs are data (their shapes count); other inputs are settings, known now
            if (Array.isArray(x)) env.values.set(v.name, Tensor.empty(x));
            else if (x instanceof Tensor || isFloat(x.dataType)) env.values.set(v.name, x);
            else constants.set(v.name, x);
          }
          const isConstant = (name: string) => name === '' || constants.has(name) || (this.graph.initializers.has(name) && !this.weights.has(name));
          for (const node of this.order) {
            const def = entry(node);
            const known = node.inputs.every((x, slot) => (def.foldsOnShapes ? env.value(x) !== undefined || x === '' : isConstant(x)) && !weightRole(def, slot, this.graph.initializers.get(x)));
            const folded = def.fold && known ? atNode(node, this.opset, this.source, () => def.fold!(new NodeContext(node, env))) : null;
            if (folded) {
              folded.forEach((t, k) => node.outputs[k] !== '' && constants.set(node.outputs[k], { ...t, name: node.outputs[k] }));
            } else {
              if (!def.run) {
                const gpuInput = node.inputs.find((x) => !isConstant(x));
                throw new UnsupportedError(this.source, `unsupported ONNX op '${node.opType}' on '${gpuInput}', a value computed on the GPU (node '${node.name || node.outputs[0]}', opset ${this.opset}): gpunet computes ${node.opType} only on values known before the graph runs (constants, shapes)`);
              }
              const results = atNode(node, this.opset, this.source, () => def.run!(new NodeContext(node, env)));
              node.outputs.forEach((o, k) => o !== '' && env.values.set(o, results[k]));
              steps.push(node);
            }
            for (const o of node.outputs) {
              const v = env.value(o);
              if (v) shapes.set(o, v instanceof Tensor ? [...v.shape] : v.dims);
            }
          }
          for (const v of this.graph.outputs) {
            if (env.value(v.name) === undefined) throw new OnnxError(this.source, `no node produces the graph output '${v.name}'`);
          }
        }),
      ),
    );
    this.dropoutSeed = seed;
    const lastUse = new Map<string, number>();
    steps.forEach((n, k) => n.inputs.forEach((x) => lastUse.set(x, k)));
    return { constants, steps, lastUse, shapes };
  }
}

/** An op's result, as a tensor object of its own when the op handed an input back (a no-op pad):
 *  the input is discarded at its last use, which must not take the output with it. */
function ownTensor(v: Value, node: OnnxNode, env: Env): Value {
  return v instanceof Tensor && node.inputs.some((x) => env.value(x) === v) ? v.reshape(v.shape) : v;
}

/** An input's part of a plan's key: a float input's shape, another input's values. */
function signature(x: Value | number[]): string {
  if (Array.isArray(x)) return shapeStr(x);
  if (x instanceof Tensor) return shapeStr(x.shape);
  return isFloat(x.dataType) ? shapeStr(x.dims) : `${x.dataType}${shapeStr(x.dims)}=${Array.from(x.data as ArrayLike<number | bigint>).join(',')}`;
}
