// The loss path: fused softmax-cross-entropy forward and backward, softmax, and the sum reduction,
// at ResNet18's 1000-class head (batch 1 and 16, and 256 where the traffic shows); cross-entropy
// with class weights and ignored labels, and with soft targets (mixup); softmax over attention
// rows (ViT-B/16's [16,12,197,197]) and over the channels of an activation (a strided axis).
// validate() checks the loss and softmax against the float64 reference, the cross-entropy backward
// along a random direction (central differences of the reference), and the sum against a float64 sum.
//   npx tsx bench/softmax.ts [filter] [--quick]
import { sum } from '../src/ops/reduce.ts';
import { softmax, softmaxCrossEntropy } from '../src/ops/softmax.ts';
import { Rng, Tensor } from '../src/tensor/index.ts';
import { crossEntropyRef, softmaxRef } from '../src/reference/softmax.ts';
import { expectClose, expectGradient, isMain, randomValues, readBack, runFamilies, toTensor, type BenchCase } from './harness.ts';

export const title = 'softmax, cross-entropy, sum';

const HEADS = [[1, 1000], [16, 1000], [256, 1000]];
const SUM_LENGTHS = [100_003, 1_000_000, 10_000_000];
const QUICK_HEAD = '[16,1000]';
const QUICK_SUM = 1_000_000;

/** logits spread like a trained head's (|x| up to 3) and one label per row */
function logits(n: number, c: number, rng: Rng): { x: Float64Array; labels: number[] } {
  return { x: randomValues(n * c, rng, -3, 3), labels: Array.from({ length: n }, () => rng.int(c)) };
}

export async function validate(): Promise<void> {
  for (const [n, c] of HEADS) {
    const rng = new Rng(n + c);
    const { x, labels } = logits(n, c, rng);
    const [loss, probs, dx] = await readBack(() => {
      const t = toTensor(x, [n, c]);
      t.requiresGrad = true;
      const l = softmaxCrossEntropy(t, labels);
      l.backward();
      return [l, softmax(t), t.grad!];
    });
    const name = `[${n},${c}]`;
    const lossRef = (v: Float64Array) => crossEntropyRef(v, [n, c], { labels }, { reduction: 'mean' });
    expectClose(`cross-entropy ${name}`, loss, lossRef(x));
    expectClose(`softmax ${name}`, probs, softmaxRef(x, [n, c]));
    expectGradient(`cross-entropy ${name} backward`, lossRef, x, [1], dx, rng);
  }
  {
    const [n, c] = [16, 10];
    const rng = new Rng(3);
    const { x, labels } = logits(n, c, rng);
    labels[3] = -100;
    const weight = randomValues(c, rng, 0.5, 2);
    const probs = softmaxRef(randomValues(n * c, rng), [n, c]);
    const [weighted, soft] = await readBack(() => [
      softmaxCrossEntropy(toTensor(x, [n, c]), labels, { weight, ignoreIndex: -100 }),
      softmaxCrossEntropy(toTensor(x, [n, c]), toTensor(probs, [n, c]), { labelSmoothing: 0.1 }),
    ]);
    expectClose('cross-entropy [16,10] weighted, a row ignored', weighted, crossEntropyRef(x, [n, c], { labels }, { reduction: 'mean', weight, ignoreIndex: -100 }));
    expectClose('cross-entropy [16,10] soft targets', soft, crossEntropyRef(x, [n, c], { probs }, { reduction: 'mean', labelSmoothing: 0.1 }));
    const shape = [2, 7, 12];
    const v = randomValues(2 * 7 * 12, rng, -3, 3);
    const [along] = await readBack(() => [softmax(toTensor(v, shape), 1)]);
    expectClose('softmax [2,7,12] axis 1', along, softmaxRef(v, shape, 1));
  }
  for (const n of SUM_LENGTHS) {
    // positive values: a sum without cancellation, so the relative error measures the kernel
    const x = randomValues(n, new Rng(n), 0, 1);
    const [s] = await readBack(() => [sum(toTensor(x, [n]))]);
    expectClose(`sum [${n}]`, s, [x.reduce((a, b) => a + b, 0)]);
  }
}

function logitsTensor(n: number, c: number, seed: number): { t: Tensor; labels: number[] } {
  const { x, labels } = logits(n, c, new Rng(seed));
  return { t: toTensor(x, [n, c]), labels };
}

export const cases: BenchCase[] = [
  ...HEADS.map(([n, c]): BenchCase => ({
    name: `cross-entropy fwd+bwd [${n},${c}]`,
    bytes: 12 * n * c, // forward reads x; backward reads x, writes dx
    quick: `[${n},${c}]` === QUICK_HEAD,
    setup() {
      const { t, labels } = logitsTensor(n, c, 1);
      t.requiresGrad = true;
      return {
        run: () => {
          softmaxCrossEntropy(t, labels).backward();
          t.grad?.release();
          t.grad = null;
        },
        dispose: () => t.release(),
      };
    },
  })),
  ...(['weighted', 'soft'] as const).map((kind): BenchCase => ({
    name: `cross-entropy fwd+bwd [256,1000] ${kind === 'weighted' ? 'class weights, ignored labels' : 'soft targets'}`,
    bytes: 12 * 256 * 1000 + (kind === 'soft' ? 8 * 256 * 1000 : 0),
    setup() {
      const rng = new Rng(4);
      const { t, labels } = logitsTensor(256, 1000, 5);
      t.requiresGrad = true;
      const weight = Tensor.uniform([1000], rng, 0.5, 2);
      const probs = softmax(Tensor.randn([256, 1000], rng));
      labels[0] = -1;
      const loss = () => (kind === 'weighted' ? softmaxCrossEntropy(t, labels, { weight, ignoreIndex: -1 }) : softmaxCrossEntropy(t, probs));
      return {
        run: () => {
          loss().backward();
          t.grad?.release();
          t.grad = null;
        },
        dispose: () => [t, weight, probs].forEach((x) => x.release()),
      };
    },
  })),
  ...[[16, 12, 197, 197], [16, 64, 3136]].map((shape): BenchCase => ({
    name: `softmax ${JSON.stringify(shape)} axis ${shape.length === 4 ? '-1 (attention)' : '1 (channels, strided)'}`,
    bytes: 8 * shape.reduce((a, b) => a * b, 1),
    setup() {
      const t = Tensor.randn(shape, new Rng(6));
      return { run: () => void softmax(t, shape.length === 4 ? -1 : 1), dispose: () => t.release() };
    },
  })),
  ...HEADS.map(([n, c]): BenchCase => ({
    name: `softmax [${n},${c}]`,
    bytes: 8 * n * c,
    quick: `[${n},${c}]` === QUICK_HEAD,
    setup() {
      const { t } = logitsTensor(n, c, 2);
      return { run: () => void softmax(t), dispose: () => t.release() };
    },
  })),
  ...SUM_LENGTHS.map((n): BenchCase => ({
    name: `sum [${n}]`,
    bytes: 4 * n,
    quick: n === QUICK_SUM,
    setup() {
      const t = Tensor.full([n], 1);
      return { run: () => void sum(t), dispose: () => t.release() };
    },
  })),
];

if (isMain(import.meta.url)) process.exit((await runFamilies([{ title, cases, validate }])) ? 0 : 1);
