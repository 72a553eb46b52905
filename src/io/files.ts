// Every file gpunet writes — checkpoints, the training state, history, PNGs, JSON reports — goes
// through writeFileAtomic: the bytes go to a temporary file in the target's folder, all of them
// (a short write is continued, never ignored), flushed to disk, then renamed over the target, and
// the folder flushed. A failure at any point (a full disk, a crash, a kill) leaves the previous
// file as it was, and the temporary file is removed — or, after a kill, swept by the next process
// that writes into that folder (sweepStaleTemps). Failures users can fix (full disk, read-only or
// forbidden folder, a folder where a file should be) are a FileError: one line naming the path and
// the fix. Files gpunet reads go through readRegularFile, which refuses FIFOs and devices (a read
// would block forever). This file knows nothing of tensors: every layer may use it.
import * as fs from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

/** A file or folder that cannot be written as asked; the message is one line naming it and the fix. */
export class FileError extends Error {
  constructor(readonly path: string, readonly reason: string) {
    super(`${path}: ${reason}`);
    this.name = 'FileError';
  }
}

/** The write(2) of writeFileAtomic: returns the bytes written (possibly fewer than asked). Tests
 *  replace it to simulate short writes, a full disk or a crash. */
export type WriteChunk = (fd: number, data: Uint8Array, offset: number, length: number) => number;

const writeChunk: WriteChunk = (fd, data, offset, length) => fs.writeSync(fd, data, offset, length);

/** The temporary file beside `path` this process writes first: `.NAME.PID.MILLISECONDS.tmp`. */
function tempPath(path: string): string {
  // (a name near the 255-byte limit must still leave room for the suffix)
  return join(dirname(path), `.${basename(path).slice(0, 200)}.${process.pid}.${Date.now()}.tmp`);
}

/** Temporary files of gpunet's writers, current and earlier names, with the writer's pid. */
const TEMP_NAMES = [/^\..+\.(\d+)\.\d{13}\.tmp$/, /^\..+\.(\d+)\.tmp$/, /^.+\.tmp-(\d+)$/];

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // alive, another user's
  }
}

const swept = new Set<string>();

/**
 * Removes the temporary files a killed gpunet process left in `dir` (their writer's pid is gone).
 * Runs once per folder per process; returns what it removed, with the bytes freed.
 */
export function sweepStaleTemps(dir: string): { removed: string[]; bytes: number } {
  const out = { removed: [] as string[], bytes: 0 };
  if (swept.has(dir)) return out;
  swept.add(dir);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of names) {
    const pid = TEMP_NAMES.map((re) => re.exec(name)?.[1]).find((p) => p !== undefined);
    if (pid === undefined || Number(pid) === process.pid || isAlive(Number(pid))) continue;
    const p = join(dir, name);
    try {
      const st = fs.lstatSync(p);
      if (!st.isFile()) continue;
      fs.rmSync(p);
      out.removed.push(p);
      out.bytes += st.size;
    } catch {
      // gone already, or not ours to remove
    }
  }
  return out;
}

function megabytes(bytes: number): string {
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1e3))} kB`;
}

/** The nearest existing ancestor of `path` that is not a folder (why ENOTDIR/EEXIST happened). */
function fileInTheWay(path: string): string | null {
  for (let p = path; ; p = dirname(p)) {
    try {
      if (!fs.statSync(p).isDirectory()) return p;
    } catch {
      // missing: look further up
    }
    if (dirname(p) === p) return null;
  }
}

/** The one-line FileError for a failed write or mkdir of `path` (`bytes`: the size being written). */
export function fileError(path: string, e: unknown, bytes?: number): FileError {
  const code = (e as NodeJS.ErrnoException)?.code;
  const size = bytes === undefined ? '' : ` (writing ${megabytes(bytes)})`;
  const kept = 'nothing was replaced';
  switch (code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return new FileError(path, `the disk is full${size}: free some space or write elsewhere; ${kept}`);
    case 'EROFS':
      return new FileError(path, `the file system is read-only: write elsewhere; ${kept}`);
    case 'EACCES':
    case 'EPERM':
      return new FileError(path, `permission denied: write elsewhere, or make ${dirname(path)} writable; ${kept}`);
    case 'EISDIR':
      return new FileError(path, 'is a folder: name a file instead');
    case 'ENOTDIR':
    case 'EEXIST': {
      const file = fileInTheWay(path);
      return new FileError(path, `${file ?? 'a part of the path'} is a file, not a folder: choose another path, or move that file away`);
    }
    case 'ENOENT':
      return fs.existsSync(dirname(path))
        ? new FileError(path, `no file can be created in ${dirname(path)}: write elsewhere`) // (/proc, /sys)
        : new FileError(path, `the folder ${dirname(path)} does not exist: create it, or write elsewhere`);
    case 'ENAMETOOLONG':
      return new FileError(path, 'the name is too long for the file system: choose a shorter one');
    default:
      return new FileError(path, `cannot write (${(e as Error)?.message ?? String(e)})`);
  }
}

/**
 * The bytes of the regular file `path`. A FIFO, socket, device or folder (a read would block on it
 * forever, or never end) and a missing or unreadable file are a FileError naming it.
 */
export function readRegularFile(path: string): Buffer {
  const failed = (e: unknown) => {
    const code = (e as NodeJS.ErrnoException)?.code;
    return new FileError(path, code === 'ENOENT' ? 'no such file' : code === 'EACCES' || code === 'EPERM' ? 'permission denied' : `cannot read (${code ?? (e as Error)?.message})`);
  };
  let st: fs.Stats;
  try {
    st = fs.statSync(path);
  } catch (e) {
    throw failed(e);
  }
  if (st.isDirectory()) throw new FileError(path, 'is a folder: name a file');
  if (!st.isFile()) throw new FileError(path, 'not a regular file (a FIFO, socket or device): name a file');
  try {
    return fs.readFileSync(path);
  } catch (e) {
    throw failed(e);
  }
}

/** Creates `dir` (and its parents) if missing; FileError if it cannot be a folder. */
export function ensureDir(dir: string): void {
  // one level at a time: Node's recursive mkdir loops forever where mkdir fails with ENOENT inside
  // an existing folder (/proc)
  const stat = (p: string) => {
    try {
      return fs.statSync(p);
    } catch {
      return undefined; // missing, or below a file
    }
  };
  const missing: string[] = [];
  let p = resolve(dir);
  for (; !stat(p); p = dirname(p)) missing.unshift(p);
  if (!stat(p)!.isDirectory()) throw fileError(dir, Object.assign(new Error(), { code: 'ENOTDIR' }));
  for (const m of missing) {
    try {
      fs.mkdirSync(m);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && stat(m)?.isDirectory()) continue; // made meanwhile
      if (code === 'ENOENT') throw new FileError(dir, `no folder can be created in ${dirname(m)}: write elsewhere`);
      throw fileError(dir, e);
    }
  }
}

/**
 * Replaces `path` with `data`, atomically: either the whole new file is there afterwards or the
 * previous one (or none) is. Throws FileError for a full disk, a read-only or forbidden folder,
 * a folder in the way, a missing folder.
 */
export function writeFileAtomic(path: string, data: Uint8Array | string, write: WriteChunk = writeChunk): void {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const dir = dirname(path);
  sweepStaleTemps(dir);
  try {
    if (fs.statSync(path).isDirectory()) throw fileError(path, Object.assign(new Error(), { code: 'EISDIR' }));
  } catch (e) {
    if (e instanceof FileError) throw e;
    // no such file yet: fine
  }
  const tmp = tempPath(path);
  let fd: number | null = null;
  try {
    fd = fs.openSync(tmp, 'wx');
    for (let done = 0; done < bytes.length; ) {
      const n = write(fd, bytes, done, bytes.length - done);
      if (!(n > 0)) throw Object.assign(new Error(`wrote nothing at byte ${done} of ${bytes.length}`), { code: 'ENOSPC' });
      done += n;
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = null;
    fs.renameSync(tmp, path);
  } catch (e) {
    if (fd !== null) fs.closeSync(fd);
    removeQuietly(tmp);
    throw e instanceof FileError ? e : fileError(path, e, bytes.length);
  }
  syncDir(dir);
}

function removeQuietly(path: string): void {
  try {
    fs.rmSync(path, { force: true });
  } catch {
    // the sweep of the next run removes it
  }
}

/** Flushes a folder's entries (the rename) to disk; where a file system cannot, the rename stands. */
function syncDir(dir: string): void {
  let fd: number | null = null;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // some file systems refuse fsync on a folder
  } finally {
    if (fd !== null) fs.closeSync(fd);
  }
}
