// Every convolution of ResNet18 (forward, backward to the input, backward to the weight) against
// the best GEMM, measured in one run by what load barely distorts: the CPU time of lavapipe's
// worker threads (the process's CPU less the main thread's) per call, and GFLOP per core-second of
// it (the convolution's FLOPs, 2*N*OC*OH*OW*C*KH*KW, whatever algorithm computes it), next to the
// 1024^3 matmul's (gemmShared) timed the same way in the same process. Medians of the rounds.
// --im2col forces the algorithm (auto: today's choice), --fold off runs the im2col GEMMs one per
// image instead of with the batch folded into their columns.
//   npx tsx bench/conv-vs-gemm.ts [--configs b1x224,b8x112] [--rounds 3] [--calls 2] [--filter TEXT]
//                                 [--im2col auto|always|never] [--fold on|off]
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import {
  conv2dBackwardInput, conv2dBackwardWeight, conv2dForward, setConv2dBatchFold, setConv2dIm2col, type Conv2dGeometry, type Im2colMode,
} from '../src/ops/conv2d.ts';
import { gemm } from '../src/ops/matmul.ts';
import { Rng, type Tensor } from '../src/tensor/index.ts';
import { openGpu, randomValues, toTensor, workerCpuPerCall } from './harness.ts';
import { parseConfig, RESNET18_CONVS, resnetConvGeometry } from './resnet18-convs.ts';

const { values } = parseArgs({
  options: {
    configs: { type: 'string', default: 'b1x224,b8x112' },
    rounds: { type: 'string', default: '3' },
    calls: { type: 'string', default: '2' },
    filter: { type: 'string', default: '' },
    im2col: { type: 'string', default: 'auto' },
    fold: { type: 'string', default: 'on' },
  },
});
setConv2dIm2col(values.im2col as Im2colMode);
setConv2dBatchFold(values.fold !== 'off');
const rounds = Number(values.rounds);
const calls = Number(values.calls);

const cpuPerCall = (run: () => Tensor) => workerCpuPerCall(run, rounds, calls);

const fmt = (ms: number, flops: number) => `${ms.toFixed(1).padStart(8)} ms ${(flops / ms / 1e6).toFixed(1).padStart(5)}`;

await openGpu();
const rng = new Rng(1);
const rand = (shape: number[]) => toTensor(randomValues(shape.reduce((p, d) => p * d, 1), rng), shape);

const [a, b] = [rand([1024, 1024]), rand([1024, 1024])];
const gemmMs = await cpuPerCall(() => gemm(a, b));
const gemmRate = (2 * 1024 ** 3) / gemmMs / 1e6;
console.log(`gemm 1024^3 (default tiling): ${gemmMs.toFixed(1)} ms, ${gemmRate.toFixed(1)} GFLOP per core-second`);
console.log(`per call: lavapipe worker CPU ms, GFLOP per core-second, % of the GEMM's; medians of ${rounds} rounds of ${calls} calls`);

for (const config of values.configs.split(',')) {
  const { batch, size } = parseConfig(config);
  console.log(`\nbatch ${batch}, ${size} px${' '.repeat(14)}${['forward', 'dx', 'dw'].map((p) => p.padStart(21)).join('')}`);
  for (const s of RESNET18_CONVS.filter((c) => c.name.includes(values.filter))) {
    const g: Conv2dGeometry = resnetConvGeometry(s, batch, size);
    const flops = 2 * g.N * g.OC * g.OH * g.OW * g.C * g.KH * g.KW;
    const x = rand([g.N, g.C, g.H, g.W]);
    const w = rand([g.OC, g.C, g.KH, g.KW]);
    const dy = rand([g.N, g.OC, g.OH, g.OW]);
    const row: string[] = [];
    for (const run of [() => conv2dForward(x, w, null, g), () => conv2dBackwardInput(dy, w, g), () => conv2dBackwardWeight(dy, x, g)]) {
      const ms = await cpuPerCall(run);
      const rate = flops / ms / 1e6;
      row.push(`${fmt(ms, flops)} ${((100 * rate) / gemmRate).toFixed(0).padStart(3)}%`);
    }
    console.log(`${s.name.padEnd(22)} ${row.join(' ')}`);
    [x, w, dy].forEach((t) => t.release());
  }
}
console.log(`\nload average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
process.exit(0);
