// The declarative option table (src/cli/options.ts): what the parser accepts and refuses, the
// typed values it returns, and the usage table derived from the same declaration.
import { describe, expect, it } from 'vitest';
import { trainCommand } from '../src/cli/train.ts';
import { predictCommand } from '../src/cli/predict.ts';
import { choice, editDistance, flag, int, nearest, num, numbers, optionTable, parseOptions, str, strings } from '../src/cli/options.ts';

const OPTIONS = {
  epochs: int({ min: 1, max: 100, default: 5, help: 'epochs' }),
  seed: int({ min: -(2 ** 31), max: 2 ** 32 - 1, default: 42, help: 'seed' }),
  lr: num({ above: 0, default: 1e-3, aliases: ['learning_rate'], help: 'rate' }),
  validPct: num({ min: 0, below: 1, default: 0.2, help: 'fraction' }),
  topK: int({ min: 1, help: 'k' }),
  data: str({ metavar: 'DIR', required: true, aliases: ['data_dir'], help: 'images' }),
  augment: choice(['fastai', 'flip', 'none'] as const, { default: 'none', implicit: 'fastai', help: 'augmentation' }),
  means: numbers({ count: 3, metavar: 'R,G,B', help: 'means' }),
  zoom: numbers({ count: [1, 2], above: 0, help: 'zoom' }),
  resume: flag({ help: 'resume' }),
  input: strings({ metavar: 'PATH', help: 'inputs' }),
};
const parse = (...args: string[]) => parseOptions('test', OPTIONS, ['--data', 'd', ...args]);

describe('option parsing', () => {
  it('typed values and defaults; --name value and --name=value; negative numbers as values', () => {
    const { values, given } = parse('--epochs', '7', '--seed=-1', '--lr', '3e-4', '--means', '0.5,-0.25,1', '--resume', '--input', 'a', '--input', 'b');
    expect(values).toEqual({
      epochs: 7, seed: -1, lr: 3e-4, validPct: 0.2, topK: undefined, data: 'd', augment: 'none', means: [0.5, -0.25, 1], zoom: undefined, resume: true, input: ['a', 'b'],
    });
    expect([...given].sort()).toEqual(['data', 'epochs', 'input', 'lr', 'means', 'resume', 'seed']);
    expect(parse('--seed', '-1').values.seed).toBe(-1);
    expect(parse('--means', '-1,-2,-3').values.means).toEqual([-1, -2, -3]);
    expect(parse('--zoom', '0.9').values.zoom).toEqual([0.9]);
    expect(parse('--epochs', '3', '--epochs', '4').values.epochs).toBe(4); // the last one wins
  });

  it('the seeds\' snake_case spellings and declared aliases', () => {
    const v = parseOptions('test', OPTIONS, ['--data_dir', 'x', '--top_k', '3', '--learning_rate', '0.03', '--valid_pct', '0.1']).values;
    expect([v.data, v.topK, v.lr, v.validPct]).toEqual(['x', 3, 0.03, 0.1]);
    expect(parseOptions('test', OPTIONS, ['--data-dir', 'y', '--learning-rate', '1']).values).toMatchObject({ data: 'y', lr: 1 });
  });

  it('a choice given bare takes its implicit value', () => {
    expect(parse('--augment').values.augment).toBe('fastai');
    expect(parse('--augment', '--resume').values).toMatchObject({ augment: 'fastai', resume: true });
    expect(parse('--augment', 'flip').values.augment).toBe('flip');
  });

  it('bad input: one line naming the option, the range and what was given', () => {
    const bad: [string[], string][] = [
      [['--epochs', 'many'], "--epochs must be an integer in 1..100, got 'many'"],
      [['--epochs', '2.5'], "--epochs must be an integer in 1..100, got '2.5'"],
      [['--epochs', ''], "--epochs must be an integer in 1..100, got ''"],
      [['--epochs', '0'], "--epochs must be an integer in 1..100, got '0'"],
      [['--seed', '1e20'], "--seed must be an integer in -2147483648..4294967295, got '1e20'"],
      [['--lr', '0'], "--lr must be a number > 0, got '0'"],
      [['--lr', 'NaN'], "--lr must be a number > 0, got 'NaN'"],
      [['--lr', 'Infinity'], "--lr must be a number > 0, got 'Infinity'"],
      [['--valid-pct', '1'], "--valid-pct must be a number in [0, 1), got '1'"],
      [['--augment', 'all'], "--augment must be one of fastai, flip, none, got 'all'"],
      [['--means', '1,2'], "--means needs 3 comma-separated numbers (R,G,B), got '1,2'"],
      [['--zoom', '1,2,3'], "--zoom needs 1 to 2 comma-separated numbers > 0, got '1,2,3'"],
      [['--zoom', '0'], "--zoom needs 1 to 2 comma-separated numbers > 0, got '0'"],
      [['--epochs'], '--epochs needs a value (N)'],
      [['--epochs', '--resume'], '--epochs needs a value (N)'],
      [['--resume=yes'], "--resume takes no value, got '--resume=yes'"],
      [['--top-kk', '3'], 'unknown option --top-kk; did you mean --top-k?'],
      [['--learning-rat', '3'], 'unknown option --learning-rat; did you mean --lr?'],
      [['--frobnicate'], 'unknown option --frobnicate (see gpunet test --help)'],
      [['-e', '3'], 'unknown option -e (see gpunet test --help)'],
      [['stray'], "unexpected argument 'stray' (options start with --; see gpunet test --help)"],
    ];
    for (const [args, message] of bad) expect(() => parse(...args), args.join(' ')).toThrow(message);
    expect(() => parseOptions('test', OPTIONS, [])).toThrow('--data DIR is required (see gpunet test --help)');
  });

  it('positionals where a command takes them, with a minimum', () => {
    const p = parseOptions('test', OPTIONS, ['--data', 'd', 'a.jpg', '-', '--resume', '--', '--not-an-option'], { name: 'PATH...' });
    expect(p.positionals).toEqual(['a.jpg', '-', '--not-an-option']);
    expect(() => parseOptions('test', OPTIONS, ['--data', 'd'], { name: 'DIR...', min: 1 })).toThrow('name at least one DIR (see gpunet test --help)');
  });

  it('nearest: a slip of a few letters, never a far word', () => {
    expect(editDistance('epohcs', 'epochs')).toBe(1);
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(nearest('top_k', ['top-k', 'topics'])).toBe('top-k');
    expect(nearest('category_name', ['category-names', 'checkpoint'])).toBe('category-names');
    expect(nearest('xyz', ['epochs', 'lr'])).toBeUndefined();
  });
});

describe('the usage table', () => {
  it('lists every option once with its metavar, help, default and group; aliases under "also accepted"', () => {
    const lines = optionTable({ ...OPTIONS, device: str({ metavar: 'I', group: 'device', help: 'the adapter' }) });
    for (const flagText of ['--epochs N', '--lr F', '--data DIR', '--augment [fastai|flip|none]', '--means R,G,B', '--resume', '--input PATH', '--device I']) {
      expect(lines.filter((l) => l.startsWith(`  ${flagText} `) || l === `  ${flagText}`), flagText).toHaveLength(1);
    }
    expect(lines).toContainEqual(expect.stringMatching(/^ {2}--epochs N +epochs \(default: 5\)$/));
    expect(lines).toContainEqual(expect.stringMatching(/^ {2}--lr F +rate \(default: 1e-3\)$/));
    expect(lines).toContainEqual(expect.stringMatching(/^ {2}--data DIR +images \(required\)$/));
    expect(lines.indexOf('options:')).toBe(0);
    expect(lines.indexOf('device:')).toBeGreaterThan(lines.findIndex((l) => l.includes('--input')));
    const also = lines.slice(lines.findIndex((l) => l.startsWith('also accepted:'))).join(' ');
    expect(also).toContain('--learning_rate (--lr)');
    expect(also).toContain('--data_dir (--data)');
    expect(also).toContain('--two_word');
  });

  it('gpunet train --help is one table: every option of the command, aligned in one column', () => {
    const lines = trainCommand.usage.split('\n');
    expect(lines[0]).toBe('usage: gpunet train --data DIR [options]');
    const rows = lines.filter((l) => /^ {2}--/.test(l));
    expect(rows.map((l) => l.trim().split(' ')[0]).sort()).toEqual(Object.keys(trainCommand.options).map((k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).sort());
    // the help column starts at the same place in every row whose flag fits beside it
    const starts = new Set(rows.filter((l) => /\S {2,}\S/.test(l)).map((l) => l.search(/(?<=\S {2,})\S/)));
    expect(starts.size).toBe(1);
    for (const heading of ['training:', 'data:', 'model:', 'optimizer:', 'device:', 'profiling:']) expect(lines).toContain(heading);
    expect(trainCommand.usage).toMatch(/also accepted: .*--learning_rate \(--lr\).*--save_dir \(--out\)/s);
    expect(predictCommand.usage).toMatch(/--top-k N +how many classes/);
    // the seeds' spellings shown by example: predict.py's --top_k and --category_names
    expect(predictCommand.usage).toMatch(/also accepted: any --two-word option spelled --two_word \(--top_k, --category_names\b/);
  });
});
