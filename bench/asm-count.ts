// Counts the x86 instructions lavapipe generated for each compute shader of a GALLIVM_DEBUG=asm dump:
// per shader, its total and its main loop (the body of the backward branch spanning the most
// instructions), with the loop's instruction mix: branches, bounds compares, scalar loads, vector
// spills, AVX-512 mask and upper-register use, multiply-adds, gathers. How bench/NOTES.md sections 12
// and 18 read the code.
//   GALLIVM_DEBUG=asm MESA_SHADER_CACHE_DISABLE=true npx tsx bench/uniform-loads.ts --asm > dump.txt 2>&1
//   npx tsx bench/asm-count.ts dump.txt [name,name,...]
import { readFileSync } from 'node:fs';

interface Instr {
  offset: number;
  op: string;
  args: string;
}

const [file, names] = process.argv.slice(2);
if (!file) throw new Error('usage: npx tsx bench/asm-count.ts <GALLIVM_DEBUG=asm dump> [name,name,...]');

// each shader's code is the function `cs_co_variant:` (lavapipe's compute coroutine) and its
// `.resume` part (LLVM's coroutine split puts the code after a barrier there), each a list of
// segments whose offsets restart; `.destroy` is a stub
const shaders: Instr[][][] = [];
let current: Instr[] | null = null;
for (const line of readFileSync(file, 'utf8').split('\n')) {
  if (line === 'cs_co_variant:') shaders.push([(current = [])]);
  else if (line === 'cs_co_variant.resume:') shaders[shaders.length - 1]?.push((current = []));
  else if (/^\S/.test(line)) current = null;
  else if (current) {
    const m = /^\s*([0-9a-f]+):\t(\S+)\s*(.*)$/.exec(line);
    if (m) current.push({ offset: parseInt(m[1], 16), op: m[2], args: m[3] });
  }
}

function mainLoop(code: Instr[]): Instr[] {
  let best: Instr[] = [];
  code.forEach((ins, i) => {
    if (!ins.op.startsWith('j') || !ins.args.startsWith('-')) return;
    const target = (code[i + 1]?.offset ?? ins.offset) - Number(ins.args.slice(1));
    const body = code.filter((x) => x.offset >= target && x.offset <= ins.offset);
    if (body.length > best.length) best = body;
  });
  return best;
}

const count = (code: Instr[], test: (x: Instr) => boolean) => code.filter(test).length;
const labels = names?.split(',') ?? [];
console.log('shader               total   loop  branches  cmp  scalar loads  stack vector ops  ymm16-31  k-mask  mul+add  fma  gathers  loop bytes');
shaders.forEach((segments, i) => {
  const code = segments.flat();
  const loop = segments.map(mainLoop).reduce((a, b) => (b.length > a.length ? b : a), []);
  const bytes = loop.length ? loop[loop.length - 1].offset - loop[0].offset : 0;
  const cells = [
    code.length,
    loop.length,
    count(loop, (x) => x.op.startsWith('j')),
    count(loop, (x) => x.op.startsWith('cmp')),
    // a scalar element read from memory other than the stack (a store's memory operand comes last)
    count(loop, (x) => /^(vmovd|vmovss|vpinsrd|vinsertps|vpbroadcastd|vbroadcastss)$/.test(x.op) && /\(%r(?!sp)/.test(x.args) && !x.args.endsWith(')')),
    count(loop, (x) => x.op.startsWith('v') && x.args.includes('(%rsp')),
    count(loop, (x) => /%[xyz]mm(1[6-9]|2\d|3[01])\b/.test(x.args)),
    count(loop, (x) => /%k[0-7]\b/.test(x.args)),
    count(loop, (x) => x.op === 'vmulps' || x.op === 'vaddps'),
    count(loop, (x) => x.op.startsWith('vfmadd')),
    count(loop, (x) => x.op.includes('gather')),
    bytes,
  ];
  console.log(`${(labels[i] ?? `shader ${i + 1}`).padEnd(18)} ${cells.map((c, j) => String(c).padStart([7, 6, 9, 4, 13, 17, 9, 7, 8, 4, 8, 11][j])).join(' ')}`);
});
