// The gpunet command as a user runs it: help, adapter listing, and one-line errors.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BIN, runProcess } from './binary.ts';

function gpunet(args: string[], env: Record<string, string> = {}) {
  // Dawn and the Vulkan loader print their own warnings on stderr; ours are the lines starting 'gpunet'
  return runProcess(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, timeout: 60_000 });
}

describe('gpunet command', () => {
  it('--help lists the subcommands, each with its own --help', async () => {
    const r = await gpunet(['--help']);
    expect(r.status).toBe(0);
    for (const cmd of ['train', 'lr-find', 'data', 'show-batch', 'predict', 'eval', 'summary', 'import', 'onnx-test', 'devices', 'demo']) {
      expect(r.stdout).toMatch(new RegExp(`^  ${cmd}\\s`, 'm'));
      const sub = await gpunet([cmd, '--help']);
      expect(sub.status).toBe(0);
      expect(sub.stdout).toMatch(new RegExp(`^usage: gpunet ${cmd}`));
    }
  });

  it('devices names the adapter and its features', async () => {
    const r = await gpunet(['devices']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^0: \S/);
    expect(r.stdout).toMatch(/features: .*timestamp-query/);
  });

  it('without an adapter: one line saying what to install, exit code 2', async () => {
    const r = await gpunet(['devices'], { VK_ICD_FILENAMES: '/nonexistent/icd.json' });
    expect(r.status).toBe(2);
    expect(r.ours).toEqual([expect.stringMatching(/^gpunet devices: no WebGPU adapter found: install a Vulkan driver/)]);
    expect(r.stderr).not.toMatch(/\n\s+at .*\.ts:\d+/); // no stack trace of ours
  });

  it('bad options and unknown commands are one-line errors', async () => {
    const unknown = await gpunet(['frobnicate']);
    expect(unknown.status).toBe(1);
    expect(unknown.ours).toEqual(["gpunet: unknown command 'frobnicate' (see gpunet --help)"]);
    const badOpt = await gpunet(['demo', '--epochs', 'many']);
    expect(badOpt.status).toBe(1);
    expect(badOpt.ours).toEqual(["gpunet demo: --epochs must be an integer in 1..1000, got 'many'"]);
    const badDevice = await gpunet(['demo', '--device', 'no-such-gpu']);
    expect(badDevice.status).toBe(1);
    expect(badDevice.ours[0]).toMatch(/^gpunet demo: --device no-such-gpu: no such adapter \(have 0: .*\); list them with `gpunet devices`/);
  });

  it('--version prints package.json\'s version; through npx in the checkout with no npm warning', async () => {
    const r = await gpunet(['--version']);
    expect(r.status).toBe(0);
    const { version } = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8'));
    expect(r.stdout).toBe(`gpunet ${version}\n`);
    // through npx in the checkout, as the README runs it: no npm warning (a project .npmrc key npm does not know would give one)
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_config_/i.test(k))); // (the project's files only, not the caller's npm settings)
    // (npx's first run in a checkout links it into npm's _npx cache: tens of seconds under load; a
    // run killed midway leaves a broken cache entry that later runs fail on, so no short timeout)
    const npx = await runProcess('npx', ['--no-install', 'gpunet', '--version'], { cwd: join(import.meta.dirname, '..'), env, timeout: 170_000 });
    expect(npx.stdout).toBe(`gpunet ${version}\n`);
    expect(npx.stderr).not.toMatch(/npm warn/i);
  }, 180_000);

  it('--device cpu picks the CPU adapter, --device gpu says there is none; --seed -1 is a seed', async () => {
    const tiny = ['demo', '--epochs', '1', '--train', '16', '--valid', '8', '--size', '8'];
    const cpu = await gpunet([...tiny, '--device', 'cpu', '--seed', '-1']);
    expect(cpu.ours).toEqual([]);
    expect(cpu.status).toBe(0);
    expect(cpu.stdout).toMatch(/^adapter: .*llvmpipe/m);
    expect(cpu.stdout).toMatch(/^done in /m);
    const gpu = await gpunet([...tiny, '--device', 'gpu']);
    expect(gpu.status).toBe(1);
    expect(gpu.ours).toEqual([expect.stringMatching(/^gpunet demo: --device gpu: no GPU adapter, only CPU ones \(have 0: .*\(CPU\)\); list them with `gpunet devices`$/)]);
  });

  it('option values are checked before the GPU starts: a bad one is exit 1 even without an adapter', async () => {
    const noAdapter = { VK_ICD_FILENAMES: '/nonexistent/icd.json' };
    const cases: [string[], string][] = [
      [['train', '--data', 'x', '--weight-decay', 'NaN'], "gpunet train: --weight-decay must be a number in [0, 1], got 'NaN'"],
      [['train', '--data', 'x', '--lr', '0'], "gpunet train: --lr must be a number in (0, 100], got '0'"],
      [['train', '--data', 'x', '--workers', '1000'], "gpunet train: --workers must be an integer in 0..32, got '1000'"],
      [['predict', '--input', 'x.jpg', '--checkpoint', 'm.onnx', '--stds', '0.2,0,0.2'], "gpunet predict: --stds needs 3 comma-separated numbers > 1e-6 (R,G,B), got '0.2,0,0.2'"],
      [['eval', '--data', 'x', '--checkpoint', 'm.onnx', '--means', '0,Infinity,0'], "gpunet eval: --means needs 3 comma-separated numbers (R,G,B), got '0,Infinity,0'"],
      [['predict', '--input', 'x.jpg', '--checkpoint', 'm.onnx', '--top_kk', '3'], 'gpunet predict: unknown option --top_kk; did you mean --top-k?'],
      [['train', '--data', 'x', '--arch', 'vgg16'], 'gpunet train: --arch vgg16 needs --weights FILE.onnx: gpunet builds only resnet18 and resnet34 itself; any other network is fine-tuned from an ONNX export of it (torch.onnx.export, or tools/fetch-weights)'],
    ];
    for (const [args, line] of cases) {
      const r = await gpunet(args, noAdapter);
      expect(r.ours, args.join(' ')).toEqual([line]);
      expect(r.status).toBe(1);
    }
  });
});

describe('internal errors', () => {
  /** runCommand on a command whose run is `body` (JavaScript), in a child process. */
  function fakeCommand(body: string) {
    const main = join(import.meta.dirname, '..', 'src', 'cli', 'main.ts');
    const script = `const { runCommand } = await import(${JSON.stringify(main)});
      process.exitCode = await runCommand({ name: 'fake', summary: '', usage: '', options: {}, run: async () => { ${body} } }, []);`;
    return runProcess(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { timeout: 60_000 });
  }

  it('a bug (thrown, or a promise nobody awaits) prints its trace with a line asking to report it, exit 70', async () => {
    for (const body of ["null.x; return 0;", "Promise.reject(new RangeError('stray')); await new Promise((r) => setTimeout(r, 2000)); return 0;"]) {
      const r = await fakeCommand(body);
      expect(r.status, r.stderr).toBe(70);
      expect(r.ours).toEqual([
        expect.stringMatching(/^gpunet fake: internal error: (Cannot read properties of null|stray)/),
        'gpunet fake: this is a bug in gpunet, not in your input: please report it with the command line and the lines above',
      ]);
      expect(r.stderr).toMatch(/\n\s+at /);
    }
  });
});
