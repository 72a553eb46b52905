// The convolutions' weight gradient at ResNet18's shapes, one GEMM per image (each adding into dw)
// against the batch folded into the GEMM's reduction (src/ops/conv2d.ts, weightGradientFolded),
// A/B alternated in one process: lavapipe worker CPU ms per call (the process's CPU less the main
// thread's), medians of the rounds. Each shape's two dw are checked against each other first.
// Shapes that take Winograd's or the direct kernels' dw (the default choice) read the same twice.
//   npx tsx bench/conv-dw.ts [--configs b8x112,b8x224] [--rounds 5] [--calls 2] [--filter TEXT]
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { conv2dBackwardWeight, setConv2dBatchFold } from '../src/ops/conv2d.ts';
import { Rng } from '../src/tensor/index.ts';
import { median } from '../src/train/benchmark.ts';
import { openGpu, randomValues, readBack, relError, toTensor, workerCpuPerCall } from './harness.ts';
import { parseConfig, RESNET18_CONVS, resnetConvGeometry } from './resnet18-convs.ts';

const { values } = parseArgs({
  options: {
    configs: { type: 'string', default: 'b8x112,b8x224' },
    rounds: { type: 'string', default: '5' },
    calls: { type: 'string', default: '2' },
    filter: { type: 'string', default: '' },
  },
});
const rounds = Number(values.rounds);
const calls = Number(values.calls);

await openGpu();
const rng = new Rng(1);
const rand = (shape: number[]) => toTensor(randomValues(shape.reduce((p, d) => p * d, 1), rng), shape);

console.log(`dw per call: lavapipe worker CPU ms, per image -> folded, medians of ${rounds} alternated rounds of ${calls} calls`);
for (const config of values.configs.split(',')) {
  const { batch, size } = parseConfig(config);
  console.log(`\nbatch ${batch}, ${size} px`);
  for (const s of RESNET18_CONVS.filter((c) => c.name.includes(values.filter))) {
    const g = resnetConvGeometry(s, batch, size);
    const x = rand([g.N, g.C, g.H, g.W]);
    const dy = rand([g.N, g.OC, g.OH, g.OW]);
    const dw = (fold: boolean) => {
      setConv2dBatchFold(fold);
      return conv2dBackwardWeight(dy, x, g);
    };
    const [single, folded] = await readBack(() => [dw(false), dw(true)]);
    const err = relError(folded!, single!);
    if (!(err < 1e-5)) throw new Error(`${s.name}: folded dw differs from per image (relative error ${err})`);
    const ms: [number[], number[]] = [[], []];
    for (let r = 0; r < rounds; r++) {
      for (const fold of [false, true]) ms[Number(fold)]!.push(await workerCpuPerCall(() => dw(fold), 1, calls));
    }
    const [a, b] = ms.map(median) as [number, number];
    console.log(`${s.name.padEnd(22)} P ${String(g.OH * g.OW).padStart(5)} ${a.toFixed(1).padStart(8)} -> ${b.toFixed(1).padStart(7)} ms (${(a / b).toFixed(2)}x)`);
    [x, dy].forEach((t) => t.release());
  }
}
setConv2dBatchFold(true);
console.log(`\nload average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
process.exit(0);
