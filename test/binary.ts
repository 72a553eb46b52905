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

/**
 * Runs `gpunet args` to its end. `onStdout` sees the output so far after each chunk and may signal
 * the child (the Ctrl-C and kill tests); `stdin` is written to its standard input.
 */
export function gpunet(args: string[], onStdout?: (soFar: string, child: ReturnType<typeof spawn>) => void, stdin?: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdin.end(stdin ?? '');
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      stdout += s;
      onStdout?.(stdout, child);
    });
    child.stderr.setEncoding('utf8').on('data', (s: string) => void (stderr += s));
    child.on('error', reject);
    child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr, ours: ourLines(stderr) }));
  });
}
