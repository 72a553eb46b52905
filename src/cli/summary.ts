// `gpunet summary`: the layers of a model with their output shapes and parameter counts, and the
// totals, as Keras' model.summary() prints them. Shapes come from one forward pass at batch 1
// without a tape: each layer module's forward is wrapped to note its output shape (a generic ONNX
// graph lists the nodes that run, with the shapes its plan knows before anything runs).
import { initGpu } from '../gpu/index.ts';
import type { Module } from '../nn/module.ts';
import { BasicBlock, RESNET_BLOCKS, ResNet, type ResNetArch } from '../nn/resnet.ts';
import { GraphModule } from '../onnx/graph.ts';
import { loadClassifier } from '../onnx/load.ts';
import { noGrad, Tensor, tidy } from '../tensor/index.ts';
import { formatTable } from '../train/metrics.ts';
import { defineCommand } from './command.ts';
import { UsageError } from './errors.ts';
import { choice, int, str } from './options.ts';
import { DEVICE } from './shared-options.ts';

export interface LayerRow {
  name: string;
  type: string;
  /** without the batch dimension */
  outputShape: number[];
  params: number;
}

const size = (t: Tensor) => t.size;

/** Leaf modules (and any module owning parameters itself) in the order the forward pass calls them. */
export async function moduleLayers(model: Module, inputSize: number): Promise<LayerRow[]> {
  const rows: LayerRow[] = [];
  const counted = new Set<Module>();
  const wrapped: Module[] = [];
  for (const [name, m] of model.namedModules()) {
    const own = m.namedParameters().filter(([n]) => !n.includes('.'));
    if (name === '' || (m.children().length > 0 && own.length === 0)) continue;
    const forward = m.forward;
    m.forward = (x: Tensor) => {
      const y = forward.call(m, x);
      rows.push({ name, type: m.constructor.name, outputShape: y.shape.slice(1), params: counted.has(m) ? 0 : own.map(([, t]) => size(t)).reduce((a, b) => a + b, 0) });
      counted.add(m);
      return y;
    };
    wrapped.push(m);
  }
  // fused inference kernels would skip the layers' own forwards
  const fused = model.namedModules().map(([, m]) => m).filter((m): m is ResNet | BasicBlock => (m instanceof ResNet || m instanceof BasicBlock) && m.fuse);
  try {
    model.eval();
    for (const m of fused) m.fuse = false;
    await noGrad(() => tidy(() => model.forward(Tensor.zeros([1, 3, inputSize, inputSize])).toArray()));
  } finally {
    // drop the instance wrappers: the prototype's forward shows through again
    for (const m of wrapped) delete (m as { forward?: unknown }).forward;
    for (const m of fused) m.fuse = true;
  }
  return rows;
}

/** The nodes of a generic graph that run (constants and shape arithmetic folded): op type, first
 *  output's shape, parameters read (first use). Shapes come from the graph's plan: nothing runs. */
export function graphLayers(model: GraphModule, inputSize: number): LayerRow[] {
  const paramSize = new Map(model.namedParameters().map(([n, t]) => [n, t.size]));
  const seen = new Set<string>();
  const { steps, shapes } = model.describe({ [model.graph.inputs[0].name]: [1, 3, inputSize, inputSize] });
  return steps.map((n) => {
    const params = n.inputs.reduce((s, x) => s + (seen.has(x) ? 0 : (seen.add(x), paramSize.get(x) ?? 0)), 0);
    return { name: n.name || n.outputs[0], type: n.opType, outputShape: shapes.get(n.outputs[0])!.slice(1), params };
  });
}

const commas = (n: number) => n.toLocaleString('en-US');

export function formatSummary(title: string, rows: LayerRow[], counts: { total: number; trainable: number; frozen: number }, buffers: number): string {
  const table = formatTable(
    ['Layer (type)', 'Output Shape', 'Param #'],
    rows.map((r) => [`${r.name} (${r.type})`, `(None, ${r.outputShape.join(', ')})`, commas(r.params)]),
    'llr',
  ).split('\n');
  const width = Math.max(...table.map((l) => l.length), 40);
  return [
    `Model: "${title}"`,
    '_'.repeat(width),
    table[0],
    '='.repeat(width),
    ...table.slice(2),
    '='.repeat(width),
    `Total params: ${commas(counts.total)}`,
    `Trainable params: ${commas(counts.trainable)}`,
    `Non-trainable params: ${commas(counts.frozen)}`,
    ...(buffers ? [`Buffers (batchnorm running statistics, not parameters): ${commas(buffers)}`] : []),
    '_'.repeat(width),
  ].join('\n');
}

export const summaryCommand = defineCommand({
  name: 'summary',
  summary: 'print every layer of a model with its output shape and parameter count',
  synopsis: '[--arch NAME | --model FILE.onnx] [options]',
  description: `Prints every layer with its output shape and parameter count, and the totals (trainable and frozen),
as Keras' model.summary() does. Shapes come from one forward pass at batch 1.`,
  options: {
    arch: choice(Object.keys(RESNET_BLOCKS) as ResNetArch[], { defaultText: 'resnet18 without --model', help: 'a fresh torchvision ResNet with --classes outputs' }),
    model: str({ metavar: 'FILE', help: 'an ONNX checkpoint or foreign ONNX classifier' }),
    size: int({ min: 1, max: 4096, defaultText: "the checkpoint's, else 224", help: 'input side in pixels' }),
    classes: int({ min: 1, max: 100_000, default: 1000, help: 'outputs of a fresh --arch' }),
    ...DEVICE,
  },
  async run(v) {
    if (v.arch && v.model) throw new UsageError('pass --arch or --model, not both');
    const arch = v.arch ?? (v.model ? undefined : 'resnet18');
    const classes = v.classes;
    await initGpu(v.device);
    let model: Module;
    let title: string;
    let inputSize = v.size ?? 224;
    if (arch) {
      model = new ResNet(arch, { numClasses: classes });
      title = arch;
    } else {
      const c = await loadClassifier(v.model!);
      model = c.model;
      title = v.model!;
      if (v.size === undefined && c.preprocessing) inputSize = c.preprocessing.size;
    }
    try {
      const counts = model.countParameters();
      const buffers = model.namedBuffers().reduce((s, [, t]) => s + t.size, 0);
      let rows: LayerRow[];
      if (model instanceof GraphModule) rows = graphLayers(model, inputSize);
      else rows = await moduleLayers(model, inputSize);
      console.log(formatSummary(title, rows, counts, buffers));
    } finally {
      model.release();
    }
    return 0;
  },
});
