// `gpunet summary`: the layers of a model with their output shapes and parameter counts, and the
// totals, as Keras' model.summary() prints them. The network lists its layers (Network.layers: a
// module tree's layers from a dry forward pass at batch 1, a generic ONNX graph's nodes that run,
// with the shapes its plan knows); nothing runs on the device.
import { initGpu } from '../gpu/index.ts';
import { RESNET_BLOCKS, ResNet, type ResNetArch } from '../nn/resnet.ts';
import type { LayerRow } from '../nn/split.ts';
import { DEFAULT_SIZE, defaultSize, loadClassifier } from '../onnx/load.ts';
import type { Network } from '../onnx/network.ts';
import { formatTable } from '../train/metrics.ts';
import { defineCommand } from './command.ts';
import { UsageError } from './errors.ts';
import { choice, int, str } from './options.ts';
import { DEVICE } from './shared-options.ts';

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
as Keras' model.summary() does. Shapes come from a dry forward pass at batch 1 (nothing runs).`,
  options: {
    arch: choice(Object.keys(RESNET_BLOCKS) as ResNetArch[], { defaultText: 'resnet18 without --model', help: 'a fresh torchvision ResNet with --classes outputs' }),
    model: str({ metavar: 'FILE', help: 'an ONNX checkpoint or foreign ONNX classifier' }),
    size: int({ min: 1, max: 4096, defaultText: "the checkpoint's, else its graph input's fixed side, else 224", help: 'input side in pixels' }),
    classes: int({ min: 1, max: 100_000, default: 1000, help: 'outputs of a fresh --arch' }),
    ...DEVICE,
  },
  async run(v) {
    if (v.arch && v.model) throw new UsageError('pass --arch or --model, not both');
    const arch = v.arch ?? (v.model ? undefined : 'resnet18');
    const classes = v.classes;
    await initGpu(v.device);
    let model: Network;
    let title: string;
    let inputSize = v.size ?? DEFAULT_SIZE;
    if (arch) {
      model = new ResNet(arch, { numClasses: classes });
      title = arch;
    } else {
      const c = await loadClassifier(v.model!, { size: v.size });
      model = c.model;
      title = v.model!;
      inputSize = v.size ?? defaultSize(c);
    }
    try {
      const counts = model.countParameters();
      const buffers = model.namedBuffers().reduce((s, [, t]) => s + t.size, 0);
      console.log(formatSummary(title, model.layers(inputSize), counts, buffers));
    } finally {
      model.release();
    }
    return 0;
  },
});
