// gpunet's command line: `gpunet <command> [options]`. Every command has --help. Errors users can
// fix (bad input, no adapter) print one line and exit non-zero, never a stack trace; any other
// error is a bug, printed with its trace and a request to report it (exit 70).
import { readFileSync } from 'node:fs';
import { AdapterSelectError, GpuLimitError, NoAdapterError } from '../gpu/index.ts';
import { DataError } from '../data/folder.ts';
import { ImageError } from '../data/image.ts';
import { FileError } from '../io/files.ts';
import { printable } from '../io/printable.ts';
import { OnnxError } from '../onnx/read.ts';
import { OpError } from '../tensor/index.ts';
import { RunError } from '../train/checkpoint.ts';
import { benchCommand } from './bench.ts';
import { tuneCommand } from './tune.ts';
import { demoCommand } from './demo.ts';
import { devicesCommand } from './devices.ts';
import type { Command } from './command.ts';
import { UsageError } from './errors.ts';
import { dataCommand } from './data.ts';
import { evalCommand } from './eval.ts';
import { gradcheckCommand } from './gradcheck.ts';
import { importCommand } from './import.ts';
import { lrFindCommand } from './lr-find.ts';
import { onnxTestCommand } from './onnx-test.ts';
import { nearest } from './options.ts';
import { predictCommand } from './predict.ts';
import { showBatchCommand } from './show-batch.ts';
import { summaryCommand } from './summary.ts';
import { traceCommand } from './trace.ts';
import { trainCommand } from './train.ts';

export type { Command } from './command.ts';

const commands: Command[] = [trainCommand, lrFindCommand, dataCommand, showBatchCommand, predictCommand, evalCommand, summaryCommand, importCommand, onnxTestCommand, gradcheckCommand, traceCommand, benchCommand, tuneCommand, devicesCommand, demoCommand];

function help(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    'usage: gpunet <command> [options]',
    '',
    'A GPU compute engine on WebGPU and the image-classifier tool built on it.',
    '',
    'commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Run `gpunet <command> --help` for a command\'s options; `gpunet --version` for the version.',
  ].join('\n');
}

/** The version in package.json. */
export function version(): string {
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(help());
    return name ? 0 : 1;
  }
  if (name === '--version' || name === '-V' || name === 'version') {
    console.log(`gpunet ${version()}`);
    return 0;
  }
  const cmd = commands.find((c) => c.name === name);
  if (!cmd) {
    const near = nearest(name, commands.map((c) => c.name));
    console.error(`gpunet: unknown command '${name}'${near ? `; did you mean '${near}'?` : ''} (see gpunet --help)`);
    return 1;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(cmd.usage);
    return 0;
  }
  return runCommand(cmd, rest);
}

/**
 * Runs a command to its exit code: errors users can fix as one line (exit 1, 2 without an
 * adapter, a UsageError's own code), anything else as a bug report.
 */
export async function runCommand(cmd: Command, args: string[]): Promise<number> {
  const name = cmd.name;
  // a failure outside the command's own awaits (a worker thread, a stray promise) is a bug too
  const bug = (e: unknown) => process.exit(reportBug(name, e));
  process.on('uncaughtException', bug);
  process.on('unhandledRejection', bug);
  try {
    return await cmd.run(args);
  } catch (e) {
    if (e instanceof NoAdapterError) {
      console.error(`gpunet ${name}: ${printable(e.message)}`);
      return 2;
    }
    if (e instanceof UsageError || e instanceof OpError || e instanceof OnnxError || e instanceof ImageError || e instanceof DataError || e instanceof FileError || e instanceof RunError || e instanceof GpuLimitError || e instanceof AdapterSelectError) {
      console.error(`gpunet ${name}: ${printable((e as Error).message)}`);
      return e instanceof UsageError ? e.code : 1;
    }
    return reportBug(name, e);
  } finally {
    process.off('uncaughtException', bug);
    process.off('unhandledRejection', bug);
  }
}

/** Anything but the errors above is a bug of gpunet's, not a problem with the input: its trace,
 *  and where to send it. Returns the exit code, 70 (EX_SOFTWARE). */
function reportBug(command: string, e: unknown): number {
  console.error(`gpunet ${command}: internal error: ${printable(String((e as Error)?.message ?? e))}`);
  console.error((e as Error)?.stack ?? String(e));
  console.error(`gpunet ${command}: this is a bug in gpunet, not in your input: please report it with the command line and the lines above`);
  return 70;
}
