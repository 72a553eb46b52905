// The im2col pass alone (shaders/conv2d.wgsl, `im2col`) at ResNet18's shapes: lavapipe worker CPU
// per call (the process's CPU less the main thread's, which load barely distorts), and GB/s of it
// over the bytes it must move (col written once, x read once), medians of the rounds; the column
// matrix checked against the reference's (src/reference/conv2d.ts) first.
//   npx tsx bench/im2col.ts [--configs b1x224,b8x112] [--rounds 5] [--calls 4] [--vec4s G (per lane; default: the adapter's)]
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { im2col, setIm2colVec4s } from '../src/ops/conv2d.ts';
import { im2colRef } from '../src/reference/conv2d.ts';
import { Rng, type Tensor } from '../src/tensor/index.ts';
import { openGpu, randomValues, toTensor, workerCpuPerCall } from './harness.ts';
import { parseConfig, RESNET18_CONVS, resnetConvGeometry } from './resnet18-convs.ts';

const { values } = parseArgs({
  options: {
    configs: { type: 'string', default: 'b1x224,b8x112' },
    rounds: { type: 'string', default: '5' },
    calls: { type: 'string', default: '4' },
    vec4s: { type: 'string', default: '' },
  },
});
const rounds = Number(values.rounds);
const calls = Number(values.calls);

/** ResNet18's convolutions that take im2col (not Winograd, not a stride-1 pointwise) at batch 1 and 224 px */
const IM2COL = ['stem 7x7 s2 3->64', '3x3 s2 64->128 @56', '1x1 s2 64->128 @56', '3x3 s2 128->256 @28', '3x3 s2 256->512 @14', '3x3 512->512 @7'];
const CONVS = RESNET18_CONVS.filter((s) => IM2COL.includes(s.name));

const cpuPerCall = (run: () => Tensor) => workerCpuPerCall(run, rounds, calls);

await openGpu();
if (values.vec4s) setIm2colVec4s(Number(values.vec4s));
const rng = new Rng(1);
console.log(`per call: lavapipe worker CPU ms, GB/s (col written + x read) per core-second; medians of ${rounds} rounds of ${calls} calls`);
for (const config of values.configs.split(',')) {
  const { batch, size } = parseConfig(config);
  console.log(`\nbatch ${batch}, ${size} px`);
  for (const s of CONVS) {
    const g = resnetConvGeometry(s, batch, size);
    const xs = randomValues(g.N * g.C * g.H * g.W, rng);
    const x = toTensor(xs, [g.N, g.C, g.H, g.W]);
    const col = im2col(x, g, 'bench');
    const want = im2colRef(xs, [g.N, g.C, g.H, g.W], g.KH, g.KW, { stride: g.stride, padding: g.padding, dilation: g.dilation, groups: 1 });
    const got = await col.toArray(); // exact: a gather of float32 values
    col.release();
    if (got.length !== want.length || got.some((v, i) => v !== want[i])) throw new Error(`${s.name}: im2col differs from the CPU gather`);
    const ms = await cpuPerCall(() => im2col(x, g, 'bench'));
    const bytes = 4 * (want.length + xs.length);
    console.log(`${s.name.padEnd(22)} [${g.N},${g.C * g.KH * g.KW},${g.OH * g.OW}] ${ms.toFixed(2).padStart(8)} ms ${(bytes / ms / 1e6).toFixed(2).padStart(6)} GB/s`);
    x.release();
  }
}
console.log(`\nload average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
process.exit(0);
