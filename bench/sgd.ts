// SGD steps: one kernel launch per parameter, in place. Single parameters of growing size (GB/s),
// and a whole ResNet-18-shaped parameter list (where the per-launch cost shows). Checked against
// the float64 reference first (npx tsx bench/sgd.ts).
import { pathToFileURL } from 'node:url';
import { initGpu } from '../src/gpu/index.ts';
import { SGD, type SGDOptions } from '../src/optim/sgd.ts';
import { keep, Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { sgdRef } from '../test/reference/sgd.ts';
import { runBench, type BenchCase } from './harness.ts';

const MOMENTUM: SGDOptions = { lr: 0.1, momentum: 0.9, weightDecay: 1e-4 };
const PLAIN: SGDOptions = { lr: 0.1 };
const SIZES = [1_000, 100_000, 1_000_000, 10_000_000];

/** ResNet-18's parameters: conv weights, and a batchnorm weight and bias per conv, then the head. */
function resnet18Shapes(): number[][] {
  const shapes: number[][] = [[64, 3, 7, 7], [64], [64]];
  let cin = 64;
  for (const [cout, stride] of [[64, 1], [128, 2], [256, 2], [512, 2]]) {
    for (let block = 0; block < 2; block++) {
      const down = block === 0 && (stride !== 1 || cin !== cout);
      shapes.push([cout, cin, 3, 3], [cout], [cout], [cout, cout, 3, 3], [cout], [cout]);
      if (down) shapes.push([cout, cin, 1, 1], [cout], [cout]);
      cin = cout;
    }
  }
  shapes.push([1000, 512], [1000]);
  return shapes;
}

/** Parameters with gradients set, and an optimizer over them. */
function setup(shapes: number[][], opts: SGDOptions): { opt: SGD; params: Tensor[] } {
  const rng = new Rng(1);
  const params = shapes.map((s) => {
    const p = keep(Tensor.randn(s, rng));
    p.requiresGrad = true;
    p.grad = keep(Tensor.randn(s, rng, 0.01));
    return p;
  });
  return { opt: new SGD(params, opts), params };
}

async function validate(): Promise<void> {
  for (const opts of [MOMENTUM, PLAIN]) {
    const n = 100_003;
    const rng = new Rng(2);
    const w = Float32Array.from({ length: n }, () => rng.normal());
    const g = Float32Array.from({ length: n }, () => rng.normal());
    const out = await tidy(async () => {
      const p = Tensor.from(w, [n]);
      p.requiresGrad = true;
      p.grad = keep(Tensor.from(g, [n]));
      const opt = new SGD([p], opts);
      for (let k = 0; k < 3; k++) opt.step();
      opt.loadState({ momentumBuffers: [null] });
      p.grad.release();
      return p.toArray();
    });
    const ref = sgdRef(Float64Array.from(w), [0, 1, 2].map(() => Float64Array.from(g)), { momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, ...opts });
    let err = 0;
    for (let i = 0; i < n; i++) err = Math.max(err, Math.abs(out[i] - ref.param[i]));
    if (!(err < 1e-5)) throw new Error(`sgd ${JSON.stringify(opts)}: max error ${err}`);
  }
  console.log('sgd matches the reference');
}

function stepCase(name: string, shapes: number[][], opts: SGDOptions): BenchCase {
  const elements = shapes.reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
  return {
    name,
    bytes: elements * 4 * (opts.momentum ? 5 : 3), // param r/w, grad r, momentum buffer r/w
    setup() {
      const { opt, params } = setup(shapes, opts);
      return {
        run: () => opt.step(),
        dispose: () => {
          opt.loadState({ momentumBuffers: params.map(() => null) });
          for (const p of params) {
            p.grad?.release();
            p.release();
          }
        },
      };
    },
  };
}

export const cases: BenchCase[] = [
  ...SIZES.map((n) => stepCase(`sgd momentum+wd [${n}]`, [[n]], MOMENTUM)),
  ...SIZES.map((n) => stepCase(`sgd plain [${n}]`, [[n]], PLAIN)),
  stepCase('sgd momentum+wd resnet18 (62 tensors, 11.7M)', resnet18Shapes(), MOMENTUM),
];

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  await initGpu(process.env.GPUNET_DEVICE);
  await validate();
  await runBench('sgd step', cases, { repeat: 4 });
  process.exit(0);
}
