// The command line's one declarative option table. Each command declares its options once — name,
// aliases, type, range, default, help — and everything else is derived from that declaration: the
// parser (long options, `--name value` and `--name=value`, negative numbers as values), the usage
// table of `--help`, the validation messages and the typed values the command receives.
//
//   const options = {
//     epochs: int({ min: 1, default: 5, help: 'epochs in all' }),   // --epochs N     -> v.epochs: number
//     labelRegex: str({ metavar: 'RE', help: '...' }),              // --label-regex  -> v.labelRegex: string | undefined
//   };
//
// A key is the option's name in camelCase; its flag is the kebab-case spelling (`topK` is `--top-k`),
// and the snake_case spelling of the seeds' scripts (`--top_k`) is accepted too, as are the aliases
// an option lists (`--learning_rate` for `--lr`). An unknown option is answered with the nearest
// known one.
import { UsageError } from './errors.ts';

type Kind = 'flag' | 'value' | 'list';

export interface Opt<T> {
  kind: Kind;
  help: string;
  /** the value's placeholder in the usage table (N, F, DIR, a|b|c) */
  metavar: string;
  /** other spellings, without the dashes (the seeds' `data_dir`, `save_dir`, `learning_rate`);
   *  each is accepted with '-' or '_' between its words */
  aliases: string[];
  /** the value when the option is not given */
  default?: T;
  /** what the usage table says the default is, when it is not a plain value ("the checkpoint's") */
  defaultText?: string;
  required: boolean;
  /** a heading of the usage table the option is listed under */
  group?: string;
  /** the value of a choice given bare (`--augment` alone means `--augment fastai`) */
  implicit?: string;
  /** string -> value; throws UsageError naming `flag` */
  parse(raw: string, flag: string): T;
}

export type Options = Record<string, Opt<unknown>>;
export type Values<O extends Options> = { [K in keyof O]: O[K] extends Opt<infer T> ? T : never };

interface Common {
  help: string;
  aliases?: string[];
  metavar?: string;
  defaultText?: string;
  required?: boolean;
  group?: string;
}

/** T when the option has a default or is required, else T | undefined. */
type Out<T, B> = B extends { default: unknown } ? T : B extends { required: true } ? T : T | undefined;

function opt<T>(kind: Kind, o: Common & { default?: unknown }, metavar: string, parse: (raw: string, flag: string) => T): Opt<T> {
  return {
    kind,
    help: o.help,
    metavar: o.metavar ?? metavar,
    aliases: o.aliases ?? [],
    default: o.default as T | undefined,
    defaultText: o.defaultText,
    required: o.required ?? false,
    group: o.group,
    parse,
  };
}

/** A number as people write it in flags: 1e-3 rather than 0.001. */
export function formatNumber(v: number): string {
  const a = Math.abs(v);
  return a !== 0 && a < 1e-2 ? v.toExponential().replace('e+', 'e') : String(v);
}

interface Range {
  /** value >= min */
  min?: number;
  /** value <= max */
  max?: number;
  /** value > above */
  above?: number;
  /** value < below */
  below?: number;
}

/** The range in words: '>= 1', 'in 1..256', 'in [0, 1)', '> 0'. */
function rangeText(r: Range, integer: boolean): string {
  const lo = r.min !== undefined ? ['>=', r.min] : r.above !== undefined ? ['>', r.above] : null;
  const hi = r.max !== undefined ? ['<=', r.max] : r.below !== undefined ? ['<', r.below] : null;
  const f = (v: unknown) => formatNumber(v as number);
  if (lo && hi) {
    if (integer && lo[0] === '>=' && hi[0] === '<=') return `in ${f(lo[1])}..${f(hi[1])}`;
    return `in ${lo[0] === '>=' ? '[' : '('}${f(lo[1])}, ${f(hi[1])}${hi[0] === '<=' ? ']' : ')'}`;
  }
  if (lo) return `${lo[0]} ${f(lo[1])}`;
  if (hi) return `${hi[0]} ${f(hi[1])}`;
  return '';
}

function inRange(v: number, r: Range): boolean {
  return (r.min === undefined || v >= r.min) && (r.max === undefined || v <= r.max) && (r.above === undefined || v > r.above) && (r.below === undefined || v < r.below);
}

/** A number as typed: finite, not empty (Number('') is 0). */
function toNumber(raw: string): number {
  return raw.trim() === '' ? NaN : Number(raw);
}

/** A switch: present or not. */
export function flag(o: Common): Opt<boolean> {
  return { ...opt('flag', { ...o, default: false }, '', () => true), default: false };
}

/** A string (a path, a pattern, a name). */
export function str<B extends Common & { default?: string }>(o: B): Opt<Out<string, B>> {
  return opt('value', o, 'S', (raw) => raw as Out<string, B>);
}

/** A string that may be given several times (`--input a --input b`). */
export function strings(o: Common): Opt<string[]> {
  return { ...opt('list', { ...o, default: [] }, 'S', (raw) => [raw]), default: [] };
}

/** An integer (a safe one) in a range. */
export function int<B extends Common & Range & { default?: number }>(o: B): Opt<Out<number, B>> {
  const range = rangeText(o, true);
  return opt('value', o, 'N', (raw, flag) => {
    const v = toNumber(raw);
    if (!Number.isSafeInteger(v) || !inRange(v, o)) throw new UsageError(`${flag} must be an integer${range ? ` ${range}` : ''}, got '${raw}'`);
    return v as Out<number, B>;
  });
}

/** A finite number in a range. */
export function num<B extends Common & Range & { default?: number }>(o: B): Opt<Out<number, B>> {
  const range = rangeText(o, false);
  return opt('value', o, 'F', (raw, flag) => {
    const v = toNumber(raw);
    if (!Number.isFinite(v) || !inRange(v, o)) throw new UsageError(`${flag} must be a number${range ? ` ${range}` : ''}, got '${raw}'`);
    return v as Out<number, B>;
  });
}

/** One of a fixed set of words. */
export function choice<const C extends readonly string[], B extends Common & { default?: C[number]; implicit?: C[number] }>(choices: C, o: B): Opt<Out<C[number], B>> {
  const o2 = opt('value', o, choices.join('|'), (raw, flag) => {
    if (!choices.includes(raw)) throw new UsageError(`${flag} must be one of ${choices.join(', ')}, got '${raw}'`);
    return raw as Out<C[number], B>;
  });
  return { ...o2, implicit: o.implicit };
}

/** `count` comma-separated finite numbers (or between count[0] and count[1] of them), each in a range. */
export function numbers<B extends Common & Range & { count: number | [number, number]; default?: number[] }>(o: B): Opt<Out<number[], B>> {
  const [lo, hi] = typeof o.count === 'number' ? [o.count, o.count] : o.count;
  const range = rangeText(o, false);
  const what = `${lo === hi ? lo : `${lo} to ${hi}`} comma-separated number${hi > 1 ? 's' : ''}${range ? ` ${range}` : ''}`;
  return opt('value', o, Array.from({ length: lo }, (_, i) => 'abc'[i] ?? 'x').join(','), (raw, flag) => {
    const xs = raw.split(',').map(toNumber);
    if (xs.length < lo || xs.length > hi || xs.some((x) => !Number.isFinite(x) || !inRange(x, o))) {
      throw new UsageError(`${flag} needs ${what}${o.metavar ? ` (${o.metavar})` : ''}, got '${raw}'`);
    }
    return xs as Out<number[], B>;
  });
}

/** The same options listed under the heading `group` of the usage table. */
export function grouped<O extends Options>(group: string, options: O): O {
  return Object.fromEntries(Object.entries(options).map(([k, o]) => [k, { ...o, group }])) as O;
}

// ---- names and suggestions ----------------------------------------------------------------------

export const kebab = (key: string) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** Levenshtein distance, a transposition counting as one edit (optimal string alignment). */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The candidate nearest to `word` if it is near enough to be a slip (a third of its letters). */
export function nearest(word: string, candidates: Iterable<string>): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/_/g, '-');
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(norm(word), norm(c));
    if (d < bestD) [best, bestD] = [c, d];
  }
  return bestD <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
}

// ---- parsing ------------------------------------------------------------------------------------

export interface Positionals {
  /** their placeholder in the usage line, e.g. 'DIR...' */
  name: string;
  /** at least this many (default 0) */
  min?: number;
}

export interface Parsed<O extends Options> {
  values: Values<O>;
  positionals: string[];
  /** the keys given on the command line (not defaulted) */
  given: Set<keyof O>;
}

/** Every spelling that names an option: its flag, its snake_case form, its aliases. */
export function spellings<O extends Options>(options: O): Map<string, keyof O> {
  const names = new Map<string, keyof O>();
  for (const [key, o] of Object.entries(options)) {
    const k = kebab(key);
    for (const s of [k, ...o.aliases]) for (const spelling of [s, s.replace(/-/g, '_'), s.replace(/_/g, '-')]) names.set(spelling, key);
  }
  return names;
}

/**
 * Parses `args` against `options`. Throws a one-line UsageError for an unknown option (with the
 * nearest known one), a missing or bad value, a missing required option or a stray argument.
 */
export function parseOptions<O extends Options>(command: string, options: O, args: string[], positional?: Positionals): Parsed<O> {
  const names = spellings(options);
  const raw = new Map<keyof O, string[]>();
  const positionals: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--') {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positionals.push(arg);
      continue;
    }
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq < 0 ? body : body.slice(0, eq);
    const inline = eq < 0 ? undefined : body.slice(eq + 1);
    const key = arg.startsWith('--') ? names.get(name) : undefined;
    if (key === undefined) {
      const near = nearest(name, names.keys());
      const hint = near ? `; did you mean --${kebab(String(names.get(near)))}?` : ` (see gpunet ${command} --help)`;
      throw new UsageError(`unknown option ${arg.slice(0, arg.length - body.length)}${name}${hint}`);
    }
    const o = options[key];
    const flagName = `--${kebab(String(key))}`;
    let value: string;
    if (o.kind === 'flag') {
      if (inline !== undefined) throw new UsageError(`${flagName} takes no value, got '${arg}'`);
      value = '';
    } else if (inline !== undefined) {
      value = inline;
    } else if (o.implicit !== undefined && (i + 1 >= args.length || args[i + 1].startsWith('-') || (positional && !o.metavar.split('|').includes(args[i + 1])))) {
      // bare: the next argument is another option (or, for a command taking positionals, not a choice)
      value = o.implicit;
    } else {
      // the next argument is the value, whatever it looks like (`--seed -1`), unless it is an option
      if (i + 1 >= args.length || args[i + 1].startsWith('--')) throw new UsageError(`${flagName} needs a value (${o.metavar})`);
      value = args[++i];
    }
    raw.set(key, [...(o.kind === 'list' ? (raw.get(key) ?? []) : []), value]);
  }
  if (positionals.length && !positional) {
    throw new UsageError(`unexpected argument '${positionals[0]}' (options start with --; see gpunet ${command} --help)`);
  }
  if (positional && positionals.length < (positional.min ?? 0)) {
    throw new UsageError(`name at least ${positional.min === 1 ? 'one' : positional.min} ${positional.name.replace(/\.\.\.$/, '')} (see gpunet ${command} --help)`);
  }
  const values: Record<string, unknown> = {};
  for (const [key, o] of Object.entries(options)) {
    const flagName = `--${kebab(key)}`;
    const given = raw.get(key);
    if (given === undefined) {
      if (o.required) throw new UsageError(`${flagName} ${o.metavar} is required (see gpunet ${command} --help)`);
      values[key] = o.default;
    } else if (o.kind === 'list') values[key] = given;
    else values[key] = o.parse(given[given.length - 1], flagName);
  }
  return { values: values as Values<O>, positionals, given: new Set(raw.keys()) };
}

// ---- the usage table ----------------------------------------------------------------------------

const WIDTH = 100;

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines.length ? lines : [''];
}

function defaultOf(o: Opt<unknown>): string | undefined {
  if (o.defaultText !== undefined) return o.defaultText;
  const d = o.default;
  if (d === undefined || o.kind === 'flag' || (Array.isArray(d) && d.length === 0)) return undefined;
  if (typeof d === 'number') return formatNumber(d);
  if (Array.isArray(d)) return d.map((x) => (typeof x === 'number' ? formatNumber(x) : String(x))).join(',');
  return String(d);
}

/** The options as one table: `--flag METAVAR  help (default X)`, under their group headings. */
export function optionTable(options: Options): string[] {
  const entries = Object.entries(options);
  const left = entries.map(([key, o]) => `--${kebab(key)}${o.kind === 'flag' ? '' : o.implicit !== undefined ? ` [${o.metavar}]` : ` ${o.metavar}`}`);
  const col = Math.min(24, Math.max(...left.map((l) => l.length))) + 4;
  const groupOf = (o: Opt<unknown>) => o.group ?? 'options';
  const groups = [...new Set(entries.map(([, o]) => groupOf(o)))];
  const out: string[] = [];
  for (const g of groups) {
    out.push(...(out.length ? [''] : []), `${g}:`);
    entries.forEach(([, o], i) => {
      if (groupOf(o) !== g) return;
      const d = defaultOf(o);
      const help = `${o.help}${d !== undefined ? ` (default: ${d})` : ''}${o.required ? ' (required)' : ''}`;
      const lines = wrap(help, WIDTH - col);
      const head = `  ${left[i]}`;
      if (head.length + 2 <= col) out.push(`${head.padEnd(col)}${lines[0]}`, ...lines.slice(1).map((l) => `${' '.repeat(col)}${l}`));
      else out.push(head, ...lines.map((l) => `${' '.repeat(col)}${l}`));
    });
  }
  const aliases = entries.flatMap(([key, o]) => o.aliases.map((a) => `--${a} (--${kebab(key)})`));
  // the seeds' scripts spell two-word options with '_' (predict.py --top_k): a few of this command's, as examples
  const snake = entries.map(([key]) => kebab(key)).filter((k) => k.includes('-')).map((k) => `--${k.replace(/-/g, '_')}`);
  const examples = `${snake.slice(0, 3).join(', ')}${snake.length > 3 ? ', ...' : ''}`;
  if (aliases.length || snake.length) {
    const also = [...aliases, ...(snake.length ? [`any --two-word option spelled --two_word (${examples})`] : [])];
    out.push('', ...wrap(`also accepted: ${also.join(', ')}`, WIDTH - 2).map((l, i) => (i ? `  ${l}` : l)));
  }
  return out;
}
