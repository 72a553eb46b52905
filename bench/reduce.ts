// Reductions over axes, broadcast elementwise ops and layerNorm at the shapes modern CNNs and vision
// transformers give them: squeeze-excitation and global means of [N,C,H,W] (batch 32, 56x56x64), a
// ViT-B/16 block's [64,197,768] rows (layerNorm, its decomposed mean/sub, bias adds, GELU), a
// linear layer's bias gradient (a column sum) and attention scores' row max. validate() checks one
// case of each against the float64 references.
//   npx tsx bench/reduce.ts [filter] [--quick]
import { add, gelu, mul, relu, sub } from '../src/ops/elementwise.ts';
import { layerNorm } from '../src/ops/layernorm.ts';
import { max, mean, sum, type ReduceOptions } from '../src/ops/reduce.ts';
import { ELEMENTWISE_REF, elementwiseRef } from '../src/reference/elementwise.ts';
import { layerNormRef } from '../src/reference/layernorm.ts';
import { maxRef, meanRef, sumRef } from '../src/reference/reduce.ts';
import { Rng, Tensor, type Shape } from '../src/tensor/index.ts';
import { expectClose, isMain, opCase, randomValues, readBack, runFamilies, toTensor, type BenchCase } from './harness.ts';

export const title = 'reductions, broadcasting, layerNorm';

const size = (s: Shape) => s.reduce((a, b) => a * b, 1);

export async function validate(): Promise<void> {
  const rng = new Rng(5);
  const shape = [3, 6, 20, 8];
  const x = randomValues(size(shape), rng);
  for (const [name, op, ref, axes] of [['sum', sum, sumRef, [0, 2, 3]], ['mean', mean, meanRef, [2, 3]], ['max', max, maxRef, [3]], ['sum', sum, sumRef, [0]]] as const) {
    const [y] = await readBack(() => [op(toTensor(x, shape), { axes: [...axes] })]);
    expectClose(`${name} ${JSON.stringify(shape)} axes ${JSON.stringify(axes)}`, y, ref(x, shape, [...axes]));
  }
  const b = randomValues(6, rng);
  const [prod] = await readBack(() => [mul(toTensor(x, shape), toTensor(b, [6, 1, 1]))]);
  expectClose('mul [3,6,20,8] * [6,1,1]', prod, elementwiseRef(([u, v]) => u * v, [x, b], [shape, [6, 1, 1]]));
  const [g] = await readBack(() => [gelu(toTensor(x, shape))]);
  expectClose('gelu [3,6,20,8]', g, elementwiseRef((v) => ELEMENTWISE_REF.gelu(v, 0, 0), [x], [shape]));
  const [w, bias] = [randomValues(8, rng), randomValues(8, rng)];
  const [ln] = await readBack(() => [layerNorm(toTensor(x, shape), [8], toTensor(w, [8]), toTensor(bias, [8]))]);
  expectClose('layerNorm [3,6,20,8] over [8]', ln, layerNormRef(x, 8, w, bias, 1e-5));
}

const reduceCase = (name: string, op: (x: Tensor, o: ReduceOptions) => Tensor, shape: Shape, axes: number[], quick = false, backward = false): BenchCase =>
  // the forward reads x, the backward writes dx (max also reads x)
  opCase(`${name} ${JSON.stringify(shape)} axes ${JSON.stringify(axes)}`, [shape], ([x]) => op(x, { axes, keepdim: true }), 4 * size(shape), { quick, backward });

const IMAGE = [32, 64, 56, 56];
const TOKENS = [16, 197, 768];
const HIDDEN = [16, 197, 3072];

export const cases: BenchCase[] = [
  reduceCase('mean', mean, IMAGE, [2, 3], true),
  reduceCase('mean', mean, IMAGE, [2, 3], false, true),
  reduceCase('sum', sum, IMAGE, [0, 2, 3]),
  reduceCase('mean', mean, TOKENS, [2], true),
  reduceCase('sum', sum, [4096, 1024], [0]),
  reduceCase('max', max, [16, 12, 197, 197], [3]),
  opCase(`relu ${JSON.stringify(IMAGE)}`, [IMAGE], ([x]) => relu(x), 8 * size(IMAGE)),
  opCase(`mul ${JSON.stringify(IMAGE)} * [32,64,1,1]`, [IMAGE, [32, 64, 1, 1]], ([x, s]) => mul(x, s), 8 * size(IMAGE), { quick: true }),
  opCase(`mul ${JSON.stringify(IMAGE)} * [32,64,1,1]`, [IMAGE, [32, 64, 1, 1]], ([x, s]) => mul(x, s), 16 * size(IMAGE), { backward: true }),
  opCase(`sub ${JSON.stringify(TOKENS)} - [64,197,1]`, [TOKENS, [64, 197, 1]], ([x, m]) => sub(x, m), 8 * size(TOKENS)),
  opCase(`add ${JSON.stringify(TOKENS)} + [768]`, [TOKENS, [768]], ([x, b]) => add(x, b), 8 * size(TOKENS)),
  opCase(`gelu ${JSON.stringify(HIDDEN)}`, [HIDDEN], ([x]) => gelu(x), 8 * size(HIDDEN)),
  opCase(`layerNorm ${JSON.stringify(TOKENS)} over [768]`, [TOKENS, [768], [768]], ([x, w, b]) => layerNorm(x, [768], w, b), 8 * size(TOKENS), { quick: true }),
  opCase(`layerNorm ${JSON.stringify(TOKENS)} over [768]`, [TOKENS, [768], [768]], ([x, w, b]) => layerNorm(x, [768], w, b), 16 * size(TOKENS), { backward: true }),
  opCase('layerNorm [32,56,56,96] over [96]', [[32, 56, 56, 96], [96], [96]], ([x, w, b]) => layerNorm(x, [96], w, b), 8 * 32 * 56 * 56 * 96),
];

if (isMain(import.meta.url)) process.exit((await runFamilies([{ title, cases, validate }])) ? 0 : 1);
