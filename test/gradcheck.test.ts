// gradcheck itself: every op's registered check passes at its default shapes (the list `gpunet
// gradcheck --list` prints), shapes and options given override the defaults, and a wrong gradient
// fails, naming the input.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { gradcheckCommand } from '../src/cli/gradcheck.ts';
import { gradcheck, gradcheckSpec, gradcheckSpecs, type GradcheckSpec } from '../src/ops/gradcheck.ts';
import { relu } from '../src/ops/index.ts';
import { recordOp } from '../src/tensor/index.ts';
import { runCommand, useGpu } from './helpers.ts';

useGpu();

describe('gradcheck', () => {
  it('lists the ops the issue names, and every op passes at its default shapes', async () => {
    const names = gradcheckSpecs().map((s) => s.name);
    for (const n of ['conv2d', 'batchnorm2d', 'maxpool2d', 'avgpool2d', 'linear', 'relu', 'add', 'softmax-cross-entropy', 'dropout']) expect(names).toContain(n);
    const failed: string[] = [];
    for (const spec of gradcheckSpecs()) {
      const r = await gradcheck(spec);
      expect(r.grads.length, spec.name).toBeGreaterThan(0);
      if (!r.pass) failed.push(`${spec.name}: forward ${r.forward.rel}, ${r.grads.map((g) => `${g.input} ${g.rel}`).join(', ')}`);
    }
    expect(failed).toEqual([]);
  });

  it('takes shapes (later defaults follow them) and options', async () => {
    const r = await gradcheck(gradcheckSpec('conv2d')!, { shapes: [[1, 5, 6, 4]], options: { stride: 2, groups: 5 }, seed: 3 });
    expect(r.shapes).toEqual([[1, 5, 6, 4], [20, 1, 3, 3], [20]]);
    expect(r.options).toMatchObject({ stride: 2, groups: 5, padding: 1 });
    expect(r.pass).toBe(true);
    await expect(gradcheck(gradcheckSpec('relu')!, { options: { slope: 1 } })).rejects.toThrow("relu: no option 'slope'");
    await expect(gradcheck(gradcheckSpec('relu')!, { shapes: [[2], [3]] })).rejects.toThrow('relu: 2 shapes for its 1 inputs (x)');
  });

  it('fails a wrong gradient and says which input', async () => {
    // relu whose backward forgets the mask: right forward, wrong gradient where x < 0
    const leaky: GradcheckSpec = {
      ...gradcheckSpec('relu')!,
      name: 'bad-relu',
      run: ([x]) => recordOp('bad-relu', [x], relu(x).detach(), (dy) => [dy]),
    };
    const r = await gradcheck(leaky);
    expect(r.pass).toBe(false);
    expect(r.forward.rel).toBeLessThan(1e-6);
    expect(r.grads).toHaveLength(1);
    expect(r.grads[0].input).toBe('x');
    expect(r.grads[0].rel).toBeGreaterThan(0.5);
    expect(r.grads[0].maxAbs).toBeGreaterThan(0.5);
  });
});

describe('gpunet gradcheck', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gpunet-gradcheck-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('prints the largest errors per input and PASS, with the shapes and options it ran', async () => {
    const { code, out } = await runCommand(gradcheckCommand, ['conv2d', '--shape', '1,2,6,5', '--options', '{"stride":2}', '--seed', '7']);
    expect(code).toBe(0);
    expect(out[0]).toBe('conv2d  x[1,2,6,5] weight[4,2,3,3] bias[4]  stride=2 padding=1 dilation=1 groups=1  seed 7');
    for (const [i, name] of ['forward', 'dx', 'dweight', 'dbias'].entries()) expect(out[i + 1]).toMatch(new RegExp(`^  ${name} +max abs error +\\S+ +relative +\\S+ +ok$`));
    expect(out[5]).toBe('PASS (relative error <= 1e-4)');
  });

  it('checks the custom ops of a module, and fails (exit 1) on a wrong gradient', async () => {
    const good = await runCommand(gradcheckCommand, [join(import.meta.dirname, '..', 'examples', 'custom-ops.ts')]);
    expect(good.code).toBe(0);
    expect(good.out.at(-1)).toBe('3 of 3 ops pass');
    const bad = join(dir, 'bad-op.ts');
    const ops = join(import.meta.dirname, '..', 'src', 'ops', 'index.ts');
    writeFileSync(bad, `import { relu } from ${JSON.stringify(ops)};
import { recordOp } from ${JSON.stringify(join(import.meta.dirname, '..', 'src', 'tensor', 'index.ts'))};
export const spec = { name: 'leaky-grad-relu', inputs: ['x'], shapes: ([x = [4, 5]]) => [x], options: {},
  run: ([x]) => recordOp('leaky-grad-relu', [x], relu(x).detach(), (dy) => [dy]),
  reference: ([x]) => x.map((v) => Math.max(v, 0)) };
`);
    const r = await runCommand(gradcheckCommand, [bad]);
    expect(r.code).toBe(1);
    expect(r.out).toContainEqual(expect.stringMatching(/^  dx +max abs error .* FAIL$/));
    expect(r.out.at(-1)).toMatch(/^FAIL \(relative error > 1e-4\)$/);
  });

  it('lists the ops; bad input is one line', async () => {
    const list = await runCommand(gradcheckCommand, ['--list']);
    expect(list.out).toContainEqual(expect.stringMatching(/^conv2d +x\[2,3,7,5\] weight\[4,3,3,3\] bias\[4\]$/));
    const fail = async (args: string[]) => (await runCommand(gradcheckCommand, args).catch((e: Error) => ({ code: -1, out: [], err: [e.message] }))).err.join(' ');
    expect(await fail(['nope'])).toMatch(/no op 'nope' to check/);
    expect(await fail(['conv2d', '--shape', '2,three'])).toMatch(/--shape must be positive sizes/);
    expect(await fail(['conv2d', '--options', '[1]'])).toMatch(/--options must be a JSON object/);
    expect(await fail(['./missing.mjs'])).toMatch(/missing\.mjs: no such file/);
    writeFileSync(join(dir, 'empty.mjs'), 'export const x = 1;\n');
    expect(await fail([join(dir, 'empty.mjs')])).toMatch(/exports no gradcheck spec/);
    expect(await fail(['conv2d', '--dtype-ref', 'f32'])).toMatch(/--dtype-ref must be one of f64/);
  });
});
