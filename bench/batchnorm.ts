// Batch normalization at ResNet18's shapes in a training step (batch 8, 224 and 112 px): training forward, eval forward and
// training backward (dx, dgamma, dbeta). validate() checks both forwards (and the running
// statistics) against the float64 reference at every shape, and the backward at batch 2 along a
// random direction (the reference has no backward; central differences of its forward check it).
// GB/s counts the minimum traffic: training forward reads x twice (statistics, then normalize) and
// writes y; eval reads x once; the backward reads dy and x twice (sums, then dx) and writes dx.
//   npx tsx bench/batchnorm.ts [filter] [--quick]
import { batchNorm2d } from '../src/ops/batchnorm.ts';
import { noGrad, Rng, Tensor } from '../src/tensor/index.ts';
import { batchNorm2dRef } from '../src/reference/batchnorm.ts';
import { backwardOnly, expectClose, expectGradient, isMain, randomValues, readBack, runFamilies, toTensor, type BenchCase } from './harness.ts';

export const title = 'batchNorm2d (ResNet18 activations, batch 8, 224 and 112 px)';

// the stem's and layer1-4's outputs at 224 px, then those 112 px adds ([8,64,56,56] is both)
const SHAPES = [
  [8, 64, 112, 112],
  [8, 64, 56, 56],
  [8, 128, 28, 28],
  [8, 256, 14, 14],
  [8, 512, 7, 7],
  [8, 64, 28, 28],
  [8, 128, 14, 14],
  [8, 256, 7, 7],
  [8, 512, 4, 4],
];
const QUICK = new Set(['[8,64,56,56]', '[8,512,7,7]']);

const MOMENTUM = 0.1;
const EPS = 1e-5;

/** Random x, gamma, beta and running statistics of a fresh layer, as float64 and on the GPU. */
function operands(shape: readonly number[], rng: Rng) {
  const C = shape[1];
  const x = randomValues(shape.reduce((a, b) => a * b), rng);
  const gamma = randomValues(C, rng, 0.5, 1.5);
  const beta = randomValues(C, rng);
  return {
    x, gamma, beta,
    tensors: () => ({
      x: toTensor(x, shape),
      gamma: toTensor(gamma, [C]),
      beta: toTensor(beta, [C]),
      runningMean: Tensor.zeros([C]),
      runningVar: Tensor.ones([C]),
    }),
  };
}

type Operands = ReturnType<ReturnType<typeof operands>['tensors']>;

function forward(t: Operands, training: boolean): Tensor {
  return batchNorm2d(t.x, t.gamma, t.beta, t.runningMean, t.runningVar, { training, momentum: MOMENTUM, eps: EPS });
}

function release(t: Operands): void {
  for (const v of Object.values(t)) v.release();
}

export async function validate(): Promise<void> {
  for (const full of SHAPES) {
    const C = full[1];
    // forwards at the full shape: training (and the running statistics it updates), then eval on those
    const { x, gamma, beta, tensors } = operands(full, new Rng(C));
    const [train, mean, variance, evaluated] = await readBack(() =>
      noGrad(() => {
        const t = tensors();
        return [forward(t, true), t.runningMean, t.runningVar, forward(t, false)];
      }),
    );
    const refMean = new Float64Array(C);
    const refVar = new Float64Array(C).fill(1);
    const trainRef = batchNorm2dRef(x, full, gamma, beta, refMean, refVar, { training: true, momentum: MOMENTUM, eps: EPS });
    const evalRef = batchNorm2dRef(x, full, gamma, beta, refMean, refVar, { training: false, momentum: MOMENTUM, eps: EPS });
    const name = `batchNorm2d [${full.join(',')}]`;
    expectClose(`${name} training forward`, train, trainRef);
    expectClose(`${name} running mean`, mean, refMean);
    expectClose(`${name} running var`, variance, refVar);
    expectClose(`${name} eval forward`, evaluated, evalRef);

    // the training backward at batch 2
    const shape = [2, ...full.slice(1)];
    const rng = new Rng(C + 1);
    const small = operands(shape, rng);
    const dy = randomValues(small.x.length, rng);
    const [dx, dgamma, dbeta] = await readBack(() => {
      const t = small.tensors();
      for (const p of [t.x, t.gamma, t.beta]) p.requiresGrad = true;
      forward(t, true).backward(toTensor(dy, shape));
      return [t.x.grad!, t.gamma.grad!, t.beta.grad!];
    });
    const ref = (xv: Float64Array, g: Float64Array, b: Float64Array) =>
      batchNorm2dRef(xv, shape, g, b, new Float64Array(C), new Float64Array(C).fill(1), { training: true, momentum: MOMENTUM, eps: EPS });
    const what = `batchNorm2d [${shape.join(',')}] backward`;
    expectGradient(`${what} dx`, (v) => ref(v, small.gamma, small.beta), small.x, dy, dx, rng);
    expectGradient(`${what} dgamma`, (v) => ref(small.x, v, small.beta), small.gamma, dy, dgamma, rng);
    expectGradient(`${what} dbeta`, (v) => ref(small.x, small.gamma, v), small.beta, dy, dbeta, rng);
  }
}

export const cases: BenchCase[] = SHAPES.flatMap((shape): BenchCase[] => {
  const name = `[${shape.join(',')}]`;
  const quick = QUICK.has(name);
  const bytes = shape.reduce((a, b) => a * b) * 4;
  const forwardCase = (training: boolean): BenchCase => ({
    name: `${training ? 'train' : 'eval '} forward  ${name}`,
    bytes: (training ? 3 : 2) * bytes,
    quick,
    setup() {
      const t = operands(shape, new Rng(2)).tensors();
      return { run: () => void noGrad(() => forward(t, training)), dispose: () => release(t) };
    },
  });
  return [
    forwardCase(true),
    forwardCase(false),
    {
      name: `train backward ${name}`,
      bytes: 5 * bytes,
      quick,
      setup() {
        const t = operands(shape, new Rng(3)).tensors();
        for (const p of [t.x, t.gamma, t.beta]) p.requiresGrad = true;
        const b = backwardOnly(forward(t, true), new Rng(4));
        return { run: b.run, dispose: () => (b.dispose(), release(t)) };
      },
    },
  ];
});

if (isMain(import.meta.url)) process.exit((await runFamilies([{ title, cases, validate }])) ? 0 : 1);
