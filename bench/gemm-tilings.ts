// The GEMM's tilings side by side on this adapter: the 1024^3 matmul and every ResNet18
// convolution (forward, dx, dw) with all of its GEMMs forced to each tiling (setGemmTiling), timed
// by the CPU time of lavapipe's worker threads per call (what load barely distorts), the tilings
// interleaved within each round (load moves this machine 2-3x from minute to minute), medians of
// the rounds. "default" is the untuned choice (defaultTiling in src/ops/matmul.ts, no tuning cache
// read: run with GPUNET_CACHE_DIR at an empty directory to be sure). The totals weight each
// convolution by how often ResNet18 runs it (the stem's dx never runs: the image wants no gradient).
// Each row also lists the GEMMs its call launches, [M,N,K] x batch items, from the dispatches.
//   npx tsx bench/gemm-tilings.ts [--tilings JSON-list] [--configs b1x224,b8x112] [--passes fwd,dx,dw]
//                                 [--rounds 3] [--calls 2] [--filter TEXT] [--no-convs]
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { getGpu, type DispatchArgs } from '../src/gpu/index.ts';
import { conv2dBackwardInput, conv2dBackwardWeight, conv2dForward } from '../src/ops/conv2d.ts';
import { gemm, GEMM_CANDIDATES, setGemmTiling, type GemmTiling } from '../src/ops/matmul.ts';
import { Rng, type Tensor } from '../src/tensor/index.ts';
import { median } from '../src/train/benchmark.ts';
import { openGpu, randomValues, toTensor, workerCpuPerCall } from './harness.ts';
import { parseConfig, RESNET18_CONVS, resnetConvGeometry } from './resnet18-convs.ts';

const { values } = parseArgs({
  options: {
    tilings: { type: 'string' },
    configs: { type: 'string', default: 'b1x224,b8x112' },
    passes: { type: 'string', default: 'fwd,dx,dw' },
    rounds: { type: 'string', default: '3' },
    calls: { type: 'string', default: '2' },
    filter: { type: 'string', default: '' },
    'no-convs': { type: 'boolean', default: false },
  },
});
const rounds = Number(values.rounds);
const calls = Number(values.calls);
const tilings: (GemmTiling | null)[] = [null, ...(values.tilings ? (JSON.parse(values.tilings) as GemmTiling[]) : GEMM_CANDIDATES)];
const tilingName = (t: GemmTiling | null) =>
  t === null ? 'default' : t.kernel === 'gemm' ? `gemm ${t.wgN}x${t.wgM} ${t.blocksM}x${t.blocksN}` : `TM${t.TM} NB${t.NB}${t.lanes ? ` L${t.lanes}` : ''}`;

await openGpu();
const gpu = getGpu();
const rng = new Rng(1);
const rand = (shape: number[]) => toTensor(randomValues(shape.reduce((p, d) => p * d, 1), rng), shape);

/** The GEMMs one call of `run` dispatches, as '[M,N,K] x batch' (chunks of one GEMM each count). */
async function gemmsOf(run: () => Tensor): Promise<string> {
  const seen: string[] = [];
  const dispatch = gpu.dispatch.bind(gpu);
  gpu.dispatch = (args: DispatchArgs) => {
    const spec = args.kernel as { shader?: string; entry?: string };
    if (spec.shader === 'matmul' && spec.entry !== 'columnSum' && args.params) {
      const { M, N, K } = args.params as Record<string, number>;
      seen.push(`[${M},${N},${K}]${(args.workgroups[2] ?? 1) > 1 ? ` x${args.workgroups[2]}` : ''}`);
    }
    dispatch(args);
  };
  try {
    run().release();
    await gpu.sync();
  } finally {
    gpu.dispatch = dispatch;
  }
  const counts = new Map<string, number>();
  for (const s of seen) counts.set(s, (counts.get(s) ?? 0) + 1);
  return [...counts].map(([s, n]) => (n > 1 ? `${n} x ${s}` : s)).join(', ');
}

interface Row {
  name: string;
  /** how often the whole model runs it (0: timed, not counted in the totals) */
  weight: number;
  group: string;
  ms: number[];
}

/** Times `run` under every tiling, interleaved in each of the rounds; the medians per tiling. */
async function timeTilings(run: () => Tensor): Promise<number[]> {
  const samples = tilings.map(() => [] as number[]);
  for (let r = 0; r < rounds; r++) {
    for (const [i, t] of tilings.entries()) {
      setGemmTiling(t);
      // one round of `calls` calls (the first round's warm-up compiles the tiling's pipelines)
      samples[i].push(await workerCpuPerCall(run, 1, calls));
    }
  }
  setGemmTiling(null);
  return samples.map(median);
}

const width = Math.max(9, ...tilings.map((t) => tilingName(t).length + 1));
const cell = (ms: number, best: number) => `${ms.toFixed(1)}${ms === best ? '*' : ' '}`.padStart(width);
const print = (row: Row, gemms: string) => {
  const best = Math.min(...row.ms);
  console.log(`${row.name.padEnd(30)}${row.ms.map((ms) => cell(ms, best)).join('')}   ${gemms}`);
};

console.log(`lavapipe worker CPU ms per call, medians of ${rounds} rounds of ${calls} calls, tilings interleaved; * the fastest`);
console.log(`${''.padEnd(30)}${tilings.map((t) => tilingName(t).padStart(width)).join('')}`);
const rows: Row[] = [];
const [a, b] = [rand([1024, 1024]), rand([1024, 1024])];
const row1024: Row = { name: 'matmul 1024^3', weight: 0, group: '', ms: await timeTilings(() => gemm(a, b)) };
print(row1024, await gemmsOf(() => gemm(a, b)));
console.log(`  GFLOP per core-second: ${row1024.ms.map((ms) => `${tilingName(tilings[row1024.ms.indexOf(ms)])} ${((2 * 1024 ** 3) / ms / 1e6).toFixed(1)}`).join(', ')}`);
[a, b].forEach((t) => t.release());

if (!values['no-convs']) {
  const passes = values.passes.split(',');
  for (const config of values.configs.split(',')) {
    const { batch, size } = parseConfig(config);
    console.log(`\nbatch ${batch}, ${size} px`);
    for (const s of RESNET18_CONVS.filter((c) => c.name.includes(values.filter))) {
      const g = resnetConvGeometry(s, batch, size);
      const x = rand([g.N, g.C, g.H, g.W]);
      const w = rand([g.OC, g.C, g.KH, g.KW]);
      const dy = rand([g.N, g.OC, g.OH, g.OW]);
      const runs: Record<string, () => Tensor> = {
        fwd: () => conv2dForward(x, w, null, g),
        dx: () => conv2dBackwardInput(dy, w, g),
        dw: () => conv2dBackwardWeight(dy, x, g),
      };
      for (const pass of passes) {
        const weight = pass === 'dx' && s.name.startsWith('stem') ? 0 : s.count;
        const row: Row = { name: `${s.name} ${pass}`, weight, group: `${config} ${pass}`, ms: await timeTilings(runs[pass]) };
        rows.push(row);
        print(row, await gemmsOf(runs[pass]));
      }
      [x, w, dy].forEach((t) => t.release());
    }
  }
  console.log('\ntotals (each convolution times its count in ResNet18)');
  const groups = [...new Set(rows.map((r) => r.group))];
  const total = (rs: Row[]) => tilings.map((_, i) => rs.reduce((sum, r) => sum + r.weight * r.ms[i], 0));
  const show = (name: string, ms: number[]) => {
    const best = Math.min(...ms);
    console.log(`${name.padEnd(30)}${ms.map((v) => cell(v, best)).join('')}`);
  };
  for (const grp of groups) show(grp, total(rows.filter((r) => r.group === grp)));
  for (const config of values.configs.split(',')) show(`${config} all passes`, total(rows.filter((r) => r.group.startsWith(`${config} `))));
}
console.log(`\nload average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
process.exit(0);
