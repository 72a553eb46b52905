// Images per second of a model, as `gpunet bench` and `npm run bench:models` measure it: an
// inference (no tape, eval mode) or a training step (train mode: forward, softmax cross-entropy,
// backward, SGD with momentum and weight decay) on a random batch, each step ending with a read-back
// of its result (the logits, or the loss), so a step's time is everything a user waits for.
// Warm-up steps first (pipelines compile, the buffer pool fills), then the median of the timed
// ones; the spread says how much the machine's other jobs moved them.
import { getGpu, type Profile } from '../gpu/index.ts';
import type { Module } from '../nn/module.ts';
import { softmaxCrossEntropy } from '../ops/softmax.ts';
import { SGD } from '../optim/sgd.ts';
import { noGrad, Rng, Tensor, tidy } from '../tensor/index.ts';

export interface ModelBenchOptions {
  batch: number;
  /** input side in pixels */
  size: number;
  /** input channels (default 3) */
  channels?: number;
  classes: number;
  /** a training step instead of inference */
  train: boolean;
  warmup?: number;
  steps?: number;
  /** profile the timed steps (timestamp queries) and return the profile */
  profile?: boolean;
  /** stop timing once this much time is spent (at least one timed step) */
  budgetMs?: number;
  seed?: number;
}

export interface ModelBenchResult extends StepTimes {
  /** images per second of the median step */
  imagesPerSec: number;
  profile?: Profile;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export interface StepTimes {
  medianMs: number;
  minMs: number;
  maxMs: number;
  /** every timed step, ms */
  stepsMs: number[];
}

/** Runs `step` `warmup` times untimed, then `steps` times timed (fewer once `budgetMs` is spent,
 *  but at least one): the timing loop of every model benchmark, gpunet's and its peers'. A step
 *  that alone outlasts the budget is warm after one untimed run (its compiling is a small part of
 *  it), so the other warm-up runs are skipped: a peer taking 100 s per step still gets a timed row. */
export async function timeSteps(step: () => Promise<void>, warmup: number, steps: number, o: { budgetMs?: number; beforeTimed?: () => void } = {}): Promise<StepTimes> {
  const budgetMs = o.budgetMs ?? Infinity;
  for (let i = 0; i < warmup; i++) {
    const t0 = performance.now();
    await step();
    if (performance.now() - t0 > budgetMs) break;
  }
  o.beforeTimed?.();
  const stepsMs: number[] = [];
  const start = performance.now();
  while (stepsMs.length < steps && (stepsMs.length === 0 || performance.now() - start < budgetMs)) {
    const t0 = performance.now();
    await step();
    stepsMs.push(performance.now() - t0);
  }
  return { medianMs: median(stepsMs), minMs: Math.min(...stepsMs), maxMs: Math.max(...stepsMs), stepsMs };
}

/** Times `model` on random inputs of the given shape. The model's mode is restored afterwards. */
export async function benchmarkModel(model: Module, o: ModelBenchOptions): Promise<ModelBenchResult> {
  const { batch, size, classes, train, warmup = 2, steps = 5 } = o;
  const gpu = getGpu();
  const rng = new Rng(o.seed ?? 1);
  const wasTraining = model.training;
  model.train(train);
  const x = Tensor.randn([batch, o.channels ?? 3, size, size], rng);
  const labels = Array.from({ length: batch }, () => rng.int(classes));
  const opt = train ? new SGD(model.parameters().filter((p) => p.requiresGrad), { lr: 1e-4, momentum: 0.9, weightDecay: 1e-4 }) : null;
  const step = async () => {
    await tidy(async () => {
      if (!opt) {
        await noGrad(() => model.forward(x)).toArray();
        return;
      }
      const loss = softmaxCrossEntropy(model.forward(x), labels);
      loss.backward();
      gpu.withScope('optimizer', () => {
        opt.step();
        opt.zeroGrad();
      });
      await loss.item();
    });
  };
  try {
    const beforeTimed = o.profile ? () => gpu.startProfiling() : undefined;
    const times = await timeSteps(step, warmup, steps, { budgetMs: o.budgetMs, beforeTimed });
    const profile = o.profile ? await gpu.stopProfiling() : undefined;
    return { imagesPerSec: (1000 * batch) / times.medianMs, ...times, profile };
  } finally {
    opt?.release();
    x.release();
    model.train(wasTraining);
  }
}
