// Drives tools/torch_ref.py: PyTorch (Debian's python3-torch) as the reference no one here wrote.
// Batch many cases into one call: importing torch takes a second or two.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { output } from './binary.ts';

export interface TorchInput {
  shape: readonly number[];
  data: ArrayLike<number>;
  /** compute this input's gradient */
  grad?: boolean;
  /** pass as an int64 tensor (class labels) */
  int?: boolean;
}

export interface TorchCase {
  inputs: Record<string, TorchInput>;
  /** a Python expression over torch, F, nn and the inputs */
  expr: string;
  /** statements run before expr, in the same scope */
  prelude?: string;
  /** gradient of the output: runs backward */
  dy?: ArrayLike<number>;
  /** names from the scope to return after evaluation (e.g. running stats) */
  outputs?: string[];
  dtype?: 'float64' | 'float32';
}

export interface TorchResult {
  out: number[];
  shape: number[];
  grads?: Record<string, number[]>;
  extra: Record<string, number[]>;
}

export const PYTHON = '/usr/bin/python3';

/** Runs `cases` through PyTorch (in a child process that does not block the event loop: see runProcess). */
export async function torchRun(cases: TorchCase[]): Promise<TorchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'gpunet-torch-'));
  try {
    const payload = cases.map((c) => ({
      ...c,
      inputs: Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, { ...v, data: Array.from(v.data) }])),
      dy: c.dy ? Array.from(c.dy) : undefined,
    }));
    writeFileSync(join(dir, 'in.json'), JSON.stringify(payload));
    await output(PYTHON, [join(import.meta.dirname, '..', 'tools', 'torch_ref.py'), join(dir, 'in.json'), join(dir, 'out.json')]);
    return JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8')) as TorchResult[];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Exports torchvision models with tools/export_torchvision.py, two at a time (there are two
 * cores): each job is an output folder (model.onnx, input.bin, logits.bin, meta.json) and the
 * script's arguments after it.
 */
export async function exportTorchvision(jobs: { dir: string; args: string[] }[]): Promise<void> {
  const script = join(import.meta.dirname, '..', 'tools', 'export_torchvision.py');
  for (let i = 0; i < jobs.length; i += 2) {
    await Promise.all(jobs.slice(i, i + 2).map((j) => output(PYTHON, [script, j.dir, ...j.args])));
  }
}

/** A little-endian float32 file (input.bin, logits.bin) as a Float32Array. */
export function readFloats(file: string): Float32Array {
  const b = readFileSync(file);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}
