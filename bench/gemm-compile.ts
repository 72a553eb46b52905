// What one GEMM pipeline costs to compile on a cold shader cache (bench/NOTES.md sections 12, 15
// and 20): each variant's first launch (pipeline creation, LLVM on lavapipe, and a small GEMM)
// against its second, in process CPU and wall time. Run it with an empty shader cache, or every
// variant reads as cached:
//
//   MESA_SHADER_CACHE_DIR=$(mktemp -d) npx tsx bench/gemm-compile.ts [--tilings 5,3] [--epilogues none,rows-relu]
//
// --tilings: indices into GEMM_CANDIDATES; each tiling runs with vec4 and with scalar operands
// (shapes whose rows are and are not whole vec4s) and each epilogue of --epilogues: none,
// rows-relu (a conv's channels with ReLU), rows-all (bias, table, residual, ReLU), cols-bias.
import { parseArgs } from 'node:util';
import { cpuUsage } from 'node:process';
import { getGpu, initGpu } from '../src/gpu/index.ts';
import { GEMM_CANDIDATES, gemm, type GemmEpilogue } from '../src/ops/matmul.ts';
import { Rng, Tensor, tidy } from '../src/tensor/index.ts';

const { values } = parseArgs({ options: { tilings: { type: 'string', default: '5,3' }, epilogues: { type: 'string', default: 'none,rows-relu' } } });
await initGpu(process.env.GPUNET_DEVICE);
const rng = new Rng(1);

function epilogue(name: string, M: number, N: number): GemmEpilogue | null {
  const t = (shape: number[]) => Tensor.randn(shape, rng);
  switch (name) {
    case 'none': return null;
    case 'rows-relu': return { along: 'rows', relu: true };
    case 'rows-all': return { along: 'rows', bias: t([M]), affine: t([M, 4]), residual: t([M, N]), relu: true };
    case 'cols-bias': return { along: 'cols', bias: t([N]) };
    default: throw new Error(`unknown epilogue ${name}`);
  }
}

/** CPU (all threads) and wall ms of one GEMM, its result read back. */
async function timed(run: () => Promise<unknown>): Promise<{ cpu: number; wall: number }> {
  const c0 = cpuUsage();
  const t0 = performance.now();
  await run();
  const c = cpuUsage(c0);
  return { cpu: (c.user + c.system) / 1000, wall: performance.now() - t0 };
}

console.log(`pipelines before: ${getGpu().pipelines.size}`);
for (const i of values.tilings!.split(',').map(Number)) {
  const tiling = GEMM_CANDIDATES[i];
  for (const [layout, [M, N, K]] of [['vec4', [64, 64, 64]], ['scalar', [63, 61, 59]]] as const) {
    for (const name of values.epilogues!.split(',')) {
      const a = Tensor.randn([M, K], rng);
      const b = Tensor.randn([K, N], rng);
      const e = epilogue(name, M, N);
      const run = () => tidy(() => gemm(a, b, { epilogue: e }, tiling).toArray());
      const before = getGpu().pipelines.size;
      const first = await timed(run);
      const created = getGpu().pipelines.size - before;
      const second = await timed(run);
      console.log(
        `${JSON.stringify(tiling)} ${layout} ${name}: ${created} new pipeline(s), first launch ${(first.cpu / 1000).toFixed(1)} s CPU ` +
          `(${(first.wall / 1000).toFixed(1)} s wall), second ${second.cpu.toFixed(0)} ms CPU`,
      );
      for (const t of [a, b, e?.bias, e?.affine, e?.residual]) t?.release();
    }
  }
}
