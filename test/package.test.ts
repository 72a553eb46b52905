// The package as a user gets it: built (npm run build), packed (npm pack), and installed in a fresh
// folder outside the checkout, once from the checkout's path and once from the tarball; then a
// plain .mjs script imports 'gpunet' under Node with no tsx and uses the engine end to end: the
// shaders, onnx.proto and the image loader's worker thread all resolve from the built dist/.
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { output } from './binary.ts';

const checkout = join(import.meta.dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'gpunet-package-'));

// what the script prints, one JSON line: the checks below read it
const SCRIPT = `
import * as gpunet from 'gpunet';
import { join } from 'node:path';

const adapter = await gpunet.init();
const out = { adapter: adapter.name };

// autograd through tensor methods
const x = gpunet.tensor([[1, 2], [3, 4]], { requiresGrad: true });
const y = x.mul(x).sum();
y.backward();
out.y = await y.item();
out.grad = Array.from(await x.grad.toArray());

// a layer, a loss and an optimizer step
gpunet.manualSeed(1);
const net = new gpunet.nn.Sequential(new gpunet.nn.Conv2d(3, 4, 3, { padding: 1 }), new gpunet.nn.ReLU(), new gpunet.nn.Flatten(), new gpunet.nn.Linear(4 * 5 * 5, 2));
const opt = new gpunet.optim.SGD(net.parameters(), { lr: 0.1, momentum: 0.9 });
const losses = [];
for (let step = 0; step < 3; step++) {
  await gpunet.tidy(async () => {
    const loss = gpunet.ops.crossEntropy(net.forward(gpunet.randn([2, 3, 5, 5], { rng: new gpunet.Rng(7) })), [0, 1]);
    opt.zeroGrad();
    loss.backward();
    opt.step();
    losses.push(await loss.item());
  });
}
out.losses = losses;

// ONNX out and back in (protobufjs with the packed onnx.proto)
const w = new Float32Array([1, -1, 0.5, 2, 0, 1]);
gpunet.onnx.saveOnnx({
  irVersion: 8, opset: 13, producerName: 'test', metadata: {},
  graph: {
    name: 'g', nodes: [{ name: 'fc', opType: 'Gemm', domain: '', inputs: ['x', 'w'], outputs: ['y'], attrs: { transB: 1 } }],
    initializers: new Map([['w', { name: 'w', dims: [2, 3], dataType: 1, data: w }]]),
    inputs: [{ name: 'x', elemType: 1, shape: [1, 3] }], outputs: [{ name: 'y', elemType: 1, shape: [1, 2] }],
  },
}, join(process.argv[2], 'tiny.onnx'));
const clf = await gpunet.onnx.load(join(process.argv[2], 'tiny.onnx'));
out.onnx = Array.from(await clf.model.forward(gpunet.tensor([[1, 2, 3]])).toArray());

// the image loader's worker thread
const loader = new gpunet.data.ImageLoader([{ path: join(process.argv[2], 'red.png'), label: 0 }], {
  size: 4, batchSize: 1, augment: null, mean: [0, 0, 0], std: [1, 1, 1], shuffle: false, seed: 0, workers: 1,
});
for await (const batch of loader.epoch(0)) out.pixels = Array.from(batch.images.slice(0, 2)).concat(Array.from(batch.images.slice(16, 18)));
await loader.close();
console.log(JSON.stringify(out));
`;

function run(cmd: string, args: string[], cwd: string): Promise<string> {
  // no NODE_OPTIONS: vitest's own loader hooks must not reach the child, which runs plain Node
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  return output(cmd, args, { cwd, env });
}

/** A fresh folder with `pkg` installed from npm's cache, and the script beside it. Installing the
 *  checkout's folder would run its `prepare` (npm run build) again: beforeAll just ran it. */
async function install(name: string, pkg: string): Promise<string> {
  const dir = join(work, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `try-${name}`, private: true, type: 'module' }));
  await run('npm', ['install', pkg, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', '--ignore-scripts'], dir);
  writeFileSync(join(dir, 'script.mjs'), SCRIPT);
  return dir;
}

async function runScript(dir: string) {
  const lines = (await run(process.execPath, ['script.mjs', work], dir)).trim().split('\n');
  return JSON.parse(lines[lines.length - 1]);
}

describe('the installed package', () => {
  let tarball = '';
  beforeAll(async () => {
    await sharp({ create: { width: 4, height: 4, channels: 3, background: { r: 255, g: 0, b: 0 } } }).png().toFile(join(work, 'red.png'));
    await run('npm', ['run', 'build', '--silent'], checkout);
    await run('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', work], checkout);
    tarball = join(work, readdirSync(work).find((f) => f.endsWith('.tgz'))!);
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  const expectWorks = (out: Record<string, unknown>) => {
    expect(out.y).toBe(30);
    expect(out.grad).toEqual([2, 4, 6, 8]);
    const losses = out.losses as number[];
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[2]).toBeLessThan(losses[0]); // the same batch three times: SGD lowers its loss
    expect(out.onnx).toEqual([1 - 2 + 1.5, 2 + 0 + 3]); // x w^T
    expect(out.pixels).toEqual([1, 1, 0, 0]); // red: R plane ones, G plane zeros
  };

  it('from the checkout folder', async () => {
    expectWorks(await runScript(await install('folder', checkout)));
  });

  it('from the npm pack tarball, which carries dist, shaders and no sources', async () => {
    const dir = await install('tarball', tarball);
    const files = readdirSync(join(dir, 'node_modules', 'gpunet'));
    expect(files).toEqual(expect.arrayContaining(['dist', 'shaders', 'bin', 'package.json']));
    expect(files).not.toContain('src');
    expectWorks(await runScript(dir));
    // the command line runs from the built files too
    expect(await run(process.execPath, [join(dir, 'node_modules', 'gpunet', 'bin', 'gpunet.mjs'), '--help'], dir)).toContain('usage: gpunet');
  });
});
