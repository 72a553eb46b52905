// The gpunet binary as a user runs it, in a child process, for the end-to-end tests.
import { spawn } from 'node:child_process';
import { join } from 'node:path';

export const BIN = join(import.meta.dirname, '..', 'bin', 'gpunet.mjs');

export interface Run {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stderr lines of ours (Dawn and the Vulkan loader print their own warnings there) */
  ours: string[];
}

export const ourLines = (stderr: string): string[] => stderr.split('\n').filter((l) => l.startsWith('gpunet'));

export interface ProcessOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** written to the child's standard input */
  stdin?: string;
  /** ms before the child is killed (SIGTERM) */
  timeout?: number;
  /** sees the output so far after each chunk and may signal the child (the Ctrl-C and kill tests) */
  onStdout?: (soFar: string, child: ReturnType<typeof spawn>) => void;
}

/**
 * Runs `cmd args` to its end without blocking the event loop. Tests never run children
 * synchronously: a vitest worker blocked for 60 s misses the runner's replies, and the run then
 * fails with "Timeout calling onTaskUpdate" though every test passed.
 */
export function runProcess(cmd: string, args: string[], o: ProcessOptions = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], cwd: o.cwd, env: o.env, timeout: o.timeout });
    child.stdin.end(o.stdin ?? '');
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      stdout += s;
      o.onStdout?.(stdout, child);
    });
    child.stderr.setEncoding('utf8').on('data', (s: string) => void (stderr += s));
    child.on('error', reject);
    child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr, ours: ourLines(stderr) }));
  });
}

/** The standard output of `cmd args`, which must exit 0 (else an error with its stderr). */
export async function output(cmd: string, args: string[], o: ProcessOptions = {}): Promise<string> {
  const r = await runProcess(cmd, args, o);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}:\n${r.stderr}`);
  return r.stdout;
}

/** Runs `gpunet args` to its end (`stdin` written to its standard input). */
export function gpunet(args: string[], onStdout?: ProcessOptions['onStdout'], stdin?: string): Promise<Run> {
  return runProcess(process.execPath, [BIN, ...args], { onStdout, stdin });
}
