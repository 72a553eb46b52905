// The gpunet command as a user runs it: help, adapter listing, and one-line errors.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const BIN = join(import.meta.dirname, '..', 'bin', 'gpunet.mjs');

function gpunet(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
  // Dawn and the Vulkan loader print their own warnings on stderr; ours are the lines starting 'gpunet'
  const ours = r.stderr.split('\n').filter((l) => l.startsWith('gpunet'));
  return { status: r.status, stdout: r.stdout, ours, stderr: r.stderr };
}

describe('gpunet command', () => {
  it('--help lists the subcommands, each with its own --help', () => {
    const r = gpunet(['--help']);
    expect(r.status).toBe(0);
    for (const cmd of ['train', 'lr-find', 'data', 'show-batch', 'predict', 'eval', 'summary', 'import', 'onnx-test', 'devices', 'demo']) {
      expect(r.stdout).toMatch(new RegExp(`^  ${cmd}\\s`, 'm'));
      const sub = gpunet([cmd, '--help']);
      expect(sub.status).toBe(0);
      expect(sub.stdout).toMatch(new RegExp(`^usage: gpunet ${cmd}`));
    }
  });

  it('devices names the adapter and its features', () => {
    const r = gpunet(['devices']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^0: \S/);
    expect(r.stdout).toMatch(/features: .*timestamp-query/);
  });

  it('without an adapter: one line saying what to install, exit code 2', () => {
    const r = gpunet(['devices'], { VK_ICD_FILENAMES: '/nonexistent/icd.json' });
    expect(r.status).toBe(2);
    expect(r.ours).toEqual([expect.stringMatching(/^gpunet devices: no WebGPU adapter found: install a Vulkan driver/)]);
    expect(r.stderr).not.toMatch(/\n\s+at .*\.ts:\d+/); // no stack trace of ours
  });

  it('bad options and unknown commands are one-line errors', () => {
    const unknown = gpunet(['frobnicate']);
    expect(unknown.status).toBe(1);
    expect(unknown.ours).toEqual(["gpunet: unknown command 'frobnicate' (see gpunet --help)"]);
    const badOpt = gpunet(['demo', '--epochs', 'many']);
    expect(badOpt.status).toBe(1);
    expect(badOpt.ours).toEqual(["gpunet demo: --epochs must be a positive number, got 'many'"]);
    const badDevice = gpunet(['demo', '--device', 'no-such-gpu']);
    expect(badDevice.status).toBe(1);
    expect(badDevice.ours[0]).toMatch(/^gpunet demo: --device no-such-gpu: no such adapter \(have 0: .*\); list them with `gpunet devices`/);
  });
});
