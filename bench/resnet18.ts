// Whole-model timing of torchvision's ResNet18 (src/nn/resnet.ts) at 224 px: inference (eval mode,
// no tape) at batch 1, and one training step (forward, softmax cross-entropy, backward, SGD with
// momentum and weight decay) at batch 2; one GPU sync per launch. GFLOP/s count the convolutions'
// and the fc layer's multiply-adds: 1.814 G per image forward, three times that for a training
// step (forward, dx, dw) less the stem's dx (the image needs no gradient). validate() runs both
// once: finite logits of the right shape, a finite loss, and a finite gradient for every parameter.
//   npx tsx bench/resnet18.ts [--quick]        (npx tsx bench/kernels.ts --model runs it too)
import { softmaxCrossEntropy } from '../src/ops/softmax.ts';
import { resnet18, type ResNet } from '../src/nn/resnet.ts';
import { SGD } from '../src/optim/sgd.ts';
import { noGrad, Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { isMain, readBack, runFamilies, type BenchCase } from './harness.ts';

export const title = 'ResNet18 at 224 px (whole model)';

const CLASSES = 1000;
const TRAIN_BATCH = 2;
/** multiply-adds per 224 px image: the stem conv; and all of them, the stem's 118.0 M, layer1's
 *  four 3x3 convs 462.4 M, 411.0 M in each of layer2-4 (3x3 convs and the 1x1 downsample), and the
 *  fc layer's 0.5 M (torchvision's model card: 1.81 "GFLOPS") */
const STEM_MACS = 64 * 112 * 112 * 3 * 7 * 7;
const FORWARD_MACS = 1_814_073_344;

/** A fresh model in train or eval mode, an image batch and labels. */
function inputs(batch: number, training: boolean): { model: ResNet; x: Tensor; labels: number[] } {
  const model = resnet18({ numClasses: CLASSES }).train(training);
  const rng = new Rng(1);
  return { model, x: Tensor.randn([batch, 3, 224, 224], rng), labels: Array.from({ length: batch }, () => rng.int(CLASSES)) };
}

function inference(model: ResNet, x: Tensor): Tensor {
  return noGrad(() => model.forward(x));
}

/** One training step; returns the loss (before the update). */
function trainStep(model: ResNet, opt: SGD, x: Tensor, labels: number[]): Tensor {
  const loss = softmaxCrossEntropy(model.forward(x), labels);
  loss.backward();
  opt.step();
  return loss;
}

function optimizer(model: ResNet): SGD {
  return new SGD(model.parameters(), { lr: 1e-3, momentum: 0.9, weightDecay: 1e-4 });
}

function releaseAll(model: ResNet, opt: SGD | null, x: Tensor): void {
  opt?.release();
  model.release();
  x.release();
}

const allFinite = (a: Float32Array) => a.every(Number.isFinite);

export async function validate(): Promise<void> {
  const eval1 = inputs(1, false);
  const [logits] = await readBack(() => [inference(eval1.model, eval1.x)]);
  releaseAll(eval1.model, null, eval1.x);
  if (logits.length !== CLASSES || !allFinite(logits)) throw new Error(`resnet18 inference: ${logits.length} logits, finite: ${allFinite(logits)}`);
  if (Math.max(...logits) === Math.min(...logits)) throw new Error('resnet18 inference: every logit is the same');

  const train = inputs(TRAIN_BATCH, true);
  const opt = optimizer(train.model);
  const loss = await tidy(() => trainStep(train.model, opt, train.x, train.labels).item());
  const bad: string[] = [];
  for (const [name, p] of train.model.namedParameters()) {
    if (!p.grad) bad.push(`${name}: no gradient`);
    else if (!allFinite(await p.grad.toArray())) bad.push(`${name}: non-finite gradient`);
    else if (!allFinite(await p.toArray())) bad.push(`${name}: non-finite after the SGD step`);
  }
  opt.zeroGrad();
  releaseAll(train.model, opt, train.x);
  if (!Number.isFinite(loss)) throw new Error(`resnet18 training step: loss ${loss}`);
  if (bad.length) throw new Error(`resnet18 training step: ${bad.slice(0, 5).join('; ')}${bad.length > 5 ? ` (+${bad.length - 5} more)` : ''}`);
}

export const cases: BenchCase[] = [
  {
    name: 'inference forward N1',
    flops: 2 * FORWARD_MACS,
    items: 1,
    quick: true,
    setup() {
      const { model, x } = inputs(1, false);
      return { run: () => void inference(model, x), dispose: () => releaseAll(model, null, x) };
    },
  },
  {
    name: `training step N${TRAIN_BATCH} (fwd, loss, bwd, sgd)`,
    flops: 2 * TRAIN_BATCH * (3 * FORWARD_MACS - STEM_MACS),
    items: TRAIN_BATCH,
    quick: true,
    setup() {
      const { model, x, labels } = inputs(TRAIN_BATCH, true);
      const opt = optimizer(model);
      return {
        run: () => {
          trainStep(model, opt, x, labels);
          opt.zeroGrad();
        },
        dispose: () => releaseAll(model, opt, x),
      };
    },
  },
];

if (isMain(import.meta.url)) process.exit((await runFamilies([{ title, cases, validate }])) ? 0 : 1);
