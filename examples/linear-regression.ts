// Linear regression by gradient descent: y = x w + b fitted to noisy data with the mean squared
// error, the way a first PyTorch lesson does it, and the result compared with the exact
// least-squares solution (the normal equations, solved in float64).
//
//   npx tsx examples/linear-regression.ts [--steps 200]
import { parseArgs } from 'node:util';
import * as gpunet from 'gpunet';

const { values: args } = parseArgs({ options: { steps: { type: 'string', default: '200' } } });
await gpunet.init();
const { ops, optim } = gpunet;

// data: y = 3 x0 - 2 x1 + 0.5 x2 + 1 + noise, 256 samples of 3 features
const N = 256;
const FEATURES = 3;
const rng = new gpunet.Rng(0);
const xs = Float32Array.from({ length: N * FEATURES }, () => rng.normal());
const ys = Float32Array.from({ length: N }, (_, i) => 3 * xs[i * 3] - 2 * xs[i * 3 + 1] + 0.5 * xs[i * 3 + 2] + 1 + 0.1 * rng.normal());
const x = gpunet.tensor(xs, { shape: [N, FEATURES] });
const y = gpunet.tensor(ys, { shape: [N, 1] });

// the parameters: leaves of the tape
const w = gpunet.zeros([FEATURES, 1], { requiresGrad: true });
const b = gpunet.zeros([1], { requiresGrad: true });
const opt = new optim.SGD([w, b], { lr: 0.1 });

for (let step = 1; step <= Number(args.steps); step++) {
  await gpunet.tidy(async () => {
    const prediction = x.matmul(w).add(b); //           [N, 1]; b broadcasts over the rows
    const loss = ops.pow(prediction.sub(y), 2).mean(); // mean squared error
    opt.zeroGrad();
    loss.backward(); //                                  w.grad = 2/N x^T (xw + b - y), b.grad likewise
    opt.step(); //                                       w -= lr * w.grad
    if (step % 50 === 0) console.log(`step ${step}: loss ${(await loss.item()).toFixed(5)}`);
  });
}
const learned = [...(await w.toArray()), ...(await b.toArray())];

// the exact answer: [w; b] = (A^T A)^-1 A^T y with A = [x, 1], by Gaussian elimination in float64
const P = FEATURES + 1;
const ata = Array.from({ length: P }, () => new Float64Array(P + 1)); // [A^T A | A^T y]
for (let i = 0; i < N; i++) {
  const row = [...xs.subarray(i * FEATURES, (i + 1) * FEATURES), 1];
  for (let r = 0; r < P; r++) {
    for (let c = 0; c < P; c++) ata[r][c] += row[r] * row[c];
    ata[r][P] += row[r] * ys[i];
  }
}
for (let k = 0; k < P; k++) {
  for (let r = 0; r < P; r++) {
    if (r === k) continue;
    const f = ata[r][k] / ata[k][k];
    for (let c = k; c <= P; c++) ata[r][c] -= f * ata[k][c];
  }
}
const exact = ata.map((row, k) => row[P] / row[k]);

const fmt = (v: number[]) => v.map((t) => t.toFixed(4)).join(', ');
console.log(`gradient descent  w, b = ${fmt(learned)}`);
console.log(`least squares     w, b = ${fmt(exact)}`);
const worst = Math.max(...learned.map((v, i) => Math.abs(v - exact[i])));
console.log(`largest difference ${worst.toExponential(1)}`);
process.exitCode = worst < 1e-3 ? 0 : 1;
