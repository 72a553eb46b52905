// Data movement at the shapes modern networks give it: a ViT-B/16 block splitting its heads
// ([16,197,12,64] -> [16,12,197,64]) and taking its class token, ShuffleNetV2's channel shuffle,
// Swin-T's window partition (a 6-D permutation), a class-token expand, an embedding-style gather
// with repeated rows, and reflect padding of a ResNet-sized activation; forward, and the backward
// where a network trains through it. validate() checks each op against the float64 reference
// at smaller shapes (the same kernels).
//   npx tsx bench/layout.ts [filter] [--quick]
import { expand, gather, pad, slice, sliceRanges, transpose } from '../src/ops/layout.ts';
import { Rng, Tensor, type Shape } from '../src/tensor/index.ts';
import { expandRef, gatherRef, padRef, sliceRef, transposeRef } from '../src/reference/layout.ts';
import { expectClose, isMain, opCase, randomValues, readBack, runFamilies, toTensor, type BenchCase } from './harness.ts';

export const title = 'data movement (transpose, slice, gather, expand, pad)';

const size = (s: Shape) => s.reduce((a, b) => a * b, 1);

export async function validate(): Promise<void> {
  const rng = new Rng(7);
  const check = async (what: string, shape: number[], op: (t: Tensor) => Tensor, ref: (x: Float64Array) => Float64Array) => {
    const x = randomValues(size(shape), rng);
    const [y] = await readBack(() => [op(toTensor(x, shape))]);
    expectClose(what, y, ref(x), 1e-7);
  };
  await check('transpose [2,9,3,8] perm [0,2,1,3]', [2, 9, 3, 8], (t) => transpose(t, [0, 2, 1, 3]), (x) => transposeRef(x, [2, 9, 3, 8], [0, 2, 1, 3]));
  const swin = [2, 2, 3, 2, 3, 4];
  await check('transpose [2,2,3,2,3,4] perm [0,1,3,2,4,5]', swin, (t) => transpose(t, [0, 1, 3, 2, 4, 5]), (x) => transposeRef(x, swin, [0, 1, 3, 2, 4, 5]));
  const spec = { starts: [0], ends: [1], axes: [1] };
  await check('slice [4,9,8] class token', [4, 9, 8], (t) => slice(t, spec), (x) => sliceRef(x, [4, 9, 8], sliceRanges('slice', [4, 9, 8], spec)));
  await check('gather [50,8] rows', [50, 8], (t) => gather(t, [3, 3, 49, 0], 0), (x) => gatherRef(x, [50, 8], [3, 3, 49, 0], 0));
  await check('expand [1,1,8] to [4,9,8]', [1, 1, 8], (t) => expand(t, [4, 9, 8]), (x) => expandRef(x, [1, 1, 8], [4, 9, 8]));
  await check('pad reflect [2,3,9,7] by 1', [2, 3, 9, 7], (t) => pad(t, [1, 1, 1, 1], 'reflect', 0, [2, 3]), (x) => padRef(x, [2, 3, 9, 7], [0, 0, 1, 1, 0, 0, 1, 1], 'reflect'));
}

const HEADS = [16, 197, 12, 64];
const SHUFFLE = [32, 2, 58, 28, 28];
const SWIN = [8, 7, 8, 7, 8, 96]; // [B, H/w, w, W/w, w, C] of a 56x56 map, 8x8 windows
const IMAGE = [16, 64, 56, 56];

export const cases: BenchCase[] = [
  ...[false, true].map((backward) =>
    opCase(`transpose ${JSON.stringify(HEADS)} perm [0,2,1,3] (attention heads)`, [HEADS], ([x]) => transpose(x, [0, 2, 1, 3]), 8 * size(HEADS), { backward, quick: !backward }),
  ),
  opCase(`transpose ${JSON.stringify(SHUFFLE)} perm [0,2,1,3,4] (channel shuffle)`, [SHUFFLE], ([x]) => transpose(x, [0, 2, 1, 3, 4]), 8 * size(SHUFFLE)),
  opCase(`transpose ${JSON.stringify(SWIN)} perm [0,1,3,2,4,5] (window partition)`, [SWIN], ([x]) => transpose(x, [0, 1, 3, 2, 4, 5]), 8 * size(SWIN)),
  ...[false, true].map((backward) =>
    opCase('slice [16,197,768] class token', [[16, 197, 768]], ([x]) => slice(x, { starts: [0], ends: [1], axes: [1] }), 8 * 16 * 768 * (backward ? 197 : 1), { backward }),
  ),
  ...[false, true].map((backward) =>
    opCase('expand [1,1,768] to [16,1,768] (class token)', [[1, 1, 768]], ([x]) => expand(x, [16, 1, 768]), 8 * 16 * 768, { backward }),
  ),
  ...[false, true].map((backward) => {
    const rows = Array.from({ length: 4096 }, (_, i) => (i * 7919) % 1000); // repeats: 4096 picks of 1000 rows
    return opCase('gather [1000,768] 4096 rows', [[1000, 768]], ([x]) => gather(x, rows, 0), 8 * 4096 * 768, { backward });
  }),
  ...[false, true].map((backward) =>
    opCase(`pad reflect ${JSON.stringify(IMAGE)} by 1`, [IMAGE], ([x]) => pad(x, [1, 1, 1, 1], 'reflect', 0, [2, 3]), 8 * size(IMAGE), { backward, quick: !backward }),
  ),
];

if (isMain(import.meta.url)) process.exit((await runFamilies([{ title, cases, validate }])) ? 0 : 1);
