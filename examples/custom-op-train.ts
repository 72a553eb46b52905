// Training with ops of one's own (examples/custom-ops.ts): a small 1-D CNN, conv1d - swish -
// conv1d - swish - mean over time - linear, that tells sine, square and sawtooth waves apart.
// Before training, each op is checked: gradcheck against its float64 reference, and the custom
// conv1d against the built-in ops.conv1d.
//
//   npx tsx examples/custom-op-train.ts [--steps 150]
import { parseArgs } from 'node:util';
import * as gpunet from 'gpunet';
import { conv1d, gradchecks, swish } from './custom-ops.ts';

const { values: args } = parseArgs({ options: { steps: { type: 'string', default: '150' }, seed: { type: 'string', default: '1' } } });
const steps = Number(args.steps);
const { nn, ops, optim } = gpunet;

await gpunet.init();
const rng = new gpunet.Rng(Number(args.seed));
gpunet.manualSeed(Number(args.seed));

// 1. the ops are right: gradients against finite differences, and the same as the built-in conv1d
for (const spec of gradchecks) {
  const r = await gpunet.gradcheck(spec);
  const worst = Math.max(r.forward.rel, ...r.grads.map((g) => g.rel));
  console.log(`gradcheck ${spec.name}: ${r.pass ? 'PASS' : 'FAIL'} (largest relative error ${worst.toExponential(1)})`);
  if (!r.pass) process.exit(1);
}
const agreement = await gpunet.tidy(async () => {
  const [x, w, b] = [gpunet.randn([2, 3, 20]), gpunet.randn([4, 3, 5]), gpunet.randn([4])];
  return gpunet.relError(await conv1d(x, w, b).toArray(), await ops.conv1d(x, w, b).toArray());
});
console.log(`my-conv1d vs ops.conv1d: relative difference ${agreement.toExponential(1)}`);

// 2. data: waves of random frequency, phase and amplitude, with noise
const CLASSES = ['sine', 'square', 'sawtooth'];
const LENGTH = 32;
function waves(n: number): { x: Float32Array; labels: number[] } {
  const x = new Float32Array(n * LENGTH);
  const labels = Array.from({ length: n }, (_, i) => i % CLASSES.length);
  labels.forEach((label, i) => {
    const cycles = rng.uniform(1, 4);
    const phase = rng.uniform(0, 1);
    const amplitude = rng.uniform(0.5, 1.5);
    for (let t = 0; t < LENGTH; t++) {
      const u = (cycles * t) / LENGTH + phase;
      const frac = u - Math.floor(u);
      const v = label === 0 ? Math.sin(2 * Math.PI * u) : label === 1 ? (frac < 0.5 ? 1 : -1) : 2 * frac - 1;
      x[i * LENGTH + t] = amplitude * v + 0.1 * rng.normal();
    }
  });
  return { x, labels };
}
const train = waves(300);
const test = waves(150);

// 3. the model: a Module whose forward uses the custom ops
/** U(-1/sqrt(fanIn), 1/sqrt(fanIn)), torch's default for conv weights and biases */
const init = (shape: number[], fanIn: number) =>
  gpunet.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.uniform(-1, 1) / Math.sqrt(fanIn)), { shape });

class WaveNet extends nn.Module {
  readonly w1 = this.param('conv1.weight', init([8, 1, 5], 5));
  readonly b1 = this.param('conv1.bias', init([8], 5));
  readonly w2 = this.param('conv2.weight', init([8, 8, 5], 40));
  readonly b2 = this.param('conv2.bias', init([8], 40));
  readonly fc = this.child('fc', new nn.Linear(8, CLASSES.length));

  forward(x: gpunet.Tensor): gpunet.Tensor {
    const h1 = swish(conv1d(x, this.w1, this.b1)); // [N, 8, 28]
    const h2 = swish(conv1d(h1, this.w2, this.b2)); // [N, 8, 24]
    return this.fc.forward(ops.mean(h2, { axes: 2 })); // [N, 8] -> [N, 3]
  }
}
const model = new WaveNet();
const opt = new optim.SGD(model.parameters(), { lr: 0.3, momentum: 0.9 });

// 4. train
const batchSize = 30;
for (let step = 1; step <= steps; step++) {
  const at = ((step - 1) * batchSize) % train.labels.length;
  const loss = await gpunet.tidy(async () => {
    const x = gpunet.tensor(train.x.subarray(at * LENGTH, (at + batchSize) * LENGTH), { shape: [batchSize, 1, LENGTH] });
    const loss = ops.crossEntropy(model.forward(x), train.labels.slice(at, at + batchSize));
    opt.zeroGrad();
    loss.backward();
    opt.step();
    return step % 50 === 0 || step === steps ? loss.item() : null; // read rarely: each read waits for the GPU
  });
  if (loss !== null) console.log(`step ${step}: loss ${loss.toFixed(4)}`);
}

const logits = await gpunet.tidy(() => gpunet.noGrad(() => model.forward(gpunet.tensor(test.x, { shape: [test.labels.length, 1, LENGTH] }))).toArray());
const predicted = gpunet.train.argmaxRows(logits, CLASSES.length);
const accuracy = predicted.filter((p, i) => p === test.labels[i]).length / test.labels.length;
console.log(`test accuracy: ${(100 * accuracy).toFixed(1)}%`);
