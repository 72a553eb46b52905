// ONNX backend test cases (onnx/backend/test/data/node/*): a folder with model.onnx and
// test_data_set_*/input_*.pb, output_*.pb. runBackendCase runs the model on every data set with
// GraphModule and compares each output with the expected one by relative error
// (max |actual - expected| / max |expected|), the measure gpunet's own tests use. A case whose
// every op gpunet computes only on values known before the graph runs (Floor, Greater, ReduceMin,
// ...: shape arithmetic) gets its inputs as constants of the graph, as those ops meet them in a
// model, so that it checks their folding on the host.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { readRegularFile } from '../io/files.ts';
import { basename, join } from 'node:path';
import { noGrad, OpError, relError, Tensor, tidy } from '../tensor/index.ts';
import { checkSupported, GraphModule, UnsupportedError } from './graph.ts';
import type { OnnxModel, OnnxTensor } from './ir.ts';
import { FOLDED_OPS, type Value } from './ops/index.ts';
import { OnnxError, parseTensor, readOnnx } from './read.ts';

export type CaseStatus = 'pass' | 'fail' | 'unsupported' | 'error';

export interface CaseResult {
  name: string;
  dir: string;
  status: CaseStatus;
  /** largest relative error over every output of every data set (NaN when nothing was compared) */
  maxRelError: number;
  /** why it failed, errored or is unsupported */
  message?: string;
  seconds: number;
}

/** A case folder holds model.onnx. */
export function isBackendCase(dir: string): boolean {
  return existsSync(join(dir, 'model.onnx'));
}

/** The case folders `path` names: itself if it is one, else its subfolders that are (sorted). */
export function findBackendCases(path: string): string[] {
  if (isBackendCase(path)) return [path];
  if (!existsSync(path) || !statSync(path).isDirectory()) throw new OnnxError(path, 'not a folder');
  return readdirSync(path)
    .sort()
    .map((d) => join(path, d))
    .filter((d) => statSync(d).isDirectory() && isBackendCase(d));
}

function readTensors(dir: string, prefix: 'input' | 'output'): OnnxTensor[] {
  const files = readdirSync(dir).filter((f) => new RegExp(`^${prefix}_\\d+\\.pb$`).test(f));
  files.sort((a, b) => Number(a.match(/\d+/)![0]) - Number(b.match(/\d+/)![0]));
  return files.map((f) => parseTensor(readRegularFile(join(dir, f)), { source: join(dir, f) }));
}

const numbers = (t: OnnxTensor): Float64Array => Float64Array.from(t.data as ArrayLike<number | bigint>, Number);

/** relError where the expected values are finite; a NaN or infinity expected (sqrt of a negative,
 *  a log of 0) must be produced exactly. */
function caseError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) return Infinity;
  const finite: number[] = [];
  for (let i = 0; i < expected.length; i++) {
    if (Number.isFinite(expected[i])) finite.push(i);
    else if (!Object.is(actual[i], expected[i]) && !(Number.isNaN(actual[i]) && Number.isNaN(expected[i]))) return Infinity;
  }
  return relError(finite.map((i) => actual[i]), finite.map((i) => expected[i]));
}

/** The outputs of a model of host-only ops with its inputs made constants (folded at load). */
function foldedWith(model: OnnxModel, feed: Record<string, OnnxTensor>, source: string): Record<string, Value> {
  const initializers = new Map([...model.graph.initializers, ...Object.entries(feed)]);
  const folded = new GraphModule({ ...model, graph: { ...model.graph, inputs: [], initializers } }, { source });
  try {
    return folded.run({});
  } finally {
    folded.release();
  }
}

/** Runs one case folder; never throws for a problem of the case itself. */
export async function runBackendCase(dir: string, tolerance = 1e-4): Promise<CaseResult> {
  const name = basename(dir);
  const t0 = performance.now();
  const done = (status: CaseStatus, maxRelError: number, message?: string): CaseResult => ({
    name, dir, status, maxRelError, message, seconds: (performance.now() - t0) / 1000,
  });
  let model;
  try {
    model = readOnnx(join(dir, 'model.onnx'));
    checkSupported(model, join(dir, 'model.onnx'));
  } catch (e) {
    if (e instanceof OnnxError) return done(e instanceof UnsupportedError ? 'unsupported' : 'error', NaN, e.message);
    throw e;
  }
  const sets = readdirSync(dir).filter((d) => d.startsWith('test_data_set_')).sort();
  if (sets.length === 0) return done('error', NaN, 'no test_data_set_* folder');
  let worst = 0;
  const source = join(dir, 'model.onnx');
  const hostOnly = model.graph.nodes.every((n) => FOLDED_OPS.includes(n.opType));
  const module = new GraphModule(model, { source });
  try {
    for (const set of sets) {
      const inputs = readTensors(join(dir, set), 'input');
      const expected = readTensors(join(dir, set), 'output');
      if (inputs.length !== model.graph.inputs.length) {
        return done('error', NaN, `${set} has ${inputs.length} inputs, the model ${model.graph.inputs.length}`);
      }
      const outputs = await noGrad(() =>
        tidy(async () => {
          const feed = Object.fromEntries(model.graph.inputs.map((v, i) => [v.name, { ...inputs[i], name: v.name }]));
          const result = hostOnly ? foldedWith(model, feed, source) : module.run(feed);
          return Promise.all(
            model.graph.outputs.map(async (v) => {
              const r = result[v.name];
              return r instanceof Tensor ? { dims: [...r.shape], data: await r.toArray() } : { dims: r.dims, data: numbers(r) };
            }),
          );
        }),
      );
      for (const [k, exp] of expected.entries()) {
        const out = outputs[k];
        const what = `${set} output '${model.graph.outputs[k]?.name}'`;
        if (!out) return done('fail', Infinity, `${what}: not produced`);
        if (out.dims.join() !== exp.dims.join()) return done('fail', Infinity, `${what}: shape [${out.dims}] instead of [${exp.dims}]`);
        const err = caseError(out.data, numbers(exp));
        worst = Math.max(worst, err);
        if (!(err < tolerance)) return done('fail', err, `${what}: relative error ${err.toExponential(2)} >= ${tolerance}`);
      }
    }
  } catch (e) {
    if (e instanceof UnsupportedError) return done('unsupported', NaN, e.message);
    if (e instanceof OpError || e instanceof OnnxError) return done('error', NaN, e.message);
    throw e;
  } finally {
    module.release();
  }
  return done('pass', worst);
}
