// Autograd on scalars: micrograd's README expression, run on the GPU tape, and its gradients
// derived by hand (the chain rule written out step by step, in float64) to check them.
//
//   npx tsx examples/autograd.ts
import * as gpunet from 'gpunet';

await gpunet.init();
const { ops } = gpunet;

// ---- on the tape: every op below is recorded, g.backward() walks it in reverse ---------------
const a = gpunet.tensor(-4, { requiresGrad: true }); // a 0-d tensor, as torch.tensor(-4.0)
const b = gpunet.tensor(2, { requiresGrad: true });
let c = a.add(b);
let d = a.mul(b).add(ops.pow(b, 3));
c = c.add(c.add(1));
c = c.add(ops.add(1, c).add(ops.neg(a)));
d = d.add(d.mul(2).add(b.add(a).relu()));
d = d.add(ops.mul(3, d).add(b.sub(a).relu()));
const e = c.sub(d);
const f = ops.pow(e, 2);
let g = ops.div(f, 2);
g = g.add(ops.div(10, f));
g.backward();
const gpu = { g: await g.item(), da: await a.grad!.item(), db: await b.grad!.item() };

// ---- by hand: the same forward in float64, then each local derivative, from g back to a and b ----
const A = -4;
const B = 2;
const c1 = A + B; //                       dc1/da = 1, dc1/db = 1
const d1 = A * B + B ** 3; //              dd1/da = b, dd1/db = a + 3b^2
const c2 = c1 + c1 + 1; //                 dc2/dc1 = 2
const c3 = c2 + 1 + c2 - A; //             dc3/dc2 = 2, dc3/da = -1
const r1 = Math.max(B + A, 0); //          relu(b + a): b + a = -2 < 0, so its derivative is 0
const d2 = d1 + d1 * 2 + r1; //            dd2/dd1 = 3
const r2 = Math.max(B - A, 0); //          relu(b - a): b - a = 6 > 0, derivative 1 (+1 to b, -1 to a)
const d3 = d2 + 3 * d2 + r2; //            dd3/dd2 = 4
const E = c3 - d3; //                      dE/dc3 = 1, dE/dd3 = -1
const F = E ** 2; //                       dF/dE = 2E
const G = F / 2 + 10 / F; //               dG/dF = 1/2 - 10/F^2
const dF = 0.5 - 10 / F ** 2;
const dE = dF * 2 * E;
const dc3 = dE;
const dd3 = -dE;
const dd2 = dd3 * 4;
const dr2 = dd3; //                        r2 = relu(b - a)
const dd1 = dd2 * 3;
const dr1 = dd2 * 1; //                    r1 = relu(b + a), whose derivative is 0 here
const dc2 = dc3 * 2;
const dc1 = dc2 * 2;
const dA = dc1 * 1 + dd1 * B - dc3 + dr1 * 0 - dr2 * 1;
const dB = dc1 * 1 + dd1 * (A + 3 * B ** 2) + dr1 * 0 + dr2 * 1;

console.log(`g      ${gpu.g.toFixed(4)}   by hand ${G.toFixed(4)}`);
console.log(`dg/da  ${gpu.da.toFixed(4)}  by hand ${dA.toFixed(4)}`);
console.log(`dg/db  ${gpu.db.toFixed(4)}  by hand ${dB.toFixed(4)}`);
const worst = Math.max(...[[gpu.g, G], [gpu.da, dA], [gpu.db, dB]].map(([x, y]) => Math.abs(x - y) / Math.abs(y)));
console.log(`largest relative difference ${worst.toExponential(1)}: ${worst < 1e-5 ? 'the tape agrees with the chain rule' : 'MISMATCH'}`);
process.exitCode = worst < 1e-5 ? 0 : 1;
