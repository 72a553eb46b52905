// A torchvision ResNet18/34 in ONNX form, both ways: importResNet maps an exported graph onto
// gpunet's ResNet module by its structure, exportResNet writes a ResNet module as an ONNX graph.
//
// Import walks the graph from its input, following each value to the nodes that consume it; node,
// value and initializer names are ignored (every exporter names things its own way):
//   Conv 7x7/2 [BN] Relu MaxPool 3x3/2, then per stage (64, 128, 256, 512 channels) blocks of
//     x -> Conv 3x3 [BN] Relu Conv 3x3 [BN] -> Add(., shortcut) -> Relu,  shortcut = x or Conv 1x1/2 [BN] (x)
//   then GlobalAveragePool, Flatten (or a Reshape to [N, 512]), Gemm.
// The stage lengths tell ResNet18 [2,2,2,2] from ResNet34 [3,4,6,3]. Another op, another shape, a
// branch or a node left over means "not a ResNet" (null), and the caller runs the generic graph.
//
// BatchNormalization is either a node of its own (training exports) or folded into the conv before
// it (eval exports: scaled weights and a conv bias). Both land in the module's conv + BatchNorm2d:
//   kept:   conv.weight = W, BN = (gamma, beta, mean - convBias, var + eps_onnx - eps)
//   folded: conv.weight = W, BN = (gamma 1, beta = convBias, mean 0, var = f32(1 - f32(eps)))
// The folded var is the f32 nearest 1 - eps, so the shader's var + eps is within 2^-25 of 1 and
// rounds to exactly 1: invstd = 1 and the eval-mode BN computes exactly x + convBias (the test
// checks this bit for bit).
import { BatchNorm2d, Conv2d, Linear } from '../nn/layers.ts';
import { BasicBlock, RESNET_BLOCKS, ResNet, type ResNetArch } from '../nn/resnet.ts';
import { type LayerRow, moduleLayers } from '../nn/split.ts';
import { Rng } from '../tensor/index.ts';
import { META } from './classifier.ts';
import { DataType, type AttrValue, type OnnxModel, type OnnxNode, type OnnxTensor } from './ir.ts';
import type { Network } from './network.ts';

/** A conv as the graph has it: its weight, its bias (zeros when it has none) and its batchnorm
 *  node's parameters (null when folded). */
interface ConvBn {
  weight: Float32Array;
  bias: Float32Array;
  bn: { gamma: Float32Array; beta: Float32Array; mean: Float32Array; var: Float32Array; eps: number } | null;
}

interface Head {
  weight: Float32Array; // [classes, 512]
  bias: Float32Array; // [classes]
  classes: number;
}

/** The graph seen from its values: who consumes what, with Identity nodes looked through. */
class GraphView {
  private readonly alias = new Map<string, string>();
  private readonly consumers = new Map<string, OnnxNode[]>();
  readonly used = new Set<OnnxNode>();
  readonly nodes: OnnxNode[];

  constructor(readonly model: OnnxModel) {
    const g = model.graph;
    for (const n of g.nodes) if (n.opType === 'Identity' && n.domain === '') this.alias.set(n.outputs[0], this.resolve(n.inputs[0]));
    this.nodes = g.nodes.filter((n) => !(n.opType === 'Identity' && n.domain === ''));
    for (const n of this.nodes) {
      for (const v of n.inputs) {
        const r = this.resolve(v);
        if (!this.consumers.has(r)) this.consumers.set(r, []);
        this.consumers.get(r)!.push(n);
      }
    }
  }

  resolve(v: string): string {
    return this.alias.get(v) ?? v;
  }

  consumersOf(v: string): OnnxNode[] {
    return this.consumers.get(this.resolve(v)) ?? [];
  }

  /** The one node consuming v, if it has the op type (marked used). */
  next(v: string, opType: string): OnnxNode | null {
    const cs = this.consumersOf(v);
    return cs.length === 1 && this.is(cs[0], opType) ? this.take(cs[0]) : null;
  }

  is(n: OnnxNode, opType: string): boolean {
    return n.opType === opType && n.domain === '' && !this.used.has(n);
  }

  take(n: OnnxNode): OnnxNode {
    this.used.add(n);
    return n;
  }

  initializer(v: string | undefined): OnnxTensor | undefined {
    return v ? this.model.graph.initializers.get(this.resolve(v)) : undefined;
  }

  /** The values of a float initializer of the given shape. */
  floats(v: string | undefined, dims: number[]): Float32Array | null {
    const t = this.initializer(v);
    if (!t || t.dataType !== DataType.FLOAT || !(t.data instanceof Float32Array)) return null;
    return sameDims(t.dims, dims) ? t.data : null;
  }
}

const sameDims = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

/** An int or ints attribute as a list (an int as [int]). */
function ints(a: AttrValue | undefined, fallback: number[]): number[] | null {
  if (a === undefined) return fallback;
  if (typeof a === 'number') return [a];
  return Array.isArray(a) && a.every((v) => typeof v === 'number') ? (a as number[]) : null;
}

/** The node's int attributes equal `expected` (absent ones taking ONNX's `defaults`), no auto_pad. */
function attrsAre(n: OnnxNode, expected: Record<string, number[]>, defaults: Record<string, number[]>): boolean {
  if (n.attrs.auto_pad !== undefined && n.attrs.auto_pad !== 'NOTSET') return false;
  for (const [k, v] of Object.entries(expected)) {
    const got = ints(n.attrs[k], defaults[k] ?? []);
    if (!got || !sameDims(got, v)) return false;
  }
  return true;
}

/**
 * Matches Conv(x) [-> BatchNormalization] for a conv node already chosen, returning the conv+BN
 * parameters and the value the unit outputs.
 */
function matchConvBn(g: GraphView, conv: OnnxNode, inC: number, outC: number, k: number, stride: number): { out: string; p: ConvBn } | null {
  const pad = (k - 1) / 2;
  const ok = attrsAre(
    conv,
    { kernel_shape: [k, k], strides: [stride, stride], pads: [pad, pad, pad, pad], dilations: [1, 1], group: [1] },
    { kernel_shape: [k, k], strides: [1, 1], pads: [0, 0, 0, 0], dilations: [1, 1], group: [1] },
  );
  const weight = g.floats(conv.inputs[1], [outC, inC, k, k]);
  if (!ok || !weight) return null;
  const hasBias = conv.inputs.length > 2 && conv.inputs[2] !== '';
  const bias = hasBias ? g.floats(conv.inputs[2], [outC]) : new Float32Array(outC);
  if (!bias) return null;
  g.take(conv);

  const cs = g.consumersOf(conv.outputs[0]);
  if (cs.length === 1 && g.is(cs[0], 'BatchNormalization')) {
    const bn = g.take(cs[0]);
    const [gamma, beta, mean, variance] = bn.inputs.slice(1, 5).map((v) => g.floats(v, [outC]));
    if (!gamma || !beta || !mean || !variance) return null;
    if (bn.outputs.slice(1).some((v) => v !== '' && g.consumersOf(v).length > 0)) return null;
    const eps = typeof bn.attrs.epsilon === 'number' ? bn.attrs.epsilon : 1e-5;
    return { out: bn.outputs[0], p: { weight, bias, bn: { gamma, beta, mean, var: variance, eps } } };
  }
  return { out: conv.outputs[0], p: { weight, bias, bn: null } };
}

/** Loads a matched conv + BN into the module's Conv2d and BatchNorm2d (see the header). */
function loadConvBn(conv: Conv2d, bn: BatchNorm2d, p: ConvBn): void {
  const C = bn.channels;
  conv.weight.set(p.weight);
  if (p.bn) {
    // BN(conv + b) normalizes conv - (mean - b); var + eps_onnx = (var + eps_onnx - eps) + eps
    const epsShift = Math.fround(p.bn.eps) - Math.fround(bn.eps);
    bn.weight.set(p.bn.gamma);
    bn.bias.set(p.bn.beta);
    bn.runningMean.set(p.bn.mean.map((m, c) => m - p.bias[c]));
    bn.runningVar.set(epsShift === 0 ? p.bn.var : p.bn.var.map((v) => v + epsShift));
  } else {
    bn.weight.set(new Float32Array(C).fill(1));
    bn.bias.set(p.bias);
    bn.runningMean.set(new Float32Array(C));
    bn.runningVar.set(new Float32Array(C).fill(Math.fround(1 - Math.fround(bn.eps))));
  }
}

interface BlockParams {
  conv1: ConvBn;
  conv2: ConvBn;
  downsample: ConvBn | null;
}

/** Matches one BasicBlock starting at value x; null if x does not start one of this shape. */
function matchBlock(g: GraphView, x: string, inC: number, outC: number, stride: number): { out: string; p: BlockParams } | null {
  const cs = g.consumersOf(x).filter((n) => !g.used.has(n));
  if (cs.length !== 2) return null;
  const kernelOf = (n: OnnxNode) => g.initializer(n.inputs[1])?.dims[2];
  const main = cs.find((n) => g.is(n, 'Conv') && kernelOf(n) === 3);
  const other = cs.find((n) => n !== main);
  if (!main || !other) return null;
  const downsampled = stride !== 1 || inC !== outC;
  if (downsampled ? !(g.is(other, 'Conv') && kernelOf(other) === 1) : !g.is(other, 'Add')) return null;

  const c1 = matchConvBn(g, main, inC, outC, 3, stride);
  const relu = c1 && g.next(c1.out, 'Relu');
  const conv2 = relu && g.next(relu.outputs[0], 'Conv');
  const c2 = conv2 && matchConvBn(g, conv2, outC, outC, 3, 1);
  if (!c2) return null;
  let shortcut = x;
  let downsample: ConvBn | null = null;
  if (downsampled) {
    const d = matchConvBn(g, other, inC, outC, 1, stride);
    if (!d) return null;
    shortcut = d.out;
    downsample = d.p;
  }
  const add = g.next(c2.out, 'Add');
  if (!add || add.inputs.length !== 2) return null;
  const [a, b] = add.inputs.map((v) => g.resolve(v));
  const [m, s] = [g.resolve(c2.out), g.resolve(shortcut)];
  if (!((a === m && b === s) || (a === s && b === m))) return null;
  if (!downsampled && other !== add) return null;
  const out = g.next(add.outputs[0], 'Relu');
  return out && { out: out.outputs[0], p: { conv1: c1!.p, conv2: c2.p, downsample } };
}

/** GlobalAveragePool -> Flatten | Reshape [N,512] -> Gemm, ending at the graph's only output. */
function matchHead(g: GraphView, x: string): Head | null {
  const gap = g.next(x, 'GlobalAveragePool');
  if (!gap) return null;
  const cs = g.consumersOf(gap.outputs[0]);
  if (cs.length !== 1) return null;
  const flat = cs[0];
  if (g.is(flat, 'Flatten')) {
    if ((flat.attrs.axis ?? 1) !== 1) return null;
  } else if (g.is(flat, 'Reshape')) {
    const shape = g.initializer(flat.inputs[1]);
    const dims = shape ? Array.from(shape.data as ArrayLike<number | bigint>, Number) : [];
    // [0,-1] (keep N), [-1,512] or [0,512]: all flatten [N,512,1,1] to [N,512]
    if (dims.length !== 2 || !(dims[0] === 0 || dims[0] === -1) || !(dims[1] === -1 || dims[1] === 512) || (dims[0] === -1 && dims[1] === -1)) return null;
  } else return null;
  g.take(flat);
  const gemm = g.next(flat.outputs[0], 'Gemm');
  if (!gemm || g.resolve(gemm.inputs[0]) !== g.resolve(flat.outputs[0])) return null;
  const a = gemm.attrs;
  if ((a.alpha ?? 1) !== 1 || (a.beta ?? 1) !== 1 || (a.transA ?? 0) !== 0) return null;
  const transB = (a.transB ?? 0) === 1;
  const w = g.initializer(gemm.inputs[1]);
  if (!w || w.dims.length !== 2 || w.dims[transB ? 1 : 0] !== 512) return null;
  const classes = w.dims[transB ? 0 : 1];
  const wData = g.floats(gemm.inputs[1], w.dims);
  const hasBias = gemm.inputs.length > 2 && gemm.inputs[2] !== '';
  const bias = hasBias ? g.floats(gemm.inputs[2], [classes]) : new Float32Array(classes);
  if (!wData || !bias) return null;
  // the module's fc.weight is [classes, 512], Gemm's B without transB is [512, classes]
  const weight = transB ? wData : Float32Array.from({ length: wData.length }, (_, i) => wData[(i % 512) * classes + Math.floor(i / 512)]);
  const outputs = g.model.graph.outputs.map((o) => g.resolve(o.name));
  if (outputs.length !== 1 || outputs[0] !== g.resolve(gemm.outputs[0])) return null;
  return { weight, bias, classes };
}

/**
 * Recognises a torchvision ResNet18/34 graph by its structure (BN kept or folded into the convs) and
 * loads it into a new ResNet module in eval mode. Returns null when the graph is anything else.
 */
export function importResNet(model: OnnxModel): ResNet | null {
  const plan = matchResNet(model);
  if (!plan) return null;
  // the ONNX weights replace the initial ones: a generator of its own leaves the global one's stream alone
  const net = new ResNet(plan.arch, { numClasses: plan.head.classes, rng: new Rng(0) }).eval();
  const modules = new Map(net.namedModules());
  const setConvBn = (conv: string, bn: string, p: ConvBn) => loadConvBn(modules.get(conv) as Conv2d, modules.get(bn) as BatchNorm2d, p);
  setConvBn('conv1', 'bn1', plan.stem);
  plan.stages.forEach((blocks, i) =>
    blocks.forEach((b, j) => {
      const name = `layer${i + 1}.${j}`;
      setConvBn(`${name}.conv1`, `${name}.bn1`, b.conv1);
      setConvBn(`${name}.conv2`, `${name}.bn2`, b.conv2);
      if (b.downsample) setConvBn(`${name}.downsample.0`, `${name}.downsample.1`, b.downsample);
    }),
  );
  const fc = modules.get('fc') as Linear;
  fc.weight.set(plan.head.weight);
  fc.bias!.set(plan.head.bias);
  return net;
}

/** The parameters a ResNet graph maps to, or null when it is not one. */
function matchResNet(model: OnnxModel): { arch: ResNetArch; stem: ConvBn; stages: BlockParams[][]; head: Head } | null {
  const g = new GraphView(model);
  const inputs = model.graph.inputs;
  if (inputs.length !== 1) return null;
  const stemConv = g.consumersOf(inputs[0].name);
  if (stemConv.length !== 1 || !g.is(stemConv[0], 'Conv')) return null;
  const stem = matchConvBn(g, stemConv[0], 3, 64, 7, 2);
  const relu = stem && g.next(stem.out, 'Relu');
  const pool = relu && g.next(relu.outputs[0], 'MaxPool');
  if (!stem || !pool) return null;
  const poolOk = attrsAre(pool, { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], dilations: [1, 1], ceil_mode: [0], storage_order: [0] }, { pads: [0, 0, 0, 0], dilations: [1, 1], ceil_mode: [0], storage_order: [0] });
  if (!poolOk) return null;
  let x = pool.outputs[0];
  let inC = 64;
  const stages: BlockParams[][] = [];
  for (let i = 0; i < 4; i++) {
    const outC = 64 * 2 ** i;
    const stage: BlockParams[] = [];
    for (let block = matchBlock(g, x, inC, outC, i > 0 ? 2 : 1); block; block = matchBlock(g, x, outC, outC, 1)) {
      stage.push(block.p);
      x = block.out;
    }
    if (stage.length === 0) return null;
    stages.push(stage);
    inC = outC;
  }
  const counts = stages.map((s) => s.length);
  const arch = (Object.keys(RESNET_BLOCKS) as ResNetArch[]).find((a) => sameDims(RESNET_BLOCKS[a], counts));
  const head = arch && matchHead(g, x);
  if (!arch || !head || g.used.size !== g.nodes.length) return null;
  return { arch, stem: stem.p, stages, head };
}

/** Options of exportResNet. */
export interface ResNetExportOptions {
  /** metadata_props (the classifier's META entries) */
  metadata?: Record<string, string>;
  /** the input's side in pixels; symbolic ('height', 'width') when absent */
  size?: number;
}

/**
 * The ONNX model (opset 13) of a ResNet module: Conv, BatchNormalization kept separate (so the file
 * keeps the running statistics and can go on training), Relu, MaxPool, Add, GlobalAveragePool,
 * Flatten, Gemm(transB=1); input 'input' [batch,3,H,W], output 'logits' [batch,classes].
 * Initializers carry the module's state-dict names; metadata gets META.arch. Reads the weights back
 * from the GPU.
 */
export async function exportResNet(net: ResNet, opts: ResNetExportOptions = {}): Promise<OnnxModel> {
  const initializers = new Map<string, OnnxTensor>();
  for (const [name, t] of net.stateDict()) {
    initializers.set(name, { name, dims: [...t.shape], dataType: DataType.FLOAT, data: await t.toArray() });
  }
  const modules = new Map(net.namedModules());
  const nodes: OnnxNode[] = [];
  const node = (name: string, opType: string, inputs: string[], attrs: OnnxNode['attrs'] = {}, output = name): string => {
    nodes.push({ name, opType, domain: '', inputs, outputs: [output], attrs });
    return output;
  };
  const convBn = (x: string, conv: string, bn: string): string => {
    const c = modules.get(conv) as Conv2d;
    const k = c.weight.shape[2];
    const [s, p] = [c.opts.stride ?? 1, c.opts.padding ?? 0].map((v) => (typeof v === 'number' ? v : v[0])); // square in a ResNet
    const y = node(conv, 'Conv', [x, `${conv}.weight`], { kernel_shape: [k, k], strides: [s, s], pads: [p, p, p, p], dilations: [1, 1], group: 1 });
    const b = modules.get(bn) as BatchNorm2d;
    return node(bn, 'BatchNormalization', [y, ...['weight', 'bias', 'running_mean', 'running_var'].map((n) => `${bn}.${n}`)], {
      epsilon: b.eps,
      momentum: 1 - b.momentum, // ONNX weighs the old running value
    });
  };
  let x = convBn('input', 'conv1', 'bn1');
  x = node('relu', 'Relu', [x]);
  x = node('maxpool', 'MaxPool', [x], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] });
  RESNET_BLOCKS[net.arch].forEach((n, i) => {
    for (let j = 0; j < n; j++) {
      const b = `layer${i + 1}.${j}`;
      const h = node(`${b}.relu1`, 'Relu', [convBn(x, `${b}.conv1`, `${b}.bn1`)]);
      const main = convBn(h, `${b}.conv2`, `${b}.bn2`);
      const shortcut = modules.has(`${b}.downsample`) ? convBn(x, `${b}.downsample.0`, `${b}.downsample.1`) : x;
      x = node(`${b}.relu2`, 'Relu', [node(`${b}.add`, 'Add', [main, shortcut])]);
    }
  });
  x = node('avgpool', 'GlobalAveragePool', [x]);
  x = node('flatten', 'Flatten', [x], { axis: 1 });
  node('fc', 'Gemm', [x, 'fc.weight', 'fc.bias'], { alpha: 1, beta: 1, transB: 1 }, 'logits');
  const side = opts.size ?? null;
  return {
    irVersion: 7,
    opset: 13,
    producerName: 'gpunet',
    graph: {
      name: net.arch,
      nodes,
      initializers,
      inputs: [{ name: 'input', elemType: DataType.FLOAT, shape: ['batch', 3, side ?? 'height', side ?? 'width'] }],
      outputs: [{ name: 'logits', elemType: DataType.FLOAT, shape: ['batch', net.numClasses] }],
    },
    metadata: { ...opts.metadata, [META.arch]: net.arch },
  };
}

// ResNet as a Network (src/onnx/network.ts). The module lives below the ONNX layer, so the methods
// that write ONNX are attached here, as src/ops/methods.ts attaches the tensor methods.
declare module '../nn/resnet.ts' {
  interface ResNet extends Network {}
}

Object.assign(ResNet.prototype, {
  /** the same ResNet with a fresh fc of `classes` outputs */
  withNewHead(this: ResNet, classes: number, opts: { rng: Rng }): Network {
    this.replaceHead(classes, { rng: opts.rng });
    return this;
  },
  toOnnx(this: ResNet, opts: { size?: number; metadata: Record<string, string> }): Promise<OnnxModel> {
    return exportResNet(this, opts);
  },
  layers(this: ResNet, size: number): LayerRow[] {
    // the fused inference kernels would skip the layers' own forwards, which the summary watches
    const fusing = this.namedModules().map(([, m]) => m).filter((m): m is ResNet | BasicBlock => (m instanceof ResNet || m instanceof BasicBlock) && m.fuse);
    for (const m of fusing) m.fuse = false;
    try {
      return moduleLayers(this, [1, 3, size, size]);
    } finally {
      for (const m of fusing) m.fuse = true;
    }
  },
});
