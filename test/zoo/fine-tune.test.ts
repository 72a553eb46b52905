// A modern torchvision backbone through the CLI as a user brings one: `gpunet train --weights
// efficientnet_b0.onnx` (PyTorch's export, random weights, from the zoo's cache) fine-tunes an epoch
// frozen, then one unfrozen with AdamW; predict and eval run the checkpoint, and eval scores
// best.onnx as training did. Random weights are no feature extractor, so this checks the path,
// not what it learns.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readOnnx } from '../../src/onnx/read.ts';
import { gpunet } from '../binary.ts';
import { PYTHON } from '../torch.ts';

const COLOURS: Record<string, [number, number, number]> = { red: [200, 60, 60], green: [60, 200, 60], blue: [60, 60, 200] };
let tmp: string;
let model: string;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'gpunet-zoo-fine-tune-'));
  const script = join(import.meta.dirname, '..', '..', 'tools', 'export_zoo.py');
  const { stdout } = await promisify(execFile)(PYTHON, [script, join(tmpdir(), 'gpunet-zoo'), 'efficientnet_b0:64:2']);
  model = join(stdout.trim(), 'model.onnx');
  let s = 7;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  for (const [split, n] of [['train', 6], ['valid', 3]] as const) {
    for (const [cls, rgb] of Object.entries(COLOURS)) {
      mkdirSync(join(tmp, 'data', split, cls), { recursive: true });
      for (let i = 0; i < n; i++) {
        const px = Buffer.alloc(40 * 40 * 3);
        for (let k = 0; k < px.length; k++) px[k] = Math.max(0, Math.min(255, Math.round(rgb[k % 3] + (next() - 0.5) * 160)));
        await sharp(px, { raw: { width: 40, height: 40, channels: 3 } }).png().toFile(join(tmp, 'data', split, cls, `${cls}_${i}.png`));
      }
    }
  }
}, 300_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('gpunet train --weights efficientnet_b0.onnx', () => {
  it('fine-tunes frozen then unfrozen; predict and eval run the checkpoint', async () => {
    const out = join(tmp, 'run');
    const data = join(tmp, 'data');
    const r = await gpunet(['train', '--data', data, '--weights', model, '--means', '0.5,0.5,0.5', '--stds', '0.25,0.25,0.25', '--size', '64',
      '--epochs', '2', '--freeze-epochs', '1', '--batch-size', '6', '--augment', 'none', '--workers', '1', '--lr', '3e-3', '--opt', 'adamw', '--out', out]);
    expect(r.ours).toEqual([]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^training model\.onnx with a new 3-class head at 64 px/m);
    const epochs = [...r.stdout.matchAll(/^epoch (\d)\/2 \((frozen|unfrozen)\): train loss (\S+) +valid loss (\S+) +accuracy (\S+)%/gm)];
    expect(epochs.map((m) => m[2])).toEqual(['frozen', 'unfrozen']);
    for (const m of epochs) expect(Number.isFinite(Number(m[3])) && Number.isFinite(Number(m[4]))).toBe(true);

    // the unfrozen epoch moved the backbone: the first conv's weight is not the file's any more
    const before = readOnnx(model).graph;
    const after = readOnnx(join(out, 'last.onnx')).graph;
    const firstConv = before.nodes.find((n) => n.opType === 'Conv')!.inputs[1];
    expect(after.initializers.get(firstConv)!.data).not.toEqual(before.initializers.get(firstConv)!.data);

    const best = Math.max(...epochs.map((m) => Number(m[5])));
    const ev = await gpunet(['eval', '--checkpoint', join(out, 'best.onnx'), '--data', join(data, 'valid')]);
    expect(ev.ours).toEqual([]);
    expect(ev.stdout).toMatch(new RegExp(`^samples: 9 +accuracy: ${best.toFixed(2)}%`, 'm'));
    const p = await gpunet(['predict', '--checkpoint', join(out, 'best.onnx'), '--input', join(data, 'valid', 'red'), '--top-k', '2']);
    expect(p.ours).toEqual([]);
    expect(p.status).toBe(0);
    expect(p.stdout.match(/red_\d\.png +1 +(red|green|blue) /g)).toHaveLength(3);
  });
});
