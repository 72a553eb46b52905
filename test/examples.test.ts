// The examples in examples/, each run as a reader runs it (tsx, `import 'gpunet'` resolved to the
// sources by tsconfig.json's paths), at a small size, and their printed results checked.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { loadClassifier } from '../src/onnx/load.ts';
import { useGpu } from './helpers.ts';

useGpu();

const checkout = join(import.meta.dirname, '..');
const out = mkdtempSync(join(tmpdir(), 'gpunet-examples-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

/** stdout of `tsx examples/NAME.ts ARGS` (throws with its stderr on a non-zero exit) */
async function example(name: string, args: string[] = []): Promise<string> {
  const tsx = join(checkout, 'node_modules', 'tsx', 'dist', 'cli.mjs');
  const { stdout } = await promisify(execFile)(process.execPath, [tsx, join('examples', `${name}.ts`), ...args], { cwd: checkout, encoding: 'utf8' });
  return stdout;
}

/** the number after `label` in the output */
const value = (text: string, label: RegExp): number => Number(label.exec(text)?.[1]);

describe('examples', () => {
  it('autograd: micrograd\'s expression on the tape agrees with the chain rule by hand', async () => {
    const text = await example('autograd');
    expect(text).toContain('the tape agrees with the chain rule');
    expect(value(text, /^g\s+(\S+)/m)).toBeCloseTo(24.7041, 3);
    expect(value(text, /^dg\/da\s+(\S+)/m)).toBeCloseTo(138.8338, 2);
    expect(value(text, /^dg\/db\s+(\S+)/m)).toBeCloseTo(645.5773, 2);
  });

  it('linear regression: gradient descent reaches the least-squares solution', async () => {
    const text = await example('linear-regression', ['--steps', '100']);
    expect(value(text, /largest difference (\S+)/)).toBeLessThan(1e-3);
  });

  it('custom ops: swish and a 1-D convolution of its own pass gradcheck and learn the waves', async () => {
    const text = await example('custom-op-train', ['--steps', '150']);
    for (const op of ['swish', 'swish-composed', 'my-conv1d']) expect(text).toContain(`gradcheck ${op}: PASS`);
    expect(value(text, /vs ops\.conv1d: relative difference (\S+)/)).toBeLessThan(1e-5);
    expect(value(text, /test accuracy: (\S+)%/)).toBeGreaterThan(85);
  });

  it('Fashion-MNIST: a small CNN learns from 640 images far above chance (10%)', async () => {
    const text = await example('fashion-mnist', ['--train', '640', '--test', '200', '--epochs', '1', '--batch-size', '32']);
    expect(text).toContain('640 training and 200 test images of 28x28');
    expect(value(text, /test accuracy (\S+)%/)).toBeGreaterThan(50);
  });

  it('fine-tuning hymenoptera through the library writes a checkpoint', async () => {
    const file = join(out, 'hymenoptera.onnx');
    const text = await example('fine-tune-hymenoptera', ['--per-class', '8', '--size', '64', '--epochs', '2', '--out', file]);
    expect(text).toContain('ants, bees: 16 training and 16 validation photos');
    expect(value(text, /best validation accuracy: (\S+)%/)).toBeGreaterThan(50);
    expect(text).toContain(`wrote ${file}`);
    const written = await loadClassifier(file);
    expect(written.classes).toEqual(['ants', 'bees']);
    expect(written.preprocessing).toEqual({ size: 64, mean: [0, 0, 0], std: [1, 1, 1], resize: 'fill' });
    written.model.release();
  });
});
