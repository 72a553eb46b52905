// Pooling at ResNet18's shapes (batch 16, 224 px): the stem's 3x3 stride-2 max pool on
// 64x112x112 (and an average pool of the same geometry), and the global average pool on 512x7x7;
// forward and backward, each first checked against the float64 reference (batch 2).
// GB/s counts the minimum traffic: x and y once forward (plus the argmax when a backward
// follows), dy (and the argmax) and dx once backward.
// Run: npx tsx bench/pool.ts [filter]
import { initGpu } from '../src/gpu/index.ts';
import { avgPool2d, globalAvgPool2d, maxPool2d, type AvgPool2dOptions } from '../src/ops/pool.ts';
import { keep, noGrad, Rng, Tensor, tidy, type GradNode } from '../src/tensor/index.ts';
import { avgPool2dBackwardRef, avgPool2dRef, globalAvgPool2dRef, maxPool2dBackwardRef, maxPool2dRef } from '../test/reference/pool.ts';
import { runBench, type BenchCase } from './harness.ts';

const STEM: AvgPool2dOptions = { kernel: 3, stride: 2, padding: 1 };
const STEM_REF = { kernel: [3, 3] as [number, number], stride: [2, 2] as [number, number], padding: [1, 1] as [number, number], ceilMode: false };

interface PoolOp {
  name: string;
  shape: number[];
  outShape: number[];
  run: (x: Tensor) => Tensor;
  ref: (x: Float64Array, shape: number[]) => Float64Array;
  backwardRef: (x: Float64Array, shape: number[], dy: Float64Array) => Float64Array;
  /** extra bytes per output element kept for the backward (the argmax) */
  saved: number;
}

const OPS: PoolOp[] = [
  {
    name: 'maxPool2d 3x3 s2 p1',
    shape: [16, 64, 112, 112],
    outShape: [16, 64, 56, 56],
    run: (x) => maxPool2d(x, STEM),
    ref: (x, s) => maxPool2dRef(x, s, STEM_REF).y,
    backwardRef: (x, s, dy) => maxPool2dBackwardRef(x, s, STEM_REF, dy),
    saved: 4,
  },
  {
    name: 'avgPool2d 3x3 s2 p1',
    shape: [16, 64, 112, 112],
    outShape: [16, 64, 56, 56],
    run: (x) => avgPool2d(x, STEM),
    ref: (x, s) => avgPool2dRef(x, s, STEM_REF).y,
    backwardRef: (x, s, dy) => avgPool2dBackwardRef(x, s, STEM_REF, dy),
    saved: 0,
  },
  {
    name: 'globalAvgPool2d',
    shape: [16, 512, 7, 7],
    outShape: [16, 512, 1, 1],
    run: globalAvgPool2d,
    ref: (x, s) => globalAvgPool2dRef(x, s),
    backwardRef: (x, s, dy) => Float64Array.from(x, (_, i) => dy[Math.floor(i / (s[2] * s[3]))] / (s[2] * s[3])),
    saved: 0,
  },
];

function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return a.length === b.length ? num / den : Infinity;
}

/** forward and backward of `op` at batch 2 against the reference */
async function validate(op: PoolOp): Promise<[number, number]> {
  const shape = [2, ...op.shape.slice(1)];
  const rng = new Rng(1);
  return tidy(async () => {
    const x = Tensor.randn(shape, rng);
    x.requiresGrad = true;
    const y = op.run(x);
    const dy = Tensor.randn(y.shape, rng);
    y.backward(dy);
    const [xs, ys, dys, dxs] = await Promise.all([x.toArray(), y.toArray(), dy.toArray(), x.grad!.toArray()]);
    x.grad!.release();
    const x64 = Float64Array.from(xs);
    return [relError(ys, op.ref(x64, shape)), relError(dxs, op.backwardRef(x64, shape, Float64Array.from(dys)))];
  });
}

const cases: BenchCase[] = [];
for (const op of OPS) {
  const name = `${op.name} [${op.shape.join(',')}]`;
  const inBytes = op.shape.reduce((a, b) => a * b) * 4;
  const outBytes = op.outShape.reduce((a, b) => a * b) * 4;
  cases.push({
    name: `forward (inference) ${name}`,
    bytes: inBytes + outBytes,
    setup() {
      const x = keep(Tensor.randn(op.shape, new Rng(2)));
      return { run: () => void noGrad(() => op.run(x)), dispose: () => x.release() };
    },
  });
  if (op.saved) {
    cases.push({
      name: `forward (training) ${name}`,
      bytes: inBytes + outBytes + (outBytes / 4) * op.saved,
      setup() {
        const x = keep(Tensor.randn(op.shape, new Rng(2)));
        x.requiresGrad = true;
        return { run: () => void op.run(x), dispose: () => x.release() };
      },
    });
  }
  cases.push({
    name: `backward ${name}`,
    bytes: inBytes + outBytes + (outBytes / 4) * op.saved,
    setup() {
      // one forward keeps its tape node; each run calls the backward rule on it again
      const x = keep(Tensor.randn(op.shape, new Rng(3)));
      x.requiresGrad = true;
      const y = op.run(x);
      const node = y.node as GradNode;
      const dy = keep(Tensor.randn(y.shape, new Rng(4)));
      return {
        run: () => void node.backward(dy, node.needs),
        dispose: () => {
          for (const t of [x, y, dy]) t.release();
        },
      };
    },
  });
}

await initGpu(process.env.GPUNET_DEVICE);
for (const op of OPS) {
  const [fwd, bwd] = await validate(op);
  console.log(`validate ${op.name} at batch 2: forward rel error ${fwd.toExponential(2)}, backward ${bwd.toExponential(2)}`);
  if (!(fwd < 1e-5 && bwd < 1e-5)) throw new Error(`${op.name} does not match the reference`);
}
await runBench('pooling', cases, { filter: process.argv[2] });
