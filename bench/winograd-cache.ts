// Inference with Winograd's transformed weights kept (src/ops/conv2d.ts, keepsWinogradWeights)
// against transforming them every call, and against the im2col + GEMM path, per 3x3 stride-1
// convolution of ResNet18 (the forward of a weight that wants no gradient), interleaved in one
// process: lavapipe worker CPU per call (what other jobs on the machine barely change), medians of
// the rounds. Each call also pays its input and output transforms; only the weight's is kept.
// The whole model, U kept against transformed: bench/winograd.ts.
//   npx tsx bench/winograd-cache.ts [--configs b1x224,b8x224,b1x112] [--convs 64@56,...] [--rounds 3] [--calls 2] [--filter TEXT]
// --convs: channels@side at 224 px (scaled with the config's size), default ResNet18's.
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { conv2dForward, conv2dGeometry, setConv2dWinograd, setConv2dWinogradCache, type WinogradMode } from '../src/ops/conv2d.ts';
import { median } from '../src/train/benchmark.ts';
import { Rng } from '../src/tensor/index.ts';
import { openGpu, randomValues, toTensor, workerCpuPerCall } from './harness.ts';
import { parseConfig } from './resnet18-convs.ts';

const { values } = parseArgs({
  options: {
    configs: { type: 'string', default: 'b1x224,b8x224,b1x112' },
    rounds: { type: 'string', default: '3' },
    calls: { type: 'string', default: '2' },
    filter: { type: 'string', default: '' },
    convs: { type: 'string', default: '64@56,128@28,256@14,512@7' },
  },
});
const rounds = Number(values.rounds);
const calls = Number(values.calls);

/** the 3x3 stride-1 convolutions at 224 px (channels, input side): by default ResNet18's */
const CONVS = values.convs.split(',').map((v) => {
  const m = /^(\d+)@(\d+)$/.exec(v);
  if (!m) throw new Error(`--convs: ${v} is not <channels>@<side>`);
  return { c: Number(m[1]), hw: Number(m[2]) };
});
/** the paths compared: Winograd mode and whether U is kept (im2col: Winograd off; on a CPU
 *  adapter the images of >= 32 output pixels take im2col + GEMM, smaller ones the direct kernels) */
const MODES: { name: string; winograd: WinogradMode; keep: boolean }[] = [
  { name: 'no Winograd', winograd: 'never', keep: false },
  { name: 'F2 transforming U', winograd: 2, keep: false },
  { name: 'F2 U kept', winograd: 2, keep: true },
];

await openGpu();
const rng = new Rng(1);
const rand = (shape: number[]) => toTensor(randomValues(shape.reduce((p, d) => p * d, 1), rng), shape);
console.log(`per call: lavapipe worker CPU ms (GFLOP per core-second of the convolution's 2*N*OC*OH*OW*C*9), medians of ${rounds} rounds of ${calls} calls, modes interleaved`);
console.log(`${'conv'.padEnd(24)}${MODES.map((m) => m.name.padStart(24)).join('')}`);
for (const config of values.configs.split(',')) {
  const { batch, size } = parseConfig(config);
  for (const s of CONVS) {
    const hw = Math.ceil((s.hw * size) / 224);
    const name = `b${batch} ${s.c}->${s.c} @${hw}`;
    if (!name.includes(values.filter)) continue;
    const g = conv2dGeometry([batch, s.c, hw, hw], [s.c, s.c, 3, 3], null, { padding: 1 });
    const flops = 2 * g.N * g.OC * g.OH * g.OW * g.C * 9;
    const x = rand([g.N, g.C, g.H, g.W]);
    const w = rand([g.OC, g.C, 3, 3]);
    const samples = MODES.map(() => [] as number[]);
    for (let r = 0; r < rounds; r++) {
      for (const [i, mode] of MODES.entries()) {
        setConv2dWinograd(mode.winograd);
        setConv2dWinogradCache(mode.keep);
        samples[i].push(await workerCpuPerCall(() => conv2dForward(x, w, null, g), 1, calls));
      }
    }
    const cells = samples.map((ms) => {
      const med = median(ms);
      return `${med.toFixed(2).padStart(9)} ms (${(flops / med / 1e6).toFixed(1).padStart(5)})`.padStart(24);
    });
    console.log(`${name.padEnd(24)}${cells.join('')}`);
    [x, w].forEach((t) => t.release());
  }
}
setConv2dWinograd('auto');

setConv2dWinogradCache(true);
console.log(`load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
process.exit(0);
