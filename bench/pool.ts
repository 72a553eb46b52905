// Pooling at ResNet18's shapes in a training step (batch 8): the stem's 3x3 stride-2 max pool on
// 64x112x112 (224 px) and 64x56x56 (112 px), an average pool of the same geometry, and the global
// average pool on 512x7x7;
// forward and backward. validate() checks each forward and backward against the float64
// reference at batch 2. GB/s counts the minimum traffic: x and y once forward (plus the argmax
// when a backward follows), dy (and the argmax) and dx once backward.
//   npx tsx bench/pool.ts [filter] [--quick]
import { avgPool2d, globalAvgPool2d, maxPool2d, type AvgPool2dOptions } from '../src/ops/pool.ts';
import { noGrad, Rng, Tensor } from '../src/tensor/index.ts';
import { avgPool2dBackwardRef, avgPool2dRef, globalAvgPool2dRef, maxPool2dBackwardRef, maxPool2dRef, type PoolRefOptions } from '../src/reference/pool.ts';
import { backwardOnly, expectClose, isMain, randomValues, readBack, runFamilies, toTensor, type BenchCase } from './harness.ts';

export const title = 'pooling (ResNet18, batch 8)';

const STEM: AvgPool2dOptions = { kernel: 3, stride: 2, padding: 1 };
const STEM_REF: PoolRefOptions = { kernel: [3, 3], stride: [2, 2], padding: [1, 1], ceilMode: false };

interface PoolOp {
  name: string;
  shape: number[];
  outShape: number[];
  run: (x: Tensor) => Tensor;
  ref: (x: Float64Array, shape: number[]) => Float64Array;
  backwardRef: (x: Float64Array, shape: number[], dy: Float64Array) => Float64Array;
  /** extra bytes per output element kept for the backward (the argmax) */
  saved: number;
  /** in ResNet18, so in the quick run */
  quick: boolean;
}

const stemMaxPool = (size: number): PoolOp => ({
  name: 'maxPool2d 3x3 s2 p1',
  shape: [8, 64, size, size],
  outShape: [8, 64, size / 2, size / 2],
  run: (x) => maxPool2d(x, STEM),
  ref: (x, s) => maxPool2dRef(x, s, STEM_REF).y,
  backwardRef: (x, s, dy) => maxPool2dBackwardRef(x, s, STEM_REF, dy),
  saved: 4,
  quick: size === 112,
});

const OPS: PoolOp[] = [
  stemMaxPool(112),
  stemMaxPool(56),
  {
    name: 'avgPool2d 3x3 s2 p1',
    shape: [8, 64, 112, 112],
    outShape: [8, 64, 56, 56],
    run: (x) => avgPool2d(x, STEM),
    ref: (x, s) => avgPool2dRef(x, s, STEM_REF).y,
    backwardRef: (x, s, dy) => avgPool2dBackwardRef(x, s, STEM_REF, dy),
    saved: 0,
    quick: false,
  },
  {
    name: 'globalAvgPool2d',
    shape: [8, 512, 7, 7],
    outShape: [8, 512, 1, 1],
    run: globalAvgPool2d,
    ref: (x, s) => globalAvgPool2dRef(x, s),
    // every element of a plane gets its mean's dy / (H*W)
    backwardRef: (x, s, dy) => Float64Array.from(x, (_, i) => dy[Math.floor(i / (s[2] * s[3]))] / (s[2] * s[3])),
    saved: 0,
    quick: true,
  },
];

/** Each op's forward and backward at batch 2 against the reference. */
export async function validate(): Promise<void> {
  for (const op of OPS) {
    const shape = [2, ...op.shape.slice(1)];
    const outShape = [2, ...op.outShape.slice(1)];
    const rng = new Rng(1);
    const x = randomValues(shape.reduce((a, b) => a * b), rng);
    const dy = randomValues(outShape.reduce((a, b) => a * b), rng);
    const [y, dx] = await readBack(() => {
      const xt = toTensor(x, shape);
      xt.requiresGrad = true;
      const yt = op.run(xt);
      yt.backward(toTensor(dy, outShape));
      return [yt, xt.grad!];
    });
    expectClose(`${op.name} [${shape.join(',')}] forward`, y, op.ref(x, shape));
    expectClose(`${op.name} [${shape.join(',')}] backward`, dx, op.backwardRef(x, shape, dy));
  }
}

export const cases: BenchCase[] = OPS.flatMap((op): BenchCase[] => {
  const name = `${op.name} [${op.shape.join(',')}]`;
  const inBytes = op.shape.reduce((a, b) => a * b) * 4;
  const outBytes = op.outShape.reduce((a, b) => a * b) * 4;
  const savedBytes = (outBytes / 4) * op.saved;
  /** x, requiring grad when the forward is to save what the backward needs */
  const input = (seed: number, requiresGrad: boolean) => {
    const x = Tensor.randn(op.shape, new Rng(seed));
    x.requiresGrad = requiresGrad;
    return x;
  };
  const out: BenchCase[] = [
    {
      name: `forward (inference) ${name}`,
      bytes: inBytes + outBytes,
      quick: op.quick,
      setup() {
        const x = input(2, false);
        return { run: () => void noGrad(() => op.run(x)), dispose: () => x.release() };
      },
    },
  ];
  if (op.saved) {
    out.push({
      name: `forward (training) ${name}`,
      bytes: inBytes + outBytes + savedBytes,
      quick: op.quick,
      setup() {
        const x = input(2, true);
        return { run: () => void op.run(x), dispose: () => x.release() };
      },
    });
  }
  out.push({
    name: `backward ${name}`,
    bytes: inBytes + outBytes + savedBytes,
    quick: op.quick,
    setup() {
      const x = input(3, true);
      const b = backwardOnly(op.run(x), new Rng(4));
      return { run: b.run, dispose: () => (b.dispose(), x.release()) };
    },
  });
  return out;
});

if (isMain(import.meta.url)) process.exit((await runFamilies([{ title, cases, validate }])) ? 0 : 1);
