// A generic graph's backbone with a fresh head: what GraphModule.withNewHead() makes of an ONNX
// classifier. The graph is cut before its last weighted layer (Conv / Gemm / MatMul), Keras'
// include_top=False: the backbone is the graph up to that layer's input, the head a global average
// pool (for a 4-D cut) and a fresh n-class linear layer. A 1x1 conv followed by a global pool
// (darknet, squeezenet) equals pool-then-linear, so the cut loses nothing. toOnnx() writes backbone
// and head back as one graph.
import { Flatten, GlobalAvgPool2d, Linear } from '../nn/layers.ts';
import { Module, runLayers } from '../nn/module.ts';
import { type FeatureMapSplit, halves, type LayerRow, moduleLayers, type ModelSplit } from '../nn/split.ts';
import type { Rng, Tensor } from '../tensor/index.ts';
import { META } from './classifier.ts';
import type { GraphModule } from './graph.ts';
import { DataType, type OnnxModel, type OnnxNode } from './ir.ts';
import { OnnxError } from './read.ts';
import type { Network } from './network.ts';
import { irVersionFor } from './write.ts';

export class TransferModel extends Module implements Network {
  readonly backbone: GraphModule;
  head: Linear;
  private readonly pool: Module[];

  /** `backbone` computes `cut`, of shape `featureShape` at batch 1 ([1, F] or [1, C, H, W]). */
  constructor(backbone: GraphModule, readonly cut: string, featureShape: readonly number[], classes: number, rng: Rng) {
    super();
    this.backbone = this.child('backbone', backbone);
    this.pool = featureShape.length === 4 ? [this.child('pool', new GlobalAvgPool2d()), this.child('flatten', new Flatten())] : [];
    this.head = this.child('head', new Linear(featureShape[1], classes, { rng }));
  }

  get numClasses(): number {
    return this.head.outFeatures;
  }

  /** images -> pooled features [N, F] */
  features(x: Tensor): Tensor {
    return runLayers([this.backbone, ...this.pool], x);
  }

  forward(x: Tensor): Tensor {
    return runLayers([this.backbone, ...this.pool, this.head], x);
  }

  /** The backbone's parameters in two groups (first and second half), the head's last; the
   *  backbone's groups are named by the graph nodes that read them. */
  split(): ModelSplit {
    const names = this.namedParameters().map(([n]) => n);
    const backbone = halves(names.filter((n) => n.startsWith('backbone.')), (n) => this.backbone.firstReader(n.slice('backbone.'.length)));
    const groupLabels = [...backbone.map((g) => `backbone ${this.backbone.nodeRange(g.map((n) => n.slice('backbone.'.length)))}`), 'head'];
    return { model: this, head: this.head, features: (x) => this.features(x), groups: [...backbone, names.filter((n) => n.startsWith('head.'))], batchNormParams: this.normParameterNames(), groupLabels };
  }

  /** Another fresh head on the same backbone. */
  withNewHead(classes: number, opts: { rng: Rng }): Network {
    this.replaceChild('head', new Linear(this.head.inFeatures, classes, { rng: opts.rng }));
    this.head = this.getChild('head') as Linear;
    return this;
  }

  /** backbone + (pool, flatten) + Gemm as one ONNX graph with the current weights. */
  async toOnnx(opts: { size?: number; metadata: Record<string, string> }): Promise<OnnxModel> {
    const graph = await this.backbone.exportGraph(opts.size === undefined ? undefined : ['batch', 3, opts.size, opts.size]);
    const nodes: OnnxNode[] = [...graph.nodes];
    const node = (opType: string, inputs: string[], output: string, attrs: OnnxNode['attrs'] = {}) => {
      nodes.push({ name: output, opType, domain: '', inputs, outputs: [output], attrs });
      return output;
    };
    let x = this.pool.length ? node('GlobalAveragePool', [this.cut], 'head_pool') : this.cut;
    x = node('Flatten', [x], 'head_flatten', { axis: 1 });
    node('Gemm', [x, 'head.weight', 'head.bias'], 'logits', { transB: 1 });
    const initializers = new Map(graph.initializers);
    const w = this.head.weight;
    initializers.set('head.weight', { name: 'head.weight', dims: [...w.shape], dataType: DataType.FLOAT, data: await w.toArray() });
    initializers.set('head.bias', { name: 'head.bias', dims: [w.shape[0]], dataType: DataType.FLOAT, data: await this.head.bias!.toArray() });
    const opset = this.backbone.opset;
    return {
      irVersion: irVersionFor(opset),
      opset,
      producerName: 'gpunet',
      graph: { ...graph, nodes, initializers, outputs: [{ name: 'logits', elemType: DataType.FLOAT, shape: ['batch', w.shape[0]] }] },
      metadata: { ...opts.metadata, [META.arch]: 'graph' },
    };
  }

  /** Cut at the backbone's output (when it is a feature map): the tail is the pool and the head. */
  featureMaps(): FeatureMapSplit {
    if (!this.pool.length) throw new OnnxError(this.backbone.source, `the backbone's features '${this.cut}' are [N, F], not feature maps: Grad-CAM has no map to weigh`);
    return { layer: this.cut, body: (x) => this.backbone.forward(x), tail: (a) => runLayers([...this.pool, this.head], a) };
  }

  /** The backbone's nodes, then the pool and the head. */
  layers(size: number): LayerRow[] {
    const backbone = this.backbone.layers(size).map((r) => ({ ...r, name: `backbone.${r.name}` }));
    return moduleLayers(this, [1, 3, size, size]).flatMap((r) => (r.name === 'backbone' ? backbone : [r]));
  }
}
