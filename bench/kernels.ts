// `npm run bench`: every kernel family at ResNet18's shapes (224 px). Prints the adapter, validates
// every family against the float64 reference, times each case (ms, GFLOP/s or GB/s), then checks
// the floors the project promises (every 3x3 convolution of ResNet18's forward >= 4 GFLOP/s, the
// 1024^3 matmul >= 6 GFLOP/s) and exits with 1 on a FAIL.
//   npx tsx bench/kernels.ts [filter] [--quick] [--model]
//     filter   only cases whose '<family title> <case name>' contains it (also FILTER=...)
//     --quick  fewer shapes and 0.25 s per case: a smoke run of about a minute (also QUICK=1)
//     --model  also the whole ResNet18: inference and a training step (also MODEL=1)
import * as batchnorm from './batchnorm.ts';
import * as conv2d from './conv2d.ts';
import { parseCli, runFamilies, type BenchFamily } from './harness.ts';
import * as layout from './layout.ts';
import * as matmul from './matmul.ts';
import * as pool from './pool.ts';
import * as reduce from './reduce.ts';
import * as resnet18 from './resnet18.ts';
import * as sgd from './sgd.ts';
import * as softmax from './softmax.ts';

const cli = parseCli();
const families: BenchFamily[] = [conv2d, batchnorm, pool, matmul, softmax, reduce, layout, sgd, ...(cli.model ? [resnet18] : [])];
const t0 = performance.now();
const ok = await runFamilies(families, cli);
console.log(`\n${ok ? 'done, no floor failed' : 'a floor FAILED'} (${((performance.now() - t0) / 1e3).toFixed(0)} s)`);
process.exit(ok ? 0 : 1);
