// `gpunet bench`: images per second of a model (a checkpoint, or a fresh ResNet), inference or a
// training step, on random inputs: warm-up, then the median of timed steps (src/train/benchmark.ts).
import { loadavg } from 'node:os';
import { getGpu, initGpu, tuneCache } from '../gpu/index.ts';
import type { Module } from '../nn/module.ts';
import { ResNet, RESNET_BLOCKS, type ResNetArch } from '../nn/resnet.ts';
import { defaultSize, loadClassifier } from '../onnx/load.ts';
import { Rng } from '../tensor/index.ts';
import { benchmarkModel } from '../train/benchmark.ts';
import { defineCommand } from './command.ts';
import { UsageError } from './errors.ts';
import { choice, flag, int, str } from './options.ts';
import { PROFILE, reportProfile } from './profile.ts';
import { DEVICE } from './shared-options.ts';

/** The model options bench and tune share. */
export const MODEL_OPTIONS = {
  checkpoint: str({ metavar: 'FILE', help: 'an ONNX classifier (its input size is the default --size)' }),
  arch: choice(Object.keys(RESNET_BLOCKS) as ResNetArch[], { defaultText: 'resnet18', help: 'a fresh torchvision-style ResNet instead of a checkpoint' }),
  batch: int({ min: 1, max: 4096, default: 1, help: 'images per step' }),
  size: int({ min: 1, max: 4096, defaultText: "the checkpoint's, else its graph input's fixed side, else 224", help: 'input side in pixels' }),
  classes: int({ min: 1, max: 1_000_000, default: 1000, help: 'classes of the fresh --arch model' }),
  ...DEVICE,
};

/** The model the options name: a checkpoint, or a fresh ResNet. */
export async function openModel(v: { checkpoint?: string; arch?: ResNetArch; size?: number; classes: number }): Promise<{ model: Module; classes: number; size: number; name: string }> {
  if (v.checkpoint && v.arch) throw new UsageError('give --checkpoint or --arch, not both');
  if (v.checkpoint) {
    const c = await loadClassifier(v.checkpoint, { size: v.size });
    return { model: c.model, classes: c.classes.length, size: v.size ?? defaultSize(c), name: v.checkpoint };
  }
  const name = v.arch ?? 'resnet18';
  return { model: new ResNet(name, { numClasses: v.classes, rng: new Rng(0) }), classes: v.classes, size: v.size ?? 224, name };
}

export const benchCommand = defineCommand({
  name: 'bench',
  summary: 'images per second of a model (inference or training step), with an optional per-op profile',
  synopsis: '[--checkpoint model.onnx | --arch resnet18|resnet34] [--batch N] [--size N] [--train] [--json] [options]',
  description: `Images per second of a model on random inputs: inference (eval mode, no tape), or with --train a
training step (forward, softmax cross-entropy, backward, SGD with momentum). Every step ends with a
read-back of its result; warm-up steps first, then the median of the timed steps and their spread.`,
  options: {
    ...MODEL_OPTIONS,
    train: flag({ help: 'time training steps instead of inference' }),
    steps: int({ min: 1, max: 100_000, default: 5, help: 'timed steps' }),
    warmup: int({ min: 0, max: 100_000, default: 2, help: 'untimed steps first' }),
    tune: flag({ help: 'tune the kernels at the shapes the warm-up ran that the adapter\'s tuning cache lacks (see gpunet tune), then time' }),
    json: flag({ help: 'one JSON object instead of the line' }),
    ...PROFILE,
  },
  async run(v) {
    const gpu = await initGpu(v.device);
    const { model, classes, size, name } = await openModel(v);
    try {
      const { batch, steps } = v;
      const run = { batch, size, classes, train: v.train };
      if (v.tune) {
        await benchmarkModel(model, { ...run, warmup: 0, steps: 1 });
        await tuneCache(gpu).tunePending();
      }
      const r = await benchmarkModel(model, { ...run, steps, warmup: v.warmup, profile: v.profile !== undefined });
      const load = loadavg()[0];
      if (v.json) {
        console.log(JSON.stringify({
          model: name, task: v.train ? 'train' : 'inference', batch, size, steps, imagesPerSec: r.imagesPerSec,
          medianMs: r.medianMs, minMs: r.minMs, maxMs: r.maxMs, stepsMs: r.stepsMs, adapter: gpu.adapter.name, loadAverage: load,
        }));
      } else {
        console.log(
          `${name} ${v.train ? 'training step' : 'inference'}, batch ${batch}, ${size} px: ${r.imagesPerSec.toFixed(2)} images/s ` +
            `(median step ${r.medianMs.toFixed(1)} ms, ${r.minMs.toFixed(1)}-${r.maxMs.toFixed(1)} over ${steps}; ` +
            `${gpu.adapter.name}; load average ${load.toFixed(2)})`,
        );
      }
      if (r.profile) await reportProfile(v.profile!, r.profile, steps, v.json);
      return 0;
    } finally {
      model.release();
      getGpu().pool.trim();
    }
  },
});
