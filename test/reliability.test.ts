// Nothing lost, nothing silent: the gpunet binary against a corpus built here — a run killed at a
// random step, damaged and hostile training-state files, a FIFO, a socket and a link loop in a data
// folder, names with control characters, a labels file reaching outside its folder, a model whose
// logits overflow, a full disk (a small tmpfs, or where none can be mounted, writes that fail with
// ENOSPC), work larger than the adapter allows. For each: the exit code, exactly one error line
// naming the file and the fix, no stack trace, no NaN, the previous files intact byte for byte.
// The model is a tiny ONNX graph fine-tuned at 32 px, so each run takes seconds.
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataType, type OnnxModel } from '../src/onnx/ir.ts';
import { encodeOnnx } from '../src/onnx/write.ts';
import { Rng } from '../src/tensor/index.ts';
import { loadTrainingState } from '../src/train/checkpoint.ts';
import { STATE_FILE } from '../src/train/trainer.ts';
import { BIN, gpunet, ourLines, runProcess, type Run } from './binary.ts';

/** Exit 1 with exactly one line of ours, matching `line`; no stack trace, no NaN anywhere else
 *  (the line itself may name a NaN it refuses). */
function expectRefusal(r: Pick<Run, 'status' | 'stdout' | 'stderr'>, line: RegExp | string, what = ''): void {
  expect(r.status, `${what}\n${r.stderr}`).toBe(1);
  const ours = ourLines(r.stderr);
  expect(ours, what).toHaveLength(1);
  if (typeof line === 'string') expect(ours[0], what).toBe(line);
  else expect(ours[0], what).toMatch(line);
  expect(r.stderr, what).not.toMatch(/\n\s+at /);
  expect(`${r.stdout}${r.stderr.replace(ours[0], '')}`, what).not.toMatch(/NaN/);
}

const sha = (file: string) => readFileSync(file).toString('base64');

let tmp: string;
let data: string; // train/ (6 per class) and valid/ (2 per class) of 3 colour classes
let tiny: string; // a tiny ONNX classifier: conv 3x3 - relu - conv 1x1 - global pool - flatten
let ref: string; // the uninterrupted run every resumed one must equal

const CLASSES: Record<string, [number, number, number]> = { red: [210, 50, 40], green: [50, 190, 70], blue: [40, 70, 210] };

/** A 32-40 px image of one colour with uniform noise of +-40 per channel, seeded. */
async function writeImage(path: string, rgb: [number, number, number], rng: Rng): Promise<void> {
  const w = 32 + Math.floor(rng.uniform(0, 9));
  const h = 32 + Math.floor(rng.uniform(0, 9));
  const px = Buffer.from(Uint8Array.from({ length: w * h * 3 }, (_, i) => Math.max(0, Math.min(255, Math.round(rgb[i % 3] + rng.uniform(-40, 40))))));
  mkdirSync(dirname(path), { recursive: true });
  await sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toFile(path);
}

function tinyClassifier(rng: Rng, scale = 0.5): OnnxModel {
  const t = (name: string, dims: number[]) => ({ name, dims, dataType: DataType.FLOAT, data: Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => rng.uniform(-scale, scale)) });
  const node = (opType: string, inputs: string[], output: string, attrs = {}) => ({ name: output, opType, domain: '', inputs, outputs: [output], attrs });
  return {
    irVersion: 8, opset: 13, producerName: 'reliability test', metadata: {},
    graph: {
      name: 'tiny',
      nodes: [node('Conv', ['x', 'w1', 'b1'], 'c1', { pads: [1, 1, 1, 1] }), node('Relu', ['c1'], 'r1'), node('Conv', ['r1', 'w2', 'b2'], 'c2'), node('GlobalAveragePool', ['c2'], 'p'), node('Flatten', ['p'], 'logits', { axis: 1 })],
      initializers: new Map([t('w1', [8, 3, 3, 3]), t('b1', [8]), t('w2', [5, 8, 1, 1]), t('b2', [5])].map((x) => [x.name, x])),
      inputs: [{ name: 'x', elemType: DataType.FLOAT, shape: ['batch', 3, 'height', 'width'] }],
      outputs: [{ name: 'logits', elemType: DataType.FLOAT, shape: ['batch', 5] }],
    },
  };
}

/** A small, fast run: 18 training images in batches of 4 (5 steps per epoch), 4 epochs. */
const train = (out: string, ...more: string[]) => [
  'train', '--data', data, '--weights', tiny, '--size', '32', '--augment', 'none', '--workers', '1', '--freeze-epochs', '0',
  '--batch-size', '4', '--lr', '0.05', '--epochs', '4', '--seed', '7', '--out', out, ...more,
];

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'gpunet-reliability-'));
  data = join(tmp, 'data');
  const rng = new Rng(11);
  for (const [cls, rgb] of Object.entries(CLASSES)) {
    for (let i = 0; i < 6; i++) await writeImage(join(data, 'train', cls, `${cls}_${i}.png`), rgb, rng);
    for (let i = 0; i < 2; i++) await writeImage(join(data, 'valid', cls, `${cls}_v${i}.png`), rgb, rng);
  }
  tiny = join(tmp, 'tiny.onnx');
  writeFileSync(tiny, encodeOnnx(tinyClassifier(new Rng(5))));
  ref = join(tmp, 'ref');
  const r = await gpunet(train(ref));
  expect(r.status, r.stderr).toBe(0);
});

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('nothing lost', () => {
  it('SIGKILL at a random step, then --resume, ends with the uninterrupted run\'s weights exactly; SIGTERM saves as Ctrl-C does', async () => {
    const reference = loadTrainingState(join(ref, STATE_FILE)).weights;
    for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
      const out = join(tmp, `run-${signal}`);
      // the signal arrives some milliseconds after a random epoch's line: in the next epoch, or while it saves
      const epoch = 1 + Math.floor(Math.random() * 3);
      const delay = Math.floor(Math.random() * 40);
      const what = `${signal} ${delay} ms after epoch ${epoch}'s line`;
      let sent = false;
      const r = await gpunet(train(out), (soFar, child) => {
        if (sent || !soFar.includes(`epoch ${epoch}/4 (`)) return;
        sent = true;
        setTimeout(() => child.kill(signal), delay);
      });
      const finished = r.status === 0 && /^best valid accuracy/m.test(r.stdout); // the signal came after the end
      if (signal === 'SIGKILL') expect(r.signal === 'SIGKILL' || finished, what).toBe(true);
      else {
        expect(r.status, `${what}\n${r.stderr}`).toBe(0);
        if (!finished) {
          expect(r.stderr, what).toContain('SIGTERM: stopping after this step and saving');
          expect(r.stdout, what).toMatch(/^stopped (at epoch \d, step \d\/5|after epoch \d): saved; continue with --resume$/m);
        }
      }
      const resumed = await gpunet(existsSync(join(out, STATE_FILE)) ? train(out, '--resume') : train(out));
      expect(resumed.status, `${what}\n${resumed.stderr}`).toBe(0);
      expect(loadTrainingState(join(out, STATE_FILE)).weights, what).toEqual(reference);
      expect(readdirSync(out).filter((f) => f.includes('.tmp')), what).toEqual([]);
    }
  });

  it('a damaged or hostile train-state.bin is one line naming it and the fix; the file is left as it was', async () => {
    const good = readFileSync(join(ref, STATE_FILE));
    const len = good.readUInt32LE(8);
    const header = JSON.parse(good.subarray(12, 12 + len).toString('utf8'));
    const body = good.subarray(12 + Math.ceil(len / 4) * 4);
    const withHeader = (edit: (h: Record<string, unknown>) => void) => {
      const h = structuredClone(header);
      edit(h);
      const text = Buffer.from(JSON.stringify(h));
      const size = Buffer.alloc(4);
      size.writeUInt32LE(text.length);
      return Buffer.concat([good.subarray(0, 8), size, text, Buffer.alloc(Math.ceil(text.length / 4) * 4 - text.length, ' '), body]);
    };
    const nan = Buffer.from(good);
    nan.writeFloatLE(NaN, nan.length - 4);
    const cases: [string, Buffer, RegExp][] = [
      ['torn at 60% (a full disk, before atomic writes)', good.subarray(0, Math.floor(good.length * 0.6)), /: not a gpunet training state \(its header describes \d+ bytes, the file has \d+: torn by a crash or a full disk\); delete it or choose another --out$/],
      ['a momentum buffer count of 2^32-1', withHeader((h) => ((h.optimizerBuffers as Record<string, number>).momentum = 4294967295)), /: not a gpunet training state \(optimizer buffer 'momentum' counts 4294967295 for \d+ weights\); delete it or choose another --out$/],
      ['a NaN optimizer value', nan, /: '[\w.]+' holds NaN at index \d+: the saved run diverged or the file is damaged; delete it or choose another --out$/],
    ];
    for (const [what, bytes, line] of cases) {
      const out = join(tmp, `state-${cases.findIndex((c) => c[0] === what)}`);
      cpSync(ref, out, { recursive: true });
      writeFileSync(join(out, STATE_FILE), bytes);
      const r = await gpunet(train(out, '--resume'));
      expectRefusal(r, new RegExp(`^gpunet train: ${escapeRe(join(out, STATE_FILE))}${line.source}`), what);
      expect(readFileSync(join(out, STATE_FILE)).equals(bytes), what).toBe(true);
    }
  });

  it('a full disk: show-batch, import, eval --json and train fail in one line naming the file; the previous files stay byte for byte, no temporary file stays', async () => {
    const prev = join(tmp, 'prev');
    mkdirSync(prev);
    copyFileSync(join(ref, 'history.png'), join(prev, 'batch.png'));
    copyFileSync(join(ref, 'best.onnx'), join(prev, 'checkpoint.onnx'));
    writeFileSync(join(prev, 'report.json'), '{"samples": 6, "accuracy": 1}\n');
    const commands = (disk: string): [string, string[], string][] => [
      ['show-batch', ['show-batch', '--data', data, '--n', '4', '--size', '32', '--out', join(disk, 'batch.png')], join(disk, 'batch.png')],
      ['import', ['import', '--model', tiny, '--out', join(disk, 'checkpoint.onnx'), '--means', '0,0,0', '--stds', '1,1,1', '--size', '32', '--resize', 'fill'], join(disk, 'checkpoint.onnx')],
      ['eval', ['eval', '--checkpoint', join(ref, 'best.onnx'), '--data', join(data, 'valid'), '--json', join(disk, 'report.json')], join(disk, 'report.json')],
      ['train', train(join(disk, 'run')), join(disk, 'run', '*')], // (whichever file the run writes first)
    ];
    const { results, after } = await onFullDisk(prev, commands);
    for (const [i, [name, , file]] of commands(after.disk).entries()) {
      expectRefusal(results[i], new RegExp(`^gpunet ${name}: ${escapeRe(file).replace('\\*', '[\\w.-]+')}: the disk is full \\(writing [\\d.]+ [kM]B\\): free some space or write elsewhere; nothing was replaced$`), name);
    }
    for (const f of ['batch.png', 'checkpoint.onnx', 'report.json']) expect(sha(join(after.files, f)), f).toBe(sha(join(prev, f)));
    expect(readdirSync(after.files).sort()).toEqual(['batch.png', 'checkpoint.onnx', 'report.json', 'run']);
    expect(readdirSync(join(after.files, 'run'))).toEqual([]);
  });
});

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Runs gpunet `commands` with `prev`'s files on a full disk: a 4 MB tmpfs in a private mount
 * namespace (`unshare`), filled after the files are copied in; where no tmpfs can be mounted, a
 * folder whose writes fail with ENOSPC (test/full-disk.mjs). Returns each run and where the disk's
 * files are afterwards (`disk`: the path the commands named; `files`: a copy to read).
 */
async function onFullDisk(prev: string, commands: (disk: string) => [string, string[], string][]): Promise<{ results: Run[]; after: { disk: string; files: string } }> {
  const disk = join(tmp, 'disk');
  const res = join(tmp, 'disk-results');
  mkdirSync(disk);
  mkdirSync(res);
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const runs = commands(disk).map(([, args], i) => `${q(process.execPath)} ${q(BIN)} ${args.map(q).join(' ')} >${q(join(res, `${i}.out`))} 2>${q(join(res, `${i}.err`))}; echo $? >${q(join(res, `${i}.rc`))}`);
  const tmpfs = spawnSync('unshare', ['-rm', 'sh', '-c', `mount -t tmpfs -o size=4m tmpfs ${q(disk)}`]).status === 0;
  const script = tmpfs
    ? [`mount -t tmpfs -o size=4m tmpfs ${q(disk)} || exit 99`, `cp ${q(prev)}/* ${q(disk)}/`, `dd if=/dev/zero of=${q(join(disk, '.filler'))} bs=4096 2>/dev/null`, ...runs, `rm ${q(join(disk, '.filler'))}`, `cp -a ${q(disk)} ${q(join(res, 'after'))}`]
    : [`cp ${q(prev)}/* ${q(disk)}/`, ...runs, `cp -a ${q(disk)} ${q(join(res, 'after'))}`];
  const env = tmpfs ? process.env : { ...process.env, NODE_OPTIONS: `--import=${join(import.meta.dirname, 'full-disk.mjs')}`, GPUNET_FULL_DISK: disk };
  const sh = await (tmpfs ? runProcess('unshare', ['-rm', 'sh', '-c', script.join('\n')], { env }) : runProcess('sh', ['-c', script.join('\n')], { env }));
  expect(sh.status, sh.stderr).toBe(0);
  const results = commands(disk).map((_, i) => {
    const stderr = readFileSync(join(res, `${i}.err`), 'utf8');
    return { status: Number(readFileSync(join(res, `${i}.rc`), 'utf8')), signal: null, stdout: readFileSync(join(res, `${i}.out`), 'utf8'), stderr, ours: ourLines(stderr) };
  });
  return { results, after: { disk, files: join(res, 'after') } };
}

describe('nothing silent', () => {
  it('a FIFO, a socket, a link loop and control characters in names: listed once, escaped, never blocking; eval --labels stays in its folder', async () => {
    const dir = join(tmp, 'hostile');
    cpSync(data, dir, { recursive: true });
    spawnSync('mkfifo', [join(dir, 'train', 'red', 'pipe.png')]);
    const server = createServer().listen(join(dir, 'train', 'green', 'socket.jpg'));
    await once(server, 'listening');
    symlinkSync('.', join(dir, 'train', 'blue', 'self'));
    const evil = 'evil\nfake row\u001b[31m\u202e.png';
    writeFileSync(join(dir, 'train', 'red', evil), 'not an image');
    copyFileSync(join(dir, 'train', 'red', 'red_0.png'), join(dir, 'train', 'red', 'ok\tname.png'));
    copyFileSync(join(dir, 'train', 'green', 'green_0.png'), join(dir, 'valid', 'green', 'copy.png'));
    try {
      const d = await gpunet(['data', '--data', dir]);
      expect(d.status, d.stderr).toBe(0);
      const escaped = 'evil\\nfake row\\x1b[31m\\u{202e}.png';
      expect(d.stdout).toContain(`  train/red/${escaped}: cannot decode as an image`);
      expect(d.stdout).toContain('  train/red/pipe.png: not a regular file (a FIFO, socket, device or folder)');
      expect(d.stdout).toContain('  train/green/socket.jpg: not a regular file (a FIFO, socket, device or folder)');
      expect(d.stdout).toContain(`  train/blue/self: a link to the folder ${join(dir, 'train', 'blue')}, read already: not followed again`);
      expect(d.stdout).toContain('warning: the same image in two splits: train/green/green_0.png = valid/green/copy.png');
      expect(d.stdout).toMatch(/^ {2}blue {7}6 {6}2$/m); // 6 files, not 6 x 40 through the loop
      expect(d.stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u202e]/);

      const p = await gpunet(['predict', '--checkpoint', join(ref, 'best.onnx'), '--input', join(dir, 'train', 'red'), '--top-k', '1']);
      expect(p.status, p.stderr).toBe(0);
      expect(p.ours).toHaveLength(2);
      expect(p.ours).toContain(`gpunet predict: skipped ${join(dir, 'train', 'red', 'pipe.png')}: not a regular file (a FIFO, socket, device or folder)`);
      expect(p.ours.filter((l) => l.startsWith(`gpunet predict: skipped ${join(dir, 'train', 'red', escaped)}: cannot decode as an image (`))).toHaveLength(1);
      expect(p.stdout).toContain(`${join(dir, 'train', 'red', 'ok\\tname.png')}  `);
      expect(p.stdout.split('\n').filter((l) => l.includes(dir))).toHaveLength(7); // one row per image, none split
      expect(p.stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u202e]/);

      const tsv = join(dir, 'labels.tsv');
      writeFileSync(tsv, 'file\tlabel\nvalid/red/red_v0.png\t2\n../../../../../../etc/passwd\t0\n');
      const e = await gpunet(['eval', '--checkpoint', join(ref, 'best.onnx'), '--labels', tsv]);
      expectRefusal(e, `gpunet eval: --labels ${tsv}:3: '../../../../../../etc/passwd' lies outside ${dir}: eval reads only the images under its data folder (name them relative to it)`);
    } finally {
      server.close();
    }
  });

  it('a checkpoint whose logits overflow: predict says so in one line instead of printing NaN%', async () => {
    const huge = join(tmp, 'huge.onnx');
    const model = tinyClassifier(new Rng(5));
    model.graph.initializers.get('w1')!.data = new Float32Array(8 * 27).fill(3e38);
    writeFileSync(huge, encodeOnnx(model));
    const r = await gpunet(['predict', '--checkpoint', huge, '--input', join(data, 'valid', 'red'), '--means', '0,0,0', '--stds', '1,1,1', '--size', '32', '--resize', 'fill']);
    expectRefusal(r, new RegExp(`^gpunet predict: ${escapeRe(huge)}: the model outputs (NaN|-?Infinity) for ${escapeRe(join(data, 'valid', 'red'))}/red_v\\d\\.png: its weights are broken`));
  });

  it('work larger than the adapter binds: one line naming the op, its shapes and the limit', async () => {
    const devices = await gpunet(['devices']);
    const mib = Number(/storage binding (\d+) MiB/.exec(devices.stdout)![1]);
    // ResNet18's stem writes [1,64,S/2,S/2] floats, 64 S^2 bytes: just more than one binding holds
    const size = 2 * Math.ceil(Math.sqrt((mib * 2 ** 20) / 256)) + 2;
    const r = await gpunet(['summary', '--arch', 'resnet18', '--size', String(size)]);
    expectRefusal(r, new RegExp(`^gpunet summary: conv2d\\.forward x\\[1,3,${size},${size}\\] w\\[64,3,7,7\\] .*: binding \\d needs \\d+ MiB, more than the adapter's maxStorageBufferBindingSize \\(${mib} MiB\\): use smaller images or batches$`));
  });
});
