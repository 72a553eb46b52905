// Optimizer steps, SGD and AdamW: several parameters per kernel launch, in place. Single parameters of
// growing size (GB/s), and ResNet18's whole parameter list (where the per-launch cost shows).
// validate() checks three steps (SGD with and without momentum, AdamW) against the float64 rules.
//   npx tsx bench/sgd.ts [filter] [--quick]
import { AdamW } from '../src/optim/adam.ts';
import type { Optimizer } from '../src/optim/optimizer.ts';
import { SGD, type SGDOptions } from '../src/optim/sgd.ts';
import { adamRef } from '../src/reference/adam.ts';
import { Rng, Tensor } from '../src/tensor/index.ts';
import { sgdRef } from '../src/reference/sgd.ts';
import { expectClose, isMain, randomValues, runFamilies, toTensor, type BenchCase } from './harness.ts';

export const title = 'optimizer step';

const MOMENTUM: SGDOptions = { lr: 0.1, momentum: 0.9, weightDecay: 1e-4 };
const PLAIN: SGDOptions = { lr: 0.1 };
const SIZES = [1_000, 100_000, 1_000_000, 10_000_000];
const QUICK_SIZE = 1_000_000;

/** ResNet18's parameters: conv weights, and a batchnorm weight and bias per conv, then the head. */
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

/** Parameters with gradients set, and an optimizer over them (SGD with `opts`, or AdamW). */
function setup(shapes: number[][], opts: SGDOptions | 'adamw'): { opt: Optimizer; params: Tensor[] } {
  const rng = new Rng(1);
  const params = shapes.map((s) => {
    const p = Tensor.randn(s, rng);
    p.requiresGrad = true;
    p.grad = Tensor.randn(s, rng, 0.01);
    return p;
  });
  return { opt: opts === 'adamw' ? new AdamW(params, { lr: 1e-3 }) : new SGD(params, opts), params };
}

/** Three steps on one parameter (odd length: the scalar kernel; a multiple of 4: the vec4 one). */
export async function validate(): Promise<void> {
  for (const opts of [MOMENTUM, PLAIN]) {
    for (const n of [100_003, 100_000]) {
      const rng = new Rng(2);
      const w = randomValues(n, rng);
      const g = randomValues(n, rng);
      const p = toTensor(w, [n]);
      p.requiresGrad = true;
      p.grad = toTensor(g, [n]);
      const opt = new SGD([p], opts);
      for (let k = 0; k < 3; k++) opt.step();
      const param = await p.toArray();
      const [buf] = (await opt.state()).buffers.momentum;
      opt.release();
      p.grad.release();
      p.release();
      const ref = sgdRef(w, [g, g, g], { momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, ...opts });
      const what = `sgd ${JSON.stringify(opts)} [${n}]`;
      expectClose(`${what} parameter`, param, ref.param);
      if (ref.buf) expectClose(`${what} momentum buffer`, buf ?? [], ref.buf);
    }
  }
  const rng = new Rng(3);
  const [w, g] = [randomValues(100_000, rng), randomValues(100_000, rng)];
  const p = toTensor(w, [100_000]);
  p.requiresGrad = true;
  p.grad = toTensor(g, [100_000]);
  const adamw = new AdamW([p], { lr: 1e-3 });
  for (let k = 0; k < 3; k++) adamw.step();
  const param = await p.toArray();
  adamw.release();
  p.grad.release();
  p.release();
  expectClose('adamw [100000] parameter', param, adamRef(w, [g, g, g], { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2, decoupled: true }).param);
}

function elements(shapes: number[][]): number {
  return shapes.reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
}

function stepCase(name: string, shapes: number[][], opts: SGDOptions | 'adamw', quick: boolean): BenchCase {
  // param r/w, grad r, and momentum r/w (SGD) or both moments r/w (AdamW)
  const arrays = opts === 'adamw' ? 7 : opts.momentum ? 5 : 3;
  return {
    name,
    bytes: elements(shapes) * 4 * arrays,
    quick,
    setup() {
      const { opt, params } = setup(shapes, opts);
      return {
        run: () => opt.step(),
        dispose: () => {
          opt.release();
          for (const p of params) {
            p.grad?.release();
            p.release();
          }
        },
      };
    },
  };
}

const resnet18 = resnet18Shapes();

export const cases: BenchCase[] = [
  ...SIZES.map((n) => stepCase(`sgd momentum+wd [${n}]`, [[n]], MOMENTUM, n === QUICK_SIZE)),
  ...SIZES.map((n) => stepCase(`sgd plain [${n}]`, [[n]], PLAIN, false)),
  stepCase(`sgd momentum+wd resnet18 (${resnet18.length} tensors, ${(elements(resnet18) / 1e6).toFixed(1)}M)`, resnet18, MOMENTUM, true),
  ...SIZES.map((n) => stepCase(`adamw [${n}]`, [[n]], 'adamw', false)),
  stepCase(`adamw resnet18 (${resnet18.length} tensors, ${(elements(resnet18) / 1e6).toFixed(1)}M)`, resnet18, 'adamw', true),
];

if (isMain(import.meta.url)) process.exit((await runFamilies([{ title, cases, validate }])) ? 0 : 1);
