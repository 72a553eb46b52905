// The loss path: fused softmax-cross-entropy forward and backward, softmax, and the sum reduction.
// Each kernel is first checked against the float64 reference, then timed (npx tsx bench/softmax.ts).
import { pathToFileURL } from 'node:url';
import { initGpu } from '../src/gpu/index.ts';
import { sum } from '../src/ops/reduce.ts';
import { softmax, softmaxCrossEntropy } from '../src/ops/softmax.ts';
import { Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { crossEntropyRef, softmaxRef } from '../test/reference/softmax.ts';
import { runBench, type BenchCase } from './harness.ts';

// CIFAR-10 and ImageNet heads at a few batch sizes
const HEADS = [[256, 10], [1, 1000], [32, 1000], [256, 1000]];
const SUM_LENGTHS = [100_003, 1_000_000, 10_000_000];

function logits(n: number, c: number, seed: number): { x: Float32Array; labels: number[] } {
  const rng = new Rng(seed);
  const x = new Float32Array(n * c);
  for (let i = 0; i < x.length; i++) x[i] = 3 * rng.normal();
  return { x, labels: Array.from({ length: n }, () => rng.int(c)) };
}

function maxRelError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return Number.isFinite(num) && a.length === b.length ? num / den : Infinity;
}

async function validate(): Promise<void> {
  for (const [n, c] of HEADS) {
    const { x, labels } = logits(n, c, n + c);
    const x64 = Float64Array.from(x);
    const [loss, probs] = await tidy(() => {
      const t = Tensor.from(x, [n, c]);
      return Promise.all([softmaxCrossEntropy(t, labels).toArray(), softmax(t).toArray()]);
    });
    const errs = [maxRelError(loss, crossEntropyRef(x64, n, c, labels, 'mean', 0)), maxRelError(probs, softmaxRef(x64, n, c))];
    if (errs.some((e) => !(e < 1e-4))) throw new Error(`[${n},${c}]: relative errors ${errs.join(', ')}`);
  }
  for (const n of SUM_LENGTHS) {
    const x = new Float32Array(n).fill(0.5);
    const s = await tidy(() => sum(Tensor.from(x, [n])).item());
    if (Math.abs(s - n / 2) > 1e-5 * n) throw new Error(`sum of ${n}: ${s}`);
  }
  console.log('all kernels match the reference');
}

export const cases: BenchCase[] = [
  ...HEADS.map(([n, c]): BenchCase => ({
    name: `cross-entropy fwd+bwd [${n},${c}]`,
    bytes: 12 * n * c, // forward reads x; backward reads x, writes dx
    setup() {
      const { x, labels } = logits(n, c, 1);
      const t = Tensor.from(x, [n, c]);
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
  ...HEADS.map(([n, c]): BenchCase => ({
    name: `softmax [${n},${c}]`,
    bytes: 8 * n * c,
    setup() {
      const t = Tensor.from(logits(n, c, 2).x, [n, c]);
      return { run: () => void softmax(t), dispose: () => t.release() };
    },
  })),
  ...SUM_LENGTHS.map((n): BenchCase => ({
    name: `sum [${n}]`,
    bytes: 4 * n,
    setup() {
      const t = Tensor.full([n], 1);
      return { run: () => void sum(t), dispose: () => t.release() };
    },
  })),
];

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  await initGpu(process.env.GPUNET_DEVICE);
  await validate();
  await runBench('softmax, cross-entropy, sum', cases, { repeat: 10 });
  process.exit(0);
}
