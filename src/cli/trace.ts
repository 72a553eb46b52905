// `gpunet trace --checkpoint model.onnx|--arch resnet18 --input image.jpg [--backward]`: one image
// through the network, one line per op (src/train/trace.ts), the totals, and with --backward the
// gradient norm of every parameter after one cross-entropy backward.
import { initGpu } from '../gpu/index.ts';
import { loadImage, IMAGENET_NORMALIZATION } from '../data/image.ts';
import { printable } from '../io/printable.ts';
import { ResNet } from '../nn/resnet.ts';
import type { Classifier } from '../onnx/classifier.ts';
import { loadClassifier } from '../onnx/load.ts';
import { Rng, shapeStr, tensor, tidy } from '../tensor/index.ts';
import { formatTable } from '../train/metrics.ts';
import { traceModel, type Trace } from '../train/trace.ts';
import { defineCommand } from './command.ts';
import { PROFILE, reportProfile } from './profile.ts';
import { UsageError } from './errors.ts';
import { choice, flag, grouped, int, str } from './options.ts';
import { resolvePreprocessing } from './predict.ts';
import { DEVICE, PREPROCESSING, seedOption } from './shared-options.ts';

/** 1234567 -> '1.23M' */
function si(v: number): string {
  if (v === 0) return '-';
  const units = [[1e9, 'G'], [1e6, 'M'], [1e3, 'k']] as const;
  for (const [scale, unit] of units) if (Math.abs(v) >= scale) return `${(v / scale).toPrecision(3)}${unit}`;
  return String(Math.round(v));
}

const num = (v: number) => (Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(2) : v.toFixed(4));

function printTrace(t: Trace, classes: string[]): void {
  const header = ['#', 'op', 'layer', 'inputs', 'output', 'params', 'FLOPs', 'GPU ms', 'mean', 'std', 'min', 'max'];
  const rows = t.rows.map((r, i) => [
    String(i + 1), r.op, r.layer || '-', r.inputs.map(shapeStr).join(' '), shapeStr(r.output), r.params ? r.params.toLocaleString('en') : '-', si(r.flops),
    Number.isNaN(r.gpuMs) ? '-' : r.gpuMs.toFixed(3), num(r.stats.mean), num(r.stats.std), num(r.stats.min), num(r.stats.max),
  ]);
  console.log(formatTable(header, rows, 'lllllrrrrrrr'));
  const sum = (f: (r: Trace['rows'][number]) => number) => t.rows.reduce((a, r) => a + f(r), 0);
  const flops = sum((r) => r.flops);
  const heavy = t.rows.filter((r) => r.flops > 0).length;
  console.log('');
  console.log(`ops: ${t.rows.length}   parameters: ${sum((r) => r.params).toLocaleString('en')}   GPU time: ${Number.isNaN(sum((r) => r.gpuMs)) ? 'not measured (no timestamp queries)' : `${sum((r) => r.gpuMs).toFixed(1)} ms`}`);
  console.log(`multiply-accumulates: ${(flops / 2e9).toFixed(3)} G in the ${heavy} convolutions and matrix products (${(flops / 1e9).toFixed(2)} GFLOP); ` +
    `${(sum((r) => r.macs) / 1e9).toFixed(3)} G with batchnorm, ReLU and pooling counted per element, as ptflops counts them`);
  const name = (i: number) => (classes[i] === undefined || classes[i] === String(i) ? `${i}` : `${i} (${printable(classes[i])})`);
  const top = t.logits.reduce((best, v, i) => (v > t.logits[best] ? i : best), 0);
  console.log(`top class: ${name(top)}, logit ${t.logits[top].toFixed(4)}`);
  if (!t.backward) return;
  const b = t.backward;
  console.log('');
  console.log(`backward of cross-entropy against class ${name(b.label)}, loss ${b.loss.toFixed(4)}: gradient norm per parameter`);
  console.log(formatTable(['parameter', 'shape', '|grad|'], b.grads.map((g) => [g.name, shapeStr(g.shape), g.norm.toExponential(3)])));
}

export const traceCommand = defineCommand({
  name: 'trace',
  summary: 'one image through a network, op by op: shapes, parameters, FLOPs, GPU time, output statistics',
  synopsis: '--checkpoint model.onnx|--arch resnet18 --input image.jpg [--backward] [options]',
  description: `Runs one image through the network in eval mode and prints a line per op as it flows through:
the op, its layer, its input and output shapes, the parameters it uses, the FLOPs its kernels
declare (a multiply-add counts 2), its GPU time and the mean, std, min and max of its output; then
the totals. With --backward, one cross-entropy backward against the top class (or --label) follows,
and the gradient norm of every parameter is printed.`,
  options: {
    checkpoint: str({ metavar: 'FILE.onnx', help: 'a classifier checkpoint or ONNX file' }),
    arch: choice(['resnet18', 'resnet34'] as const, { help: 'a fresh torchvision ResNet (random weights from --seed) instead of a checkpoint' }),
    input: str({ metavar: 'IMAGE', required: true, help: 'the image' }),
    backward: flag({ help: 'then one cross-entropy backward: the gradient norm of every parameter' }),
    label: int({ min: 0, help: "the class the backward's loss targets (default: the top class)" }),
    classes: int({ min: 1, max: 100_000, default: 1000, help: 'with --arch: its number of classes' }),
    json: flag({ help: 'the trace as one JSON object' }),
    ...PROFILE,
    seed: seedOption('with --arch: the seed of its initial weights'),
    ...grouped('preprocessing (default: the checkpoint\'s; with --arch, ImageNet\'s at 224 px)', PREPROCESSING),
    ...DEVICE,
  },
  async run(v) {
    if ((v.checkpoint === undefined) === (v.arch === undefined)) throw new UsageError('give --checkpoint FILE or --arch resnet18|resnet34 (one of them)');
    await initGpu(v.device);
    const c: Classifier = v.checkpoint
      ? await loadClassifier(v.checkpoint, { size: v.size })
      : {
          model: new ResNet(v.arch!, { numClasses: v.classes, rng: new Rng(v.seed) }),
          classes: Array.from({ length: v.classes }, (_, i) => String(i)),
          preprocessing: { size: 224, ...IMAGENET_NORMALIZATION, resize: 'crop' },
          source: v.arch!,
        };
    try {
      if (v.label !== undefined && v.label >= c.classes.length) throw new UsageError(`--label ${v.label}: ${c.source} has ${c.classes.length} classes (0..${c.classes.length - 1})`);
      const p = resolvePreprocessing(v, c.preprocessing, c.source, c.declaredSize);
      const image = await loadImage(v.input, p);
      const t = await tidy(() => traceModel(c.model, tensor(image, { shape: [1, 3, p.size, p.size] }), { backward: v.backward, label: v.label }));
      const { profile, ...trace } = t;
      if (v.json) console.log(JSON.stringify({ ...trace, logits: Array.from(t.logits) }));
      else printTrace(t, c.classes);
      if (v.profile !== undefined && profile) await reportProfile(v.profile, profile, 1, v.json);
      return 0;
    } finally {
      c.model.release();
    }
  },
});
