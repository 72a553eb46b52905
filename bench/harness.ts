// The benchmark harness every bench/<op>.ts shares: timing with benchmark.js, the table, the
// floors, the command line, and the helpers the validations use.
//
// Timing: each benchmark.js iteration records `repeat` launches into one submit and waits for the
// GPU once (Dawn busy-polls a core while waiting, so waiting per launch would time the wait).
// `repeat` is chosen per case from one timed launch so an iteration lasts ~20 ms, which amortises
// the wait for the microsecond kernels. Rows print the mean ms per launch and its margin of
// error, the fastest sample's ms, GFLOP/s and GB/s of the mean (and ms per item for cases that
// process a batch of images); floors are judged on the fastest sample.
//
// A bench module exports `title`, `cases` and `validate()` (a BenchFamily), optionally `floors`
// and `summary`, and runs itself through runFamilies() only when it is the main module (isMain).
import Benchmark from 'benchmark';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { getGpu, initGpu, measureCeilings, workerCpuMs, type Ceilings, type Gpu } from '../src/gpu/index.ts';
import { gemm } from '../src/ops/matmul.ts';
import { relError, Rng, Tensor, tidy, type Shape } from '../src/tensor/index.ts';
import { median } from '../src/train/benchmark.ts';

export interface BenchCase {
  name: string;
  /** floating-point operations of one launch (multiply-add = 2) */
  flops?: number;
  /** bytes read and written by one launch, at the least */
  bytes?: number;
  /** images (or other items) one launch processes: adds a per-item time column */
  items?: number;
  /** part of the short `--quick` run */
  quick?: boolean;
  /** allocates inputs, returns the function that records one launch and a cleanup */
  setup(): { run: () => void; dispose: () => void };
}

/** What every bench/<op>.ts exports. */
export interface BenchFamily {
  title: string;
  cases: BenchCase[];
  /** checks the kernels against the float64 reference in src/reference/; throws on a mismatch */
  validate(): Promise<void>;
  floors?: Floor[];
  /** groups the rows for the totals lines (one total when unset) */
  summary?: (row: BenchRow) => string;
}

/** A throughput the project promises: every one of `cases` that ran must reach `gflops`. */
export interface Floor {
  what: string;
  cases: BenchCase[];
  gflops: number;
}

export interface BenchRow {
  name: string;
  /** mean time per launch */
  ms: number;
  /** relative margin of error of the mean, % */
  rme: number;
  gflops?: number;
  gbs?: number;
  msPerItem?: number;
  /** the fastest sample's time per launch, and its GFLOP/s: what the floors judge, as other
   *  processes on the machine only ever add time */
  bestMs: number;
  bestGflops?: number;
  /** the fastest sample's GB/s: "% load" sets it against the vec4-load ceiling, itself the
   *  fastest of a few runs */
  bestGbs?: number;
  /** the totals of a summary line (not a case) */
  total?: boolean;
}

export interface BenchOptions {
  /** seconds per case */
  maxTime?: number;
  /** cases a floor judges: timed for at least FLOOR_SECONDS, so that --quick judges them on enough samples */
  floorCases?: ReadonlySet<BenchCase>;
  /** only cases whose '<title> <name>' contains this */
  filter?: string;
  /** only the cases marked quick */
  quick?: boolean;
  /** after the rows, a totals line: total ms and GFLOP/s, GB/s over all rows (or per group key) */
  summary?: boolean | ((row: BenchRow) => string);
}

// ---- command line -----------------------------------------------------------------------------

export interface CliOptions {
  filter?: string;
  quick: boolean;
  /** also the whole-model benchmarks (bench/resnet18.ts) */
  model: boolean;
}

/** `[filter] [--filter=s] [--quick] [--model]`, or the environment's FILTER, QUICK=1, MODEL=1. */
export function parseCli(argv = process.argv.slice(2)): CliOptions {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { filter: { type: 'string' }, quick: { type: 'boolean' }, model: { type: 'boolean' } },
  });
  const env = (name: string) => ['1', 'true', 'yes'].includes((process.env[name] ?? '').toLowerCase());
  return {
    filter: values.filter ?? positionals[0] ?? (process.env.FILTER || undefined),
    quick: values.quick ?? env('QUICK'),
    model: values.model ?? env('MODEL'),
  };
}

/** True in the module that node was started with (a bench run directly, not imported). */
export function isMain(moduleUrl: string): boolean {
  return process.argv[1] !== undefined && moduleUrl === pathToFileURL(process.argv[1]).href;
}

// ---- validation helpers -----------------------------------------------------------------------

/** n seeded uniform(lo, hi) values rounded to f32, so the GPU and the float64 reference read the same numbers. */
export function randomValues(n: number, rng: Rng, lo = -1, hi = 1): Float64Array {
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.fround(rng.uniform(lo, hi));
  return a;
}

export function toTensor(a: Float64Array, shape: readonly number[]): Tensor {
  return Tensor.from(Float32Array.from(a), shape);
}

/**
 * Runs `fn` in a tidy scope, reads back the tensors it returns, releases them (kept gradients
 * too) and returns their values. The arrays leave the scope by assignment, not as tidy's result:
 * tidy walks a returned typed array element by element (seconds for an activation).
 */
export async function readBack(fn: () => Tensor[]): Promise<Float32Array[]> {
  let out: Float32Array[] = [];
  await tidy(async () => {
    const ts = fn();
    out = await Promise.all(ts.map((t) => t.toArray()));
    for (const t of ts) t.release();
  });
  return out;
}

export { relError };

/** Throws unless the GPU result matches the float64 reference to `tol` (relError). */
export function expectClose(what: string, got: ArrayLike<number>, ref: ArrayLike<number>, tol = 1e-4): void {
  const err = relError(got, ref);
  if (!(err < tol)) throw new Error(`${what}: relative error ${err.toExponential(2)} against the float64 reference (tolerance ${tol})`);
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/**
 * Checks a backward without a reference backward: for a random direction v, the GPU gradient
 * `grad` of L = sum(dy * f(x)) must give dot(grad, v) = dL(x + h v)/dh at h = 0, which central
 * differences of the float64 reference forward `f` compute from two evaluations (at any size).
 */
export function expectGradient(what: string, f: (x: Float64Array) => Float64Array, x: Float64Array, dy: ArrayLike<number>, grad: ArrayLike<number>, rng: Rng): void {
  const v = randomValues(x.length, rng);
  const h = 1e-4;
  const at = (s: number) => dot(dy, f(x.map((xi, i) => xi + s * h * v[i])));
  const ref = (at(1) - at(-1)) / (2 * h);
  expectClose(`${what} (gradient along a random direction)`, [dot(grad, v)], [ref], 1e-4);
}

/**
 * A case's run for the backward kernels of y's op alone: y's tape node is kept, and each run calls
 * its gradient rule again on the same random dy (what a training step launches for the op).
 */
export function backwardOnly(y: Tensor, rng: Rng): { run: () => void; dispose: () => void } {
  const node = y.node;
  if (!node) throw new Error(`${y.describe()} is not on the tape: give an input requiresGrad`);
  const dy = Tensor.randn(y.shape, rng);
  return {
    run: () => void node.backward(dy, node.needs),
    dispose: () => {
      y.release();
      dy.release();
    },
  };
}

/** A case running `f` on inputs of `shapes` (random), forward only or with the backward too. */
export function opCase(name: string, shapes: Shape[], f: (ts: Tensor[]) => Tensor, bytes: number, opts: { backward?: boolean; quick?: boolean } = {}): BenchCase {
  return {
    name: `${name}${opts.backward ? ' bwd' : ''}`,
    bytes,
    quick: opts.quick,
    setup() {
      const rng = new Rng(1);
      const ts = shapes.map((s) => Tensor.randn(s, rng));
      if (!opts.backward) return { run: () => void f(ts), dispose: () => ts.forEach((t) => t.release()) };
      for (const t of ts) t.requiresGrad = true;
      const { run, dispose } = backwardOnly(f(ts), rng);
      return { run, dispose: () => (dispose(), ts.forEach((t) => t.release())) };
    },
  };
}

// ---- timing -----------------------------------------------------------------------------------

/** Launches per iteration are chosen so that one iteration takes about this long. */
const ITERATION_MS = 20;
const DEFAULT_SECONDS = 1.5;
const FLOOR_SECONDS = 1;

/** The cases of a family that `opts` selects. */
export function selectCases(title: string, cases: BenchCase[], opts: BenchOptions): BenchCase[] {
  return cases.filter((c) => (!opts.quick || c.quick) && (!opts.filter || `${title} ${c.name}`.includes(opts.filter)));
}

async function runOne(c: BenchCase, opts: BenchOptions): Promise<BenchRow> {
  const gpu = getGpu();
  const { run, dispose } = c.setup();
  try {
    // warm-up: compiles pipelines, fills the pool; then one timed launch sizes the iterations
    tidy(run);
    await gpu.sync();
    const t0 = performance.now();
    tidy(run);
    await gpu.sync();
    const repeat = Math.max(1, Math.min(100, Math.round(ITERATION_MS / (performance.now() - t0))));
    const stats = await new Promise<Benchmark.Stats>((resolve, reject) => {
      const bench = new Benchmark(c.name, {
        defer: true,
        minSamples: 3,
        maxTime: Math.max(opts.maxTime ?? DEFAULT_SECONDS, opts.floorCases?.has(c) ? FLOOR_SECONDS : 0),
        fn(deferred: { resolve(): void }) {
          for (let i = 0; i < repeat; i++) tidy(run);
          gpu.sync().then(() => deferred.resolve(), reject);
        },
        onComplete: () => resolve(bench.stats),
        onError: (e: { message?: string }) => reject(new Error(`${c.name}: ${e.message ?? 'benchmark failed'}`)),
      });
      bench.run({ async: true });
    });
    const s = stats.mean / repeat;
    const best = Math.min(...stats.sample) / repeat;
    return {
      name: c.name,
      ms: s * 1e3,
      rme: stats.rme,
      bestMs: best * 1e3,
      bestGflops: c.flops ? c.flops / best / 1e9 : undefined,
      gflops: c.flops ? c.flops / s / 1e9 : undefined,
      gbs: c.bytes ? c.bytes / s / 1e9 : undefined,
      bestGbs: c.bytes ? c.bytes / best / 1e9 : undefined,
      msPerItem: c.items ? (s * 1e3) / c.items : undefined,
    };
  } finally {
    dispose();
  }
}

interface Columns {
  nameWidth: number;
  perItem: boolean;
}

const num = (v: number | undefined, digits: number, width: number) => (v !== undefined ? v.toFixed(digits) : '').padStart(width);

/** What the rows' shares are of, measured at the start of the run (measureReferences). */
let references: (Ceilings & { gemmGflops: number }) | null = null;

/** The adapter's FMA and vec4-load ceilings (src/gpu/ceilings.ts) and gpunet's best GEMM: the
 *  1024^3 matmul, the fastest of a few launches (timestamp queries). */
export async function measureReferences(gpu: Gpu): Promise<typeof references> {
  const ceilings = await measureCeilings(gpu);
  const n = 1024;
  const [a, b] = [Tensor.randn([n, n], new Rng(1)), Tensor.randn([n, n], new Rng(2))];
  tidy(() => void gemm(a, b)); // compiles, untimed
  await gpu.sync();
  gpu.startProfiling();
  for (let r = 0; r < 3; r++) {
    tidy(() => void gemm(a, b));
    gpu.flush();
  }
  const { events } = await gpu.stopProfiling();
  a.release();
  b.release();
  const fastest = Math.min(...events.map((e) => e.endNs - e.beginNs)) / 1e9;
  references = { ...ceilings, gemmGflops: (2 * n ** 3) / fastest / 1e9 };
  console.log(
    `references: FMA ceiling ${ceilings.fmaGflops.toFixed(1)} GFLOP/s, vec4 loads ${ceilings.loadGbs.toFixed(2)} GB/s, ` +
      `gpunet's best GEMM (1024^3 matmul) ${references.gemmGflops.toFixed(1)} GFLOP/s; "% FMA" and "% GEMM" are each row's mean GFLOP/s against them, "% load" its fastest sample's GB/s against the vec4 loads`,
  );
  return references;
}

function header(cols: Columns): string {
  return `${'kernel'.padEnd(cols.nameWidth)}  ${'ms'.padStart(9)}  ${'±%'.padStart(5)}  ${'best ms'.padStart(9)}  ${'GFLOP/s'.padStart(8)}  ${'GB/s'.padStart(7)}  ${'% FMA'.padStart(5)}  ${'% GEMM'.padStart(6)}  ${'% load'.padStart(6)}${cols.perItem ? `  ${'ms/item'.padStart(9)}` : ''}`;
}

function formatRow(r: BenchRow, cols: Columns): string {
  const share = (of: number | undefined, width: number) => num(r.gflops !== undefined && of ? (100 * r.gflops) / of : undefined, 0, width);
  return (
    `${r.name.padEnd(cols.nameWidth)}  ${num(r.ms, 3, 9)}  ${r.total ? ''.padStart(5) : num(r.rme, 1, 5)}  ${num(r.bestMs, 3, 9)}  ${num(r.gflops, 2, 8)}  ${num(r.gbs, 2, 7)}` +
    `  ${share(references?.fmaGflops, 5)}  ${share(references?.gemmGflops, 6)}` +
    `  ${num(r.bestGbs !== undefined && references ? (100 * r.bestGbs) / references.loadGbs : undefined, 0, 6)}` +
    (cols.perItem ? `  ${num(r.msPerItem, 2, 9)}` : '')
  );
}

/** Totals of `rows`: summed time, and GFLOP/s (GB/s) as summed work over summed time when every row has it. */
function totalRow(name: string, rows: BenchRow[]): BenchRow {
  const ms = rows.reduce((a, r) => a + r.ms, 0);
  const work = (f: (r: BenchRow) => number | undefined) => (rows.every((r) => f(r) !== undefined) ? rows.reduce((a, r) => a + f(r)! * r.ms, 0) / ms : undefined);
  return { name, ms, rme: 0, bestMs: rows.reduce((a, r) => a + r.bestMs, 0), gflops: work((r) => r.gflops), gbs: work((r) => r.gbs), total: true };
}

/** Times the selected cases, printing the header once and each row as it completes; returns the rows. */
export async function runBench(title: string, cases: BenchCase[], opts: BenchOptions = {}): Promise<BenchRow[]> {
  const selected = selectCases(title, cases, opts);
  const cols: Columns = { nameWidth: Math.max(24, ...selected.map((c) => c.name.length + 2)), perItem: selected.some((c) => c.items) };
  console.log(`\n${title}`);
  console.log(header(cols));
  const rows: BenchRow[] = [];
  for (const c of selected) {
    const row = await runOne(c, opts);
    rows.push(row);
    console.log(formatRow(row, cols));
  }
  if (opts.summary && rows.length > 1) {
    const key = typeof opts.summary === 'function' ? opts.summary : () => 'all';
    const groups = new Map<string, BenchRow[]>();
    for (const r of rows) groups.set(key(r), [...(groups.get(key(r)) ?? []), r]);
    for (const [k, group] of groups) console.log(formatRow(totalRow(`total ${k} (${group.length})`, group), cols));
  }
  return rows;
}

/**
 * Prints PASS or FAIL for each floor whose cases ran (SKIP when none did), judged on each case's
 * fastest sample (the mean on a shared machine measures the neighbours too); false on a FAIL.
 */
export function checkFloors(floors: Floor[], rows: BenchRow[]): boolean {
  let ok = true;
  for (const f of floors) {
    const ran = rows.filter((r) => f.cases.some((c) => c.name === r.name) && r.bestGflops !== undefined);
    if (!ran.length) {
      console.log(`SKIP  ${f.what} >= ${f.gflops} GFLOP/s: not run`);
      continue;
    }
    const slowest = ran.reduce((a, r) => (r.bestGflops! < a.bestGflops! ? r : a));
    const pass = slowest.bestGflops! >= f.gflops;
    ok &&= pass;
    const which = ran.length > 1 ? `slowest of ${ran.length}: ${slowest.name}` : slowest.name;
    console.log(`${pass ? 'PASS' : 'FAIL'}  ${f.what} >= ${f.gflops} GFLOP/s: ${slowest.bestGflops!.toFixed(2)} best sample, ${slowest.gflops!.toFixed(2)} mean (${which})`);
  }
  return ok;
}

/** Opens the GPU (GPUNET_DEVICE picks the adapter) and prints its name, once. */
export async function openGpu(): Promise<Gpu> {
  let gpu: Gpu;
  try {
    return getGpu();
  } catch {
    gpu = await initGpu(process.env.GPUNET_DEVICE);
  }
  console.log(`adapter: ${gpu.adapter.name} (${gpu.adapter.backend})`);
  return gpu;
}

/**
 * The whole run: validates every family with a selected case, then times them, then checks their
 * floors. Returns false when a floor fails (a validation failure throws).
 */
export async function runFamilies(families: BenchFamily[], cli: CliOptions = parseCli()): Promise<boolean> {
  await measureReferences(await openGpu());
  const opts: BenchOptions = { filter: cli.filter, quick: cli.quick, maxTime: cli.quick ? 0.25 : DEFAULT_SECONDS };
  const active = families.filter((f) => selectCases(f.title, f.cases, opts).length > 0);
  if (!active.length) throw new Error(`no benchmark case matches${cli.filter ? ` '${cli.filter}'` : ''}${cli.quick ? ' in --quick' : ''}`);
  const floors = active.flatMap((f) => f.floors ?? []);
  opts.floorCases = new Set(floors.flatMap((f) => f.cases));
  for (const f of active) {
    const t0 = performance.now();
    await tidy(() => f.validate());
    console.log(`validated ${f.title} (${((performance.now() - t0) / 1e3).toFixed(1)} s)`);
  }
  const rows: BenchRow[] = [];
  for (const f of active) rows.push(...(await runBench(f.title, f.cases, { ...opts, summary: f.summary ?? true })));
  if (!floors.length) return true;
  console.log('\nfloors');
  return checkFloors(floors, rows);
}

/** lavapipe worker CPU ms per call of `run` (the process's CPU less the main thread's, which load
 *  barely distorts; each call's tensors released), the median of `rounds` rounds of `calls` calls,
 *  after one warm-up call. */
export async function workerCpuPerCall(run: () => Tensor, rounds: number, calls: number): Promise<number> {
  const gpu = getGpu();
  run().release();
  await gpu.sync();
  const samples: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const cpu0 = workerCpuMs().ms;
    for (let i = 0; i < calls; i++) run().release();
    await gpu.sync();
    samples.push((workerCpuMs().ms - cpu0) / calls);
  }
  return median(samples);
}
