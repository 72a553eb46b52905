// `gpunet gradcheck OP|MODULE`: an op's GPU forward against its float64 reference and its GPU
// backward against central finite differences of that reference, on seeded random inputs; the
// largest absolute and relative error per input, PASS or FAIL, exit status 1 on a failure. The
// checks are the ones the tests run (src/ops/gradcheck.ts), registered next to each op; a module
// path brings the checks of custom ops (any exported GradcheckSpec).
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { initGpu } from '../gpu/index.ts';
import '../ops/index.ts'; // every op registers its check
import { gradcheck, gradcheckSpec, gradcheckSpecs, type GradcheckResult, type GradcheckSpec } from '../ops/gradcheck.ts';
import { setPoison, shapeStr, type Shape } from '../tensor/index.ts';
import { defineCommand } from './command.ts';
import { UsageError } from './errors.ts';
import { choice, flag, formatNumber, num, str, strings } from './options.ts';
import { DEVICE, seedOption } from './shared-options.ts';

function parseShape(raw: string): Shape {
  const dims = raw.split(/[,x]/).map((d) => (d.trim() === '' ? NaN : Number(d)));
  if (raw.trim() === '' || !dims.every((d) => Number.isInteger(d) && d >= 1)) {
    throw new UsageError(`--shape must be positive sizes separated by commas, e.g. 2,3,7,5, got '${raw}'`);
  }
  return dims;
}

function parseOptionsJson(raw: string | undefined): Record<string, unknown> {
  if (raw === undefined) return {};
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    v = undefined;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new UsageError(`--options must be a JSON object, e.g. '{"stride":2,"padding":0}', got '${raw}'`);
  }
  return v as Record<string, unknown>;
}

const isSpec = (v: unknown): v is GradcheckSpec =>
  typeof v === 'object' && v !== null && ['name', 'inputs', 'shapes', 'options', 'run', 'reference'].every((k) => k in v);

/** The checks a module exports: GradcheckSpecs, alone or in arrays (a custom op's file). */
async function moduleSpecs(path: string): Promise<GradcheckSpec[]> {
  const file = resolve(path);
  if (!existsSync(file)) throw new UsageError(`${path}: no such file (give an op name, see --list, or the path of a module exporting gradcheck specs)`);
  const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  const specs = Object.values(mod).flatMap((v) => (Array.isArray(v) ? v : [v])).filter(isSpec);
  if (specs.length === 0) {
    throw new UsageError(`${path} exports no gradcheck spec (an object with name, inputs, shapes, options, run and reference; see examples/custom-ops.ts)`);
  }
  return specs;
}

function describeRun(r: GradcheckResult, spec: GradcheckSpec): string {
  const shapes = r.shapes.map((s, i) => `${spec.inputs[i]}${shapeStr(s)}`).join(' ');
  const opts = Object.entries(r.options).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' ');
  return `${r.name}  ${shapes}${opts ? `  ${opts}` : ''}  seed ${r.seed}`;
}

function report(r: GradcheckResult, spec: GradcheckSpec): string[] {
  const e = (v: number) => (Number.isFinite(v) ? v.toExponential(2) : String(v));
  const rows = [['forward', r.forward] as const, ...r.grads.map((g) => [`d${g.input}`, g] as const)];
  const width = Math.max(...rows.map(([n]) => n.length));
  return [
    describeRun(r, spec),
    ...rows.map(([name, s]) => `  ${name.padEnd(width)}  max abs error ${e(s.maxAbs).padStart(9)}  relative ${e(s.rel).padStart(9)}  ${s.rel <= r.tolerance ? 'ok' : 'FAIL'}`),
    `${r.pass ? 'PASS' : 'FAIL'} (relative error ${r.pass ? '<=' : '>'} ${formatNumber(r.tolerance)})`,
  ];
}

export const gradcheckCommand = defineCommand({
  name: 'gradcheck',
  summary: "check an op's backward against finite differences of its float64 reference",
  synopsis: 'OP|MODULE [--shape S]... [--options JSON] [--seed N] [options]',
  description: `Runs an op on the GPU on seeded random inputs and compares its output with the op's float64
reference (src/reference/), and the gradient its backward computes for a random output gradient
dy with central finite differences of the reference: dL/dx_i = (L(x + h e_i) - L(x - h e_i)) / 2h,
L = sum(op(x) * dy), in float64. Prints the largest absolute and relative error of the output and
of each input's gradient, and PASS or FAIL; exits with 1 on a failure. These are the checks the
tests run.
  OP       an op's name (--list shows them and their inputs), or 'all'
  MODULE   a .mjs/.js (or, in a checkout, .ts) file exporting GradcheckSpec objects: custom ops`,
  positionals: { name: 'OP|MODULE' },
  options: {
    shape: strings({ metavar: 'N,C,H,W', help: "an input's shape, one --shape per input in order; the rest follow from the first (default: small awkward ones)" }),
    options: str({ metavar: 'JSON', help: `the op's options, e.g. '{"stride":2,"padding":0}' (default: the op's, shown in the output)` }),
    seed: seedOption('the seed of the random inputs and output gradient'),
    dtypeRef: choice(['f64'] as const, { default: 'f64', help: 'the reference precision: float64 (float32 finite differences are too coarse to judge a float32 kernel by)' }),
    tolerance: num({ above: 0, default: 1e-4, help: 'the largest relative error (max |error| / max |expected|) that passes' }),
    list: flag({ help: 'list the ops with their inputs and default shapes' }),
    json: flag({ help: 'one JSON object per op' }),
    ...DEVICE,
  },
  async run(v, { positionals }) {
    if (v.list) {
      for (const s of gradcheckSpecs()) {
        const shapes = s.shapes([], s.options).map((sh, i) => `${s.inputs[i]}${shapeStr(sh)}`).join(' ');
        console.log(`${s.name.padEnd(22)} ${shapes}`);
      }
      return 0;
    }
    if (positionals.length !== 1) throw new UsageError(`give one OP or MODULE${positionals.length ? `, not ${positionals.length} (${positionals.join(' ')})` : ''} (see gpunet gradcheck --list)`);
    const [target] = positionals;
    const shapes = v.shape.map(parseShape);
    const options = parseOptionsJson(v.options);
    const byName = target === 'all' ? gradcheckSpecs() : gradcheckSpec(target.toLowerCase());
    const specs = Array.isArray(byName) ? byName : byName ? [byName] : /[/\\.]/.test(target) ? await moduleSpecs(target) : null;
    if (!specs) throw new UsageError(`no op '${target}' to check: gpunet gradcheck --list shows them (a module path holds a '/' or an extension)`);
    if (specs.length > 1 && (shapes.length || v.options)) throw new UsageError(`--shape and --options apply to one op, and ${target} holds ${specs.length}`);
    await initGpu(v.device);
    setPoison(true); // as in the tests: an element a kernel forgets to write shows as NaN
    let failed = 0;
    for (const spec of specs) {
      const r = await gradcheck(spec, { shapes, options, seed: v.seed, tolerance: v.tolerance });
      if (!r.pass) failed++;
      console.log(v.json ? JSON.stringify(r) : report(r, spec).join('\n'));
    }
    if (specs.length > 1 && !v.json) console.log(`${specs.length - failed} of ${specs.length} ops pass`);
    return failed ? 1 : 0;
  },
});
