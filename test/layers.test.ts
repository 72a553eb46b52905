// The house (DEVELOPERS.md): each layer of src/ imports only from the layers below it, never from a
// sibling or from above. Read off the sources' import lines, so a sideways import fails here.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = join(import.meta.dirname, '..', 'src');

/** Bottom to top; layers on one line are siblings and import neither each other. */
const HOUSE: string[][] = [['io', 'reference'], ['gpu'], ['tensor'], ['ops'], ['nn', 'optim'], ['data', 'report'], ['onnx'], ['train'], ['cli']];
const level = new Map(HOUSE.flatMap((names, i) => names.map((n): [string, number] => [n, i])));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** The src layer a file belongs to (undefined: src/index.ts, the package's surface). */
const layerOf = (file: string) => {
  const parts = relative(SRC, file).split('/');
  return parts.length > 1 ? parts[0] : undefined;
};

describe('the layers of src/', () => {
  it('every layer is in the house', () => {
    const dirs = readdirSync(SRC, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    expect(dirs.filter((d) => !level.has(d))).toEqual([]);
  });

  it('each imports only from the layers below it (src/reference from none)', () => {
    const wrong: string[] = [];
    for (const file of sources(SRC)) {
      const from = layerOf(file);
      if (from === undefined) continue;
      for (const m of readFileSync(file, 'utf8').matchAll(/^(?:import|export)\b[^;]*?\bfrom '(\.[^']*)'/gms)) {
        const to = layerOf(join(file, '..', m[1]));
        if (to === undefined || to === from) continue;
        const ok = from !== 'reference' && level.get(to)! < level.get(from)!;
        if (!ok) wrong.push(`${relative(SRC, file)} imports ${m[1]} (${from} -> ${to})`);
      }
    }
    expect(wrong).toEqual([]);
  });
});
