// Transfer learning: a classifier split into a backbone (images -> features [N, F]) and a head
// (features -> logits), with the layer groups that discriminative rates and freezing work on.
//   ResNet      backbone conv1..avgpool, head fc (replaceHead); groups as fastai's resnet split:
//               [stem, layer1, layer2], [layer3, layer4], [fc]
//   Sequential  the last child is the head (the small CNN)
//   any ONNX    (GraphModule) cut before its last weighted layer (Conv / Gemm / MatMul), Keras'
//               include_top=False: the backbone is the graph up to that layer's input, the head a
//               global average pool (for a 4-D cut) and a fresh n-class linear layer. A 1x1 conv
//               followed by a global pool (darknet, squeezenet) equals pool-then-linear, so the
//               cut loses nothing. exportTransferGraph() writes backbone + head back as one graph.
import { BatchNorm2d, Flatten, GlobalAvgPool2d, Linear, Sequential } from '../nn/layers.ts';
import { Module, runLayers } from '../nn/module.ts';
import { ResNet } from '../nn/resnet.ts';
import { META } from '../onnx/classifier.ts';
import { GraphModule } from '../onnx/graph.ts';
import { DataType, type OnnxGraph, type OnnxModel, type OnnxNode } from '../onnx/ir.ts';
import { OnnxError } from '../onnx/read.ts';
import { noGrad, type Rng, Tensor, tidy } from '../tensor/index.ts';

export interface ModelSplit {
  model: Module;
  head: Module;
  /** the network without its head: images -> features [N, F] */
  features(x: Tensor): Tensor;
  /** parameter names of each layer group, stem first, the head's last */
  groups: string[][];
  /** parameter names of batchnorm scales and shifts (they train in a fastai frozen phase) */
  batchNormParams: Set<string>;
}

const childPrefix = (name: string, prefixes: string[]) => prefixes.some((p) => name === p || name.startsWith(`${p}.`));

/** Splits a parameter list in two halves (by position), the backbone groups of a generic model. */
function halves(names: string[]): string[][] {
  const mid = Math.ceil(names.length / 2);
  return [names.slice(0, mid), names.slice(mid)].filter((g) => g.length > 0);
}

/** batchnorm parameter names of a module tree (BatchNorm2d modules and ONNX BatchNormalization nodes) */
function batchNormParams(model: Module): Set<string> {
  const out = new Set<string>();
  for (const [prefix, m] of model.namedModules()) {
    const dot = prefix ? `${prefix}.` : '';
    if (m instanceof BatchNorm2d) for (const n of ['weight', 'bias']) out.add(`${dot}${n}`);
    if (m instanceof GraphModule) {
      for (const node of m.graph.nodes) if (node.opType === 'BatchNormalization') for (const i of [1, 2]) out.add(`${dot}${node.inputs[i]}`);
    }
  }
  return out;
}

/** The split of a ResNet, a Sequential (last child = head) or a TransferModel. */
export function splitModel(model: Module): ModelSplit {
  const names = model.namedParameters().map(([n]) => n);
  const bn = batchNormParams(model);
  if (model instanceof ResNet || model instanceof Sequential) {
    const children = model.children();
    const [headName, head] = model instanceof ResNet ? ['fc', model.getChild('fc')!] : children[children.length - 1];
    const body = children.filter(([n]) => n !== headName).map(([, m]) => m);
    const headParams = names.filter((n) => childPrefix(n, [headName]));
    const backbone = names.filter((n) => !childPrefix(n, [headName]));
    const groups =
      model instanceof ResNet
        ? [backbone.filter((n) => !childPrefix(n, ['layer3', 'layer4'])), backbone.filter((n) => childPrefix(n, ['layer3', 'layer4']))]
        : halves(backbone);
    return { model, head, features: (x) => runLayers(body, x), groups: [...groups.filter((g) => g.length), headParams], batchNormParams: bn };
  }
  if (model instanceof TransferModel) {
    const backbone = names.filter((n) => n.startsWith('backbone.'));
    return { model, head: model.head, features: (x) => model.features(x), groups: [...halves(backbone), names.filter((n) => n.startsWith('head.'))], batchNormParams: bn };
  }
  throw new Error(`cannot split a ${model.constructor.name} into backbone and head (ResNet, Sequential or an ONNX graph)`);
}

/** An ONNX graph's backbone with a fresh linear head. */
export class TransferModel extends Module {
  readonly backbone: GraphModule;
  readonly head: Linear;
  private readonly pool: Module[];

  constructor(readonly base: OnnxModel, readonly cut: string, featureRank: number, features: number, classes: number, rng: Rng, source: string) {
    super();
    this.backbone = this.child('backbone', new GraphModule(backboneModel(base, cut), { source }));
    this.pool = featureRank === 4 ? [this.child('pool', new GlobalAvgPool2d()), this.child('flatten', new Flatten())] : [];
    this.head = this.child('head', new Linear(features, classes, { rng }));
  }

  /** images -> pooled features [N, F] */
  features(x: Tensor): Tensor {
    return runLayers([this.backbone, ...this.pool], x);
  }

  forward(x: Tensor): Tensor {
    return runLayers([this.backbone, ...this.pool, this.head], x);
  }
}

/** The last node with a weight initializer (Conv, Gemm, MatMul): where the classifier's top starts. */
function lastWeightedNode(graph: OnnxGraph): OnnxNode | undefined {
  return [...graph.nodes].reverse().find((n) => ['Conv', 'Gemm', 'MatMul'].includes(n.opType) && n.inputs.some((i) => graph.initializers.has(i)));
}

/** The model computing only `cut` from the graph input (every node it needs, their initializers). */
function backboneModel(model: OnnxModel, cut: string): OnnxModel {
  const g = model.graph;
  const producer = new Map<string, OnnxNode>();
  for (const n of g.nodes) for (const o of n.outputs) producer.set(o, n);
  const needed = new Set<OnnxNode>();
  const stack = [cut];
  while (stack.length) {
    const n = producer.get(stack.pop()!);
    if (!n || needed.has(n)) continue;
    needed.add(n);
    stack.push(...n.inputs.filter((i) => i !== ''));
  }
  const nodes = g.nodes.filter((n) => needed.has(n));
  const used = new Set(nodes.flatMap((n) => n.inputs));
  const initializers = new Map([...g.initializers].filter(([name]) => used.has(name)));
  return { ...model, graph: { ...g, nodes, initializers, outputs: [{ name: cut, elemType: DataType.FLOAT, shape: [] }] } };
}

/**
 * A fresh `classes`-way classifier on an ONNX graph's features: the graph cut before its last
 * weighted layer. `size` is the input side used to probe the feature shape.
 */
export function transferFromGraph(model: OnnxModel, classes: number, size: number, rng: Rng, source: string): TransferModel {
  const last = lastWeightedNode(model.graph);
  if (!last) throw new OnnxError(source, 'no weighted layer (Conv, Gemm, MatMul) to replace with a new head');
  const cut = last.inputs.find((i) => i !== '' && !model.graph.initializers.has(i));
  if (!cut || model.graph.inputs.some((v) => v.name === cut)) throw new OnnxError(source, `the last weighted layer '${last.name}' reads the graph input: nothing left to transfer`);
  const probe = new GraphModule(backboneModel(model, cut), { source });
  const shape = noGrad(() => tidy(() => [...probe.forward(Tensor.zeros([1, 3, size, size])).shape]));
  probe.release();
  if (shape.length !== 2 && shape.length !== 4) throw new OnnxError(source, `the features before '${last.name}' have shape [${shape}], not [N, F] or [N, C, H, W]`);
  return new TransferModel(model, cut, shape.length, shape[1], classes, rng, source);
}

/** backbone + (pool, flatten) + Gemm as one ONNX graph with the current weights, and metadata. */
export async function exportTransferGraph(m: TransferModel, metadata: Record<string, string>): Promise<OnnxModel> {
  const graph = await m.backbone.exportGraph();
  const nodes = [...graph.nodes];
  let x = m.cut;
  if (m.children().some(([n]) => n === 'pool')) {
    nodes.push({ name: 'head_pool', opType: 'GlobalAveragePool', domain: '', inputs: [x], outputs: ['head_pool'], attrs: {} });
    x = 'head_pool';
  }
  nodes.push({ name: 'head_flatten', opType: 'Flatten', domain: '', inputs: [x], outputs: ['head_flatten'], attrs: { axis: 1 } });
  nodes.push({ name: 'head', opType: 'Gemm', domain: '', inputs: ['head_flatten', 'head.weight', 'head.bias'], outputs: ['logits'], attrs: { transB: 1 } });
  const initializers = new Map(graph.initializers);
  const w = m.head.weight;
  initializers.set('head.weight', { name: 'head.weight', dims: [...w.shape], dataType: DataType.FLOAT, data: await w.toArray() });
  initializers.set('head.bias', { name: 'head.bias', dims: [w.shape[0]], dataType: DataType.FLOAT, data: await m.head.bias!.toArray() });
  return {
    ...m.base,
    producerName: 'gpunet',
    graph: { ...graph, nodes, initializers, outputs: [{ name: 'logits', elemType: DataType.FLOAT, shape: ['batch', w.shape[0]] }] },
    metadata: { ...metadata, [META.arch]: 'graph' },
  };
}
