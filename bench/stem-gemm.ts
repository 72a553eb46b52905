// The im2col convolutions' GEMMs at ResNet18's shapes against variants of their operands' layout
// (bench/NOTES.md section 21), lavapipe worker CPU per call, variants interleaved, medians:
//  - the stem's (K = 3*7*7 = 147: w's lines scalar, dw's stores scalar) against copies padded to
//    K = 148 (every line an aligned vec4), forward and weight gradient;
//  - the folded forward ([OC,K] x [K, N*P]) reading col grouped ([N, K, P]: lines straddle images
//    where P is not a multiple of 4, so scalar) against batch inner ([K, N, P], one matrix).
//   npx tsx bench/stem-gemm.ts [--batch 8] [--size 112] [--rounds 7] [--calls 2]
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { gemmStrided } from '../src/ops/matmul.ts';
import { Rng, Tensor } from '../src/tensor/index.ts';
import { median } from '../src/train/benchmark.ts';
import { openGpu, randomValues, toTensor, workerCpuPerCall } from './harness.ts';

const { values } = parseArgs({ options: { batch: { type: 'string', default: '8' }, size: { type: 'string', default: '112' }, rounds: { type: 'string', default: '7' }, calls: { type: 'string', default: '2' } } });
const N = Number(values.batch);
const size = Number(values.size);
await openGpu();
const rng = new Rng(1);
const rand = (shape: number[]) => toTensor(randomValues(shape.reduce((p, d) => p * d, 1), rng), shape);

const variants: { name: string; flops: number; run: () => Tensor }[] = [];
const P = (size / 2) ** 2; // the stem: 7x7, stride 2, 64 channels
for (const K of [147, 148]) {
  const w = rand([64, K]);
  const col = rand([N, K, P]);
  const dy = rand([N, 64, P]);
  const flops = 2 * N * 64 * P * K;
  variants.push({ name: `stem fwd K ${K}`, flops, run: () => {
    const y = Tensor.empty([N, 64, P]);
    gemmStrided('bench', 'fwd', { M: 64, N: P, K, batch: N }, { t: w, stride: 0 }, { t: col, stride: K * P }, { t: y, stride: 64 * P });
    return y;
  } });
  variants.push({ name: `stem dw K ${K}`, flops, run: () => {
    const dw = Tensor.empty([64, K]);
    gemmStrided('bench', 'dw', { M: 64, N: K, K: P, batch: N }, { t: dy, stride: 64 * P }, { t: col, stride: K * P, trans: true }, { t: dw, stride: 0 });
    return dw;
  } });
}
// the folded stride-2 convs and 1x1 downsamples (layers 2-4: output sides size/8, /16, /32)
const strided = [[128, 64, 8], [256, 128, 16], [512, 256, 32]].flatMap(([OC, C, d]) => [[OC, 9 * C, Math.ceil(size / d) ** 2], [OC, C, Math.ceil(size / d) ** 2]]);
for (const [OC, K, P] of strided) {
  if (P > 256) continue; // not folded
  const w = rand([OC, K]);
  const col = rand([N, K, P]);
  for (const inner of [false, true]) {
    variants.push({ name: `fold [${OC},${K}] P ${P} ${inner ? 'batch inner' : 'grouped'}`, flops: 2 * N * OC * P * K, run: () => {
      const y = Tensor.empty([N, OC, P]);
      gemmStrided('bench', 'fwd', { M: OC, N: N * P, K, batch: 1, P }, { t: w, stride: 0 }, inner ? { t: col, stride: 0 } : { t: col, stride: K * P, group: K * P }, { t: y, stride: OC * P, group: OC * P });
      return y;
    } });
  }
}
const samples = variants.map(() => [] as number[]);
for (let r = 0; r < Number(values.rounds); r++) {
  for (const [i, v] of variants.entries()) samples[i].push(await workerCpuPerCall(v.run, 1, Number(values.calls)));
}
console.log(`batch ${N}, ${size} px: lavapipe worker CPU ms per call, medians of ${values.rounds} rounds`);
for (const [i, v] of variants.entries()) {
  const ms = median(samples[i]);
  console.log(`${v.name.padEnd(34)} ${ms.toFixed(2).padStart(8)} ms  ${(v.flops / ms / 1e6).toFixed(1).padStart(5)} GFLOP per core-s`);
}
console.log(`load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
process.exit(0);
