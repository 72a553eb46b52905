// A gpunet command: its name, its option table (src/cli/options.ts) and what it runs. The usage
// text of `--help` and the parser are derived from the table, so an option is written once.
import { type Options, optionTable, parseOptions, type Positionals, type Values } from './options.ts';

export interface Command {
  name: string;
  summary: string;
  usage: string;
  options: Options;
  /** parses `args` against the table (UsageError on bad input) and runs */
  run(args: string[]): Promise<number>;
}

export interface CommandSpec<O extends Options> {
  name: string;
  /** one line for `gpunet --help` */
  summary: string;
  /** the usage line after `gpunet NAME`, e.g. '--data DIR [options]' */
  synopsis: string;
  /** what the command does, a paragraph or two (already wrapped) */
  description: string;
  options: O;
  positionals?: Positionals;
  /** text after the option table: notes, examples */
  notes?: string;
  run(values: Values<O>, args: { positionals: string[]; given: Set<keyof O> }): Promise<number>;
}

export function defineCommand<O extends Options>(spec: CommandSpec<O>): Command {
  const usage = [
    `usage: gpunet ${spec.name} ${spec.synopsis}`,
    '',
    spec.description.trim(),
    '',
    ...optionTable(spec.options),
    ...(spec.notes ? ['', spec.notes.trim()] : []),
  ].join('\n');
  return {
    name: spec.name,
    summary: spec.summary,
    usage,
    options: spec.options,
    run(args) {
      const { values, positionals, given } = parseOptions(spec.name, spec.options, args, spec.positionals);
      return spec.run(values, { positionals, given });
    },
  };
}
