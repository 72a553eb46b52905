// Batch normalization at ResNet18's shapes (batch 16, 224 px): training forward, eval forward and
// training backward (dx, dgamma, dbeta), each first checked against the float64 reference.
// GB/s counts the minimum traffic: training forward reads x twice (statistics, then normalize) and
// writes y; eval reads x once; the backward reads dy and x twice (sums, then dx) and writes dx.
// Run: npx tsx bench/batchnorm.ts [filter]
import { initGpu } from '../src/gpu/index.ts';
import { batchNorm2d } from '../src/ops/batchnorm.ts';
import { keep, Rng, Tensor, tidy, type GradNode } from '../src/tensor/index.ts';
import { batchNorm2dRef } from '../test/reference/batchnorm.ts';
import { runBench, type BenchCase } from './harness.ts';

const SHAPES = [
  [16, 64, 112, 112],
  [16, 64, 56, 56],
  [16, 128, 28, 28],
  [16, 256, 14, 14],
  [16, 512, 7, 7],
];

interface Inputs {
  x: Tensor;
  gamma: Tensor;
  beta: Tensor;
  runningMean: Tensor;
  runningVar: Tensor;
}

function inputs(shape: number[], seed: number): Inputs {
  const rng = new Rng(seed);
  const C = [shape[1]];
  return {
    x: keep(Tensor.randn(shape, rng, 1, 0.5)),
    gamma: keep(Tensor.uniform(C, rng, 0.5, 1.5)),
    beta: keep(Tensor.randn(C, rng, 0.2)),
    runningMean: keep(Tensor.zeros(C)),
    runningVar: keep(Tensor.ones(C)),
  };
}

function release(t: Inputs): void {
  for (const v of Object.values(t)) v.release();
}

/** max |gpu - ref| / max |ref| of a training forward on random inputs */
async function validate(shape: number[]): Promise<number> {
  const t = inputs(shape, 1);
  const [x, g, b] = await Promise.all([t.x.toArray(), t.gamma.toArray(), t.beta.toArray()]);
  const C = shape[1];
  const ref = batchNorm2dRef(Float64Array.from(x), shape, Float64Array.from(g), Float64Array.from(b), new Float64Array(C), new Float64Array(C).fill(1), {
    training: true, momentum: 0.1, eps: 1e-5,
  });
  const y = await tidy(() => batchNorm2d(t.x, t.gamma, t.beta, t.runningMean, t.runningVar, { training: true }).toArray());
  release(t);
  let num = 0;
  let den = 0;
  for (let i = 0; i < y.length; i++) {
    num = Math.max(num, Math.abs(y[i] - ref[i]));
    den = Math.max(den, Math.abs(ref[i]));
  }
  return num / den;
}

const cases: BenchCase[] = [];
for (const shape of SHAPES) {
  const name = `[${shape.join(',')}]`;
  const bytes = shape.reduce((a, b) => a * b) * 4;
  for (const training of [true, false]) {
    cases.push({
      name: `${training ? 'train' : 'eval '} forward  ${name}`,
      bytes: (training ? 3 : 2) * bytes,
      setup() {
        const t = inputs(shape, 2);
        return {
          run: () => void batchNorm2d(t.x, t.gamma, t.beta, t.runningMean, t.runningVar, { training }),
          dispose: () => release(t),
        };
      },
    });
  }
  cases.push({
    name: `train backward ${name}`,
    bytes: 5 * bytes,
    setup() {
      // one forward keeps its tape node; each run calls the backward rule on it again
      const t = inputs(shape, 3);
      for (const p of [t.x, t.gamma, t.beta]) p.requiresGrad = true;
      const y = batchNorm2d(t.x, t.gamma, t.beta, t.runningMean, t.runningVar, { training: true });
      const node = y.node as GradNode;
      const dy = keep(Tensor.randn(shape, new Rng(4)));
      return {
        run: () => void node.backward(dy, node.needs),
        dispose: () => {
          release(t);
          y.release();
          dy.release();
        },
      };
    },
  });
}

await initGpu(process.env.GPUNET_DEVICE);
for (const shape of SHAPES) {
  const err = await validate(shape);
  console.log(`validate training forward [${shape.join(',')}]: rel error ${err.toExponential(2)}`);
  if (!(err < 1e-4)) throw new Error('batchNorm2d does not match the reference');
}
await runBench('batchNorm2d', cases, { filter: process.argv[2] });
