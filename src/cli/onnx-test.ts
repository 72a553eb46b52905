// `gpunet onnx-test DIR...`: runs ONNX backend test cases (model.onnx + test_data_set_*/input_*.pb,
// output_*.pb, as onnx/backend/test/data/node and Debian's libonnx-testdata ship them) on gpunet
// and prints PASS / FAIL per case with the largest relative error. Exit status 1 when a case fails
// (or, with --strict, uses an unsupported op).
import { initGpu } from '../gpu/index.ts';
import { findBackendCases, runBackendCase, type CaseResult } from '../onnx/backend-test.ts';
import { OnnxError } from '../onnx/read.ts';
import { defineCommand } from './command.ts';
import { UsageError } from './errors.ts';
import { flag, num, str } from './options.ts';
import { DEVICE } from './shared-options.ts';

const LABEL: Record<CaseResult['status'], string> = { pass: 'PASS', fail: 'FAIL', error: 'ERROR', unsupported: 'UNSUPPORTED' };

export const onnxTestCommand = defineCommand({
  name: 'onnx-test',
  summary: 'run ONNX backend test cases (model.onnx + test_data_set_*) and report pass/fail',
  synopsis: '[options] DIR...',
  description: `Runs ONNX backend test cases: each DIR is a case folder (model.onnx and test_data_set_*/ with
input_*.pb and output_*.pb) or a folder of them, e.g.
  gpunet onnx-test /usr/share/libonnx-testdata/data/node
A case passes when every output's relative error (max |gpunet - expected| / max |expected|) is
below the tolerance. Cases using an op gpunet does not support are reported as 'unsupported' and
count as failures only with --strict.`,
  positionals: { name: 'DIR...', min: 1 },
  options: {
    tolerance: num({ above: 0, default: 1e-4, help: 'the largest relative error that passes' }),
    strict: flag({ help: 'unsupported ops count as failures' }),
    filter: str({ metavar: 'REGEX', help: 'only the cases whose folder matches' }),
    json: flag({ help: 'one JSON object per case' }),
    ...DEVICE,
  },
  async run(values, { positionals }) {
    const tolerance = values.tolerance;
    let filter: RegExp | null = null;
    if (values.filter) {
      try {
        filter = new RegExp(values.filter);
      } catch {
        throw new UsageError(`--filter is not a regular expression: '${values.filter}'`);
      }
    }
    const dirs: string[] = [];
    for (const p of positionals) {
      let found: string[];
      try {
        found = findBackendCases(p);
      } catch (e) {
        if (e instanceof OnnxError) throw new UsageError(e.message);
        throw e;
      }
      if (found.length === 0) throw new UsageError(`${p}: no test case (a folder with model.onnx) there`);
      dirs.push(...found.filter((d) => !filter || filter.test(d)));
    }
    await initGpu(values.device);
    const counts: Record<CaseResult['status'], number> = { pass: 0, fail: 0, error: 0, unsupported: 0 };
    const width = Math.max(...dirs.map((d) => d.split('/').pop()!.length));
    for (const dir of dirs) {
      const r = await runBackendCase(dir, tolerance);
      counts[r.status]++;
      if (values.json) {
        console.log(JSON.stringify(r));
        continue;
      }
      const err = Number.isNaN(r.maxRelError) ? '' : `max rel error ${r.maxRelError.toExponential(2)}`;
      console.log(`${LABEL[r.status].padEnd(11)} ${r.name.padEnd(width)}  ${err}${r.message ? `${err ? '  ' : ''}${r.message}` : ''}`);
    }
    const failed = counts.fail + counts.error + (values.strict ? counts.unsupported : 0);
    const summary = `${dirs.length} cases: ${counts.pass} passed, ${counts.fail} failed, ${counts.error} errors, ${counts.unsupported} unsupported`;
    if (values.json) console.error(summary);
    else console.log(summary);
    return failed > 0 ? 1 : 0;
  },
});
