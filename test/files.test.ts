// The atomic file writer every file gpunet writes goes through (src/io/files.ts): whole files or
// the previous one, never a torn one; short writes continued; a full disk, a folder in the way or
// a missing folder as one line naming the path; temporary files of killed processes swept; reads
// that refuse FIFOs and devices.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ensureDir, FileError, fileError, readRegularFile, sweepStaleTemps, type WriteChunk, writeFileAtomic } from '../src/io/files.ts';

const tmp = () => mkdtempSync(join(tmpdir(), 'gpunet-files-'));

/** A folder holding `state.bin` with known bytes. */
function withPrevious(): { dir: string; file: string; previous: Buffer } {
  const dir = tmp();
  const file = join(dir, 'state.bin');
  const previous = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 37) & 255));
  writeFileAtomic(file, previous);
  return { dir, file, previous };
}

/** write(2) that stores `limit` bytes in all, then fails with ENOSPC, as a full disk does. */
const fullDisk = (limit: number): WriteChunk => {
  let written = 0;
  return (fd, data, offset, length) => {
    if (written >= limit) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    const n = writeSync(fd, data, offset, Math.min(length, limit - written));
    written += n;
    return n;
  };
};

describe('writeFileAtomic', () => {
  it('replaces a file whole; no temporary file stays', () => {
    const { dir, file, previous } = withPrevious();
    expect(readFileSync(file)).toEqual(previous);
    writeFileAtomic(file, 'version 2');
    expect(readFileSync(file, 'utf8')).toBe('version 2');
    expect(readdirSync(dir)).toEqual(['state.bin']);
  });

  it('continues short writes until every byte is written', () => {
    const { file } = withPrevious();
    const data = Buffer.from(Array.from({ length: 3001 }, (_, i) => (i * 11) & 255));
    let calls = 0;
    const oneByteAtATime: WriteChunk = (fd, bytes, offset) => (calls++, writeSync(fd, bytes, offset, Math.min(7, bytes.length - offset)));
    writeFileAtomic(file, data, oneByteAtATime);
    expect(readFileSync(file)).toEqual(data);
    expect(calls).toBe(Math.ceil(3001 / 7));
  });

  it('a full disk (ENOSPC, or a write that stores nothing) keeps the previous file byte for byte and removes the temporary one', () => {
    const { dir, file, previous } = withPrevious();
    const big = new Uint8Array(3_649_060).fill(7);
    const fail = () => writeFileAtomic(file, big, fullDisk(2_101_248));
    expect(fail).toThrow(FileError);
    expect(fail).toThrow(`${file}: the disk is full (writing 3.6 MB): free some space or write elsewhere; nothing was replaced`);
    expect(readFileSync(file)).toEqual(previous);
    expect(readdirSync(dir)).toEqual(['state.bin']);
    expect(() => writeFileAtomic(file, big, () => 0)).toThrow(/the disk is full/);
    expect(readFileSync(file)).toEqual(previous);
    expect(readdirSync(dir)).toEqual(['state.bin']);
  });

  it('a folder where the file should be, a file where a folder should be, a missing folder: one line each', () => {
    const dir = tmp();
    mkdirSync(join(dir, 'out.png'));
    expect(() => writeFileAtomic(join(dir, 'out.png'), 'x')).toThrow(`${join(dir, 'out.png')}: is a folder: name a file instead`);
    writeFileSync(join(dir, 'run'), 'a file, not a run folder');
    const inFile = join(dir, 'run', 'best.onnx');
    expect(() => writeFileAtomic(inFile, 'x')).toThrow(`${inFile}: ${join(dir, 'run')} is a file, not a folder: choose another path, or move that file away`);
    expect(() => ensureDir(join(dir, 'run'))).toThrow(`${join(dir, 'run')}: ${join(dir, 'run')} is a file, not a folder`);
    expect(() => ensureDir(join(dir, 'run', 'deeper'))).toThrow(/is a file, not a folder/);
    const missing = join(dir, 'no-such-folder', 'model.onnx');
    expect(() => writeFileAtomic(missing, 'x')).toThrow(`${missing}: the folder ${join(dir, 'no-such-folder')} does not exist: create it, or write elsewhere`);
    expect(readdirSync(dir).sort()).toEqual(['out.png', 'run']);
  });

  it('a folder or file that cannot be made (in /proc) is one line, not a hang', () => {
    // (Node's recursive mkdir loops forever there)
    expect(() => ensureDir('/proc/gpunet-test/run')).toThrow(new FileError('/proc/gpunet-test/run', 'no folder can be created in /proc: write elsewhere'));
    expect(() => writeFileAtomic('/proc/gpunet-test.png', 'x')).toThrow(new FileError('/proc/gpunet-test.png', 'no file can be created in /proc: write elsewhere'));
  });

  it('read-only and forbidden folders name the path and the fix', () => {
    // (as root, permissions are not enforced: the mapping is checked on the error codes themselves)
    expect(fileError('/r/x.png', Object.assign(new Error(), { code: 'EROFS' })).message).toBe('/r/x.png: the file system is read-only: write elsewhere; nothing was replaced');
    expect(fileError('/r/x.png', Object.assign(new Error(), { code: 'EACCES' })).message).toBe('/r/x.png: permission denied: write elsewhere, or make /r writable; nothing was replaced');
  });
});

describe('readRegularFile', () => {
  it('reads files; a FIFO, a device or a folder (a read would block or never end) and a missing file are one line', () => {
    const dir = tmp();
    writeFileSync(join(dir, 'names.txt'), 'ant\nbee\n');
    expect(readRegularFile(join(dir, 'names.txt')).toString()).toBe('ant\nbee\n');
    spawnSync('mkfifo', [join(dir, 'pipe.tsv')]);
    expect(() => readRegularFile(join(dir, 'pipe.tsv'))).toThrow(`${join(dir, 'pipe.tsv')}: not a regular file (a FIFO, socket or device): name a file`);
    expect(() => readRegularFile('/dev/zero')).toThrow('/dev/zero: not a regular file (a FIFO, socket or device): name a file');
    expect(() => readRegularFile(dir)).toThrow(`${dir}: is a folder: name a file`);
    expect(() => readRegularFile(join(dir, 'missing.onnx'))).toThrow(new FileError(join(dir, 'missing.onnx'), 'no such file'));
  });
});

describe('sweepStaleTemps', () => {
  it("removes the temporary files of dead processes (every writer's naming), not a live process's nor other files", () => {
    const dir = tmp();
    const dead = spawnSync('true').pid!; // exited: its pid is free
    const stale = [`.last.onnx.${dead}.1733140000000.tmp`, `.train-state.bin.${dead}.tmp`, `history.png.tmp-${dead}`];
    const live = [`.best.onnx.${process.ppid}.1733140000000.tmp`, `.best.onnx.${process.pid}.1733140000000.tmp`];
    const others = ['notes.tmp', 'best.onnx', `.hidden.${dead}`];
    for (const name of [...stale, ...live, ...others]) writeFileSync(join(dir, name), 'x'.repeat(10));
    const swept = sweepStaleTemps(dir);
    expect(swept.removed.sort()).toEqual(stale.map((n) => join(dir, n)).sort());
    expect(swept.bytes).toBe(30);
    expect(readdirSync(dir).sort()).toEqual([...live, ...others].sort());
  });

  it('runs at the first write into a folder', () => {
    const dir = tmp();
    const dead = spawnSync('true').pid!;
    writeFileSync(join(dir, `.last.onnx.${dead}.1733140000000.tmp`), 'left by a killed run');
    writeFileAtomic(join(dir, 'last.onnx'), 'new');
    expect(readdirSync(dir)).toEqual(['last.onnx']);
  });
});
