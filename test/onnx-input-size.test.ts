// The input side of an ONNX file that records no preprocessing (a foreign export): the fixed side its
// graph input declares is the default of summary, predict, eval and train --weights (not 224), a
// --size a convolutional graph runs at is taken, and one the graph does not run at (a Flatten into
// a fixed Gemm) is refused in one line naming the file and the declared side. (The fine-tuning run
// also shows a graph's layer groups named by their nodes.)
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evalCommand } from '../src/cli/eval.ts';
import { predictCommand } from '../src/cli/predict.ts';
import { summaryCommand } from '../src/cli/summary.ts';
import { DataType, type OnnxModel } from '../src/onnx/ir.ts';
import { loadClassifier } from '../src/onnx/load.ts';
import { saveOnnx } from '../src/onnx/write.ts';
import { Rng } from '../src/tensor/index.ts';
import { gpunet } from './binary.ts';
import { runCommand, useGpu } from './helpers.ts';
import { exportTorchvision } from './torch.ts';

useGpu();

const SIZE = 48;
const dir = mkdtempSync(join(tmpdir(), 'gpunet-input-size-'));
const squeezenet = join(dir, 'squeezenet', 'model.onnx');
const flat = join(dir, 'flat.onnx');
const data = join(dir, 'data');
const NORMALIZATION = ['--means', '0.5,0.5,0.5', '--stds', '0.25,0.25,0.25', '--resize', 'fill'];

/** Conv 3x3 (pad 1) -> Flatten -> Gemm over 4x8x8 features: runs only on [N, 3, 8, 8]. */
function flatGraph(): OnnxModel {
  const rng = new Rng(3);
  const t = (name: string, dims: number[]) => ({ name, dims, dataType: DataType.FLOAT, data: Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => rng.uniform(-0.5, 0.5)) });
  const inits = [t('conv.w', [4, 3, 3, 3]), t('conv.b', [4]), t('fc.w', [5, 4 * 8 * 8]), t('fc.b', [5])];
  const node = (opType: string, inputs: string[], output: string, attrs = {}) => ({ name: output, opType, domain: '', inputs, outputs: [output], attrs });
  return {
    irVersion: 8, opset: 13, producerName: 'gpunet-test', metadata: {},
    graph: {
      name: 'flat',
      nodes: [node('Conv', ['input', 'conv.w', 'conv.b'], 'c', { pads: [1, 1, 1, 1] }), node('Flatten', ['c'], 'f', { axis: 1 }), node('Gemm', ['f', 'fc.w', 'fc.b'], 'logits', { transB: 1 })],
      initializers: new Map(inits.map((x) => [x.name, x])),
      inputs: [{ name: 'input', elemType: DataType.FLOAT, shape: ['batch', 3, 8, 8] }],
      outputs: [{ name: 'logits', elemType: DataType.FLOAT, shape: ['batch', 5] }],
    },
  };
}

beforeAll(async () => {
  // PyTorch's export declares input [batch, 3, 48, 48]
  await exportTorchvision([{ dir: join(dir, 'squeezenet'), args: ['--arch', 'squeezenet1_1', '--seed', '4', '--classes', '3', '--size', String(SIZE), '--batch', '1'] }]);
  saveOnnx(flatGraph(), flat);
  for (const [s, split] of ['train', 'valid'].entries()) {
    for (const [k, cls] of ['0', '2'].entries()) {
      mkdirSync(join(data, split, cls), { recursive: true });
      for (let i = 0; i < 2; i++) {
        const px = Buffer.alloc(20 * 20 * 3, (k ? 200 : 40) + 10 * (2 * s + i));
        await sharp(px, { raw: { width: 20, height: 20, channels: 3 } }).png().toFile(join(data, split, cls, `${cls}_${i}.png`));
      }
    }
  }
}, 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The first conv row of a summary: squeezenet1_1's 3x3 stride-2 stem gives (side - 3) / 2 + 1. */
const stemRow = (out: string[]) => out.find((l) => /\(Conv\)/.test(l));

describe('the declared input side of a foreign ONNX file', () => {
  it('summary plans at the declared side, takes a --size a convolutional graph runs at', async () => {
    const r = await runCommand(summaryCommand, ['--model', squeezenet]);
    expect(r.code).toBe(0);
    expect(stemRow(r.out)).toMatch(/\(None, 64, 23, 23\)/);
    const at96 = await runCommand(summaryCommand, ['--model', squeezenet, '--size', '96']);
    expect(stemRow(at96.out)).toMatch(/\(None, 64, 47, 47\)/);
    const c = await loadClassifier(squeezenet);
    expect(c.declaredSize).toBe(SIZE);
    c.model.release();
  });

  it('a --size the graph does not run at is refused in one line naming the file and the declared side', async () => {
    const r = await runCommand(summaryCommand, ['--model', flat]);
    expect(r.code).toBe(0);
    expect(r.out.join('\n')).toMatch(/\(Gemm\)\s+\(None, 5\)\s+1,285$/m);
    const refusal = `${flat}: its input 'input' is declared [N, 3, 8, 8] and the graph does not run at 16 px`;
    await expect(runCommand(summaryCommand, ['--model', flat, '--size', '16'])).rejects.toThrow(refusal);
    const cli = await gpunet(['predict', '--checkpoint', flat, '--input', join(data, 'valid', '0', '0_0.png'), ...NORMALIZATION, '--size', '16']);
    expect(cli.status).toBe(1);
    expect(cli.ours).toHaveLength(1);
    expect(cli.ours[0]).toContain(refusal);
    expect(cli.ours[0]).toMatch(/: use --size 8$/);
  });

  it('predict and eval need no --size for it; train --weights builds its new head at it', async () => {
    const p = await runCommand(predictCommand, ['--checkpoint', squeezenet, '--input', join(data, 'valid', '0'), ...NORMALIZATION, '--top-k', '1']);
    expect(p.code).toBe(0);
    expect(p.out.filter((l) => /0_\d\.png\s+1\s+[012]\s/.test(l))).toHaveLength(2);
    const e = await runCommand(evalCommand, ['--checkpoint', squeezenet, '--data', join(data, 'valid'), ...NORMALIZATION]);
    expect(e.code).toBe(0);
    expect(e.out.join('\n')).toMatch(/^samples: 4 /m);
    // without the size a foreign file needs the other three, and names only them
    await expect(runCommand(predictCommand, ['--checkpoint', squeezenet, '--input', join(data, 'valid', '0')])).rejects.toThrow(/pass --means --stds --resize \(/);

    const t = await gpunet(['train', '--data', data, '--weights', squeezenet, '--epochs', '1', '--freeze-epochs', '1', '--batch-size', '4', '--augment', 'none', '--workers', '1', '--out', join(dir, 'run')]);
    expect(t.ours).toEqual([]);
    expect(t.status).toBe(0);
    expect(t.stdout).toMatch(new RegExp(`^training model\\.onnx with a new 2-class head at ${SIZE} px`, 'm'));
    // the rates per layer group name the graph nodes each group's weights are read by
    const nodes = (n: string) => `nodes ${n} of (\\d+) \\((features\\.\\d+/[\\w./]+)…(features\\.\\d+/[\\w./]+)\\)`;
    const phase = t.stdout.match(new RegExp(`^phase head, epoch 1 \\(onecycle\\): peak lr backbone ${nodes('1-(\\d+)')} frozen, backbone ${nodes('(\\d+)-(\\d+)')} frozen, head \\S+$`, 'm'));
    expect(phase, t.stdout).not.toBeNull();
    expect(phase![3]).toBe('features.0/Conv');
    // the halves meet between two nodes: no conv has its weight in one group and its bias in the other
    expect(Number(phase![5])).toBeGreaterThan(Number(phase![1]));

  }, 120_000);
});
