// gpunet's command line: `gpunet <command> [options]`. Every command has --help. Errors users can
// fix (bad input, no adapter) print one line and exit non-zero, never a stack trace.
import { AdapterSelectError, NoAdapterError } from '../gpu/index.ts';
import { DataError } from '../data/folder.ts';
import { ImageError } from '../data/image.ts';
import { FileError } from '../io/files.ts';
import { OnnxError } from '../onnx/read.ts';
import { OpError } from '../tensor/index.ts';
import { RunError } from '../train/checkpoint.ts';
import { demoCommand } from './demo.ts';
import { devicesCommand } from './devices.ts';
import { UsageError } from './errors.ts';
import { dataCommand } from './data.ts';
import { evalCommand } from './eval.ts';
import { importCommand } from './import.ts';
import { lrFindCommand } from './lr-find.ts';
import { onnxTestCommand } from './onnx-test.ts';
import { predictCommand } from './predict.ts';
import { showBatchCommand } from './show-batch.ts';
import { summaryCommand } from './summary.ts';
import { trainCommand } from './train.ts';

export interface Command {
  name: string;
  summary: string;
  usage: string;
  run(args: string[]): Promise<number>;
}

const commands: Command[] = [trainCommand, lrFindCommand, dataCommand, showBatchCommand, predictCommand, evalCommand, summaryCommand, importCommand, onnxTestCommand, devicesCommand, demoCommand];

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
    'Run `gpunet <command> --help` for a command\'s options.',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(help());
    return name ? 0 : 1;
  }
  const cmd = commands.find((c) => c.name === name);
  if (!cmd) {
    console.error(`gpunet: unknown command '${name}' (see gpunet --help)`);
    return 1;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(cmd.usage);
    return 0;
  }
  try {
    return await cmd.run(rest);
  } catch (e) {
    if (e instanceof NoAdapterError) {
      console.error(`gpunet ${name}: ${e.message}`);
      return 2;
    }
    const code = (e as NodeJS.ErrnoException).code;
    if (e instanceof UsageError || e instanceof OpError || e instanceof OnnxError || e instanceof ImageError || e instanceof DataError || e instanceof FileError || e instanceof RunError || e instanceof AdapterSelectError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_'))) {
      console.error(`gpunet ${name}: ${(e as Error).message}`);
      return e instanceof UsageError ? e.code : 1;
    }
    throw e;
  }
}
