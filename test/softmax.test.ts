import { describe, expect, it } from 'vitest';
import { softmax, softmaxCrossEntropy, type CrossEntropyOptions } from '../src/ops/softmax.ts';
import { noGrad, OpError, Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { numericGrads, randomArray, relError, runWithGrads, toGpu, useGpu } from './helpers.ts';
import { crossEntropyRef, softmaxRef } from '../src/reference/softmax.ts';
import { torchRun, type TorchCase } from './torch.ts';

useGpu();

interface CeCase {
  n: number;
  c: number;
  reduction: 'mean' | 'sum';
  eps: number;
  /** added to every logit: large offsets must not overflow exp */
  offset: number;
}

// the ImageNet head (C = 1000, batch 1), 7 classes over 5 rows, one class, a batch of 37 over 10,
// and logits around 1000; both reductions, with and without label smoothing
const CE_CASES: CeCase[] = [
  { n: 1, c: 1000, reduction: 'mean', eps: 0, offset: 0 },
  { n: 1, c: 1000, reduction: 'sum', eps: 0.1, offset: 0 },
  { n: 5, c: 7, reduction: 'mean', eps: 0, offset: 0 },
  { n: 5, c: 7, reduction: 'mean', eps: 0.1, offset: 0 },
  { n: 5, c: 7, reduction: 'sum', eps: 0, offset: 0 },
  { n: 5, c: 7, reduction: 'sum', eps: 0.1, offset: 1000 },
  { n: 4, c: 1, reduction: 'mean', eps: 0.1, offset: 0 },
  { n: 37, c: 10, reduction: 'mean', eps: 0.1, offset: 1000 },
];

function ceInputs(k: CeCase, seed: number): { x: Float64Array; labels: number[] } {
  const rng = new Rng(seed);
  const x = randomArray([k.n, k.c], rng, -3, 3).map((v) => v + k.offset);
  const labels = Array.from({ length: k.n }, () => rng.int(k.c));
  return { x, labels };
}

const ceName = (k: CeCase): string => `N=${k.n} C=${k.c} ${k.reduction} eps=${k.eps}${k.offset ? ` logits+${k.offset}` : ''}`;

describe('softmax', () => {
  // 1 column; 7 (a row per 2 invocations); 1000 (128 invocations per row); 3000 (all 256, 12 columns each)
  for (const [n, c] of [[1, 1000], [5, 7], [3, 1], [37, 10], [2, 3000]]) {
    it(`forward [${n},${c}]`, async () => {
      const x = randomArray([n, c], new Rng(n * 31 + c), -5, 5);
      const y = await tidy(() => softmax(toGpu(x, [n, c])).toArray());
      expect(relError(y, softmaxRef(x, n, c))).toBeLessThan(1e-5);
    });
  }

  it('forward with logits around 1000 does not overflow', async () => {
    const x = randomArray([5, 7], new Rng(1), -3, 3).map((v) => v + 1000);
    const y = await tidy(() => softmax(toGpu(x, [5, 7])).toArray());
    expect(relError(y, softmaxRef(x, 5, 7))).toBeLessThan(1e-4);
  });

  for (const [n, c] of [[5, 7], [1, 40]]) {
    it(`backward [${n},${c}] vs finite differences`, async () => {
      const rng = new Rng(n + c);
      const x = randomArray([n, c], rng, -2, 2);
      const dy = randomArray([n, c], rng);
      const { out, grads } = await runWithGrads(([t]) => softmax(t), [{ data: x, shape: [n, c] }], dy);
      expect(relError(out, softmaxRef(x, n, c))).toBeLessThan(1e-5);
      const [numeric] = numericGrads(([v]) => softmaxRef(v, n, c), [x], dy);
      expect(relError(grads[0]!, numeric)).toBeLessThan(1e-4);
    });
  }
});

describe('softmaxCrossEntropy', () => {
  CE_CASES.forEach((k, i) => {
    it(`forward and backward vs reference, ${ceName(k)}`, async () => {
      const { x, labels } = ceInputs(k, 100 + i);
      const opts: CrossEntropyOptions = { reduction: k.reduction, labelSmoothing: k.eps };
      const dy = Float64Array.of(0.7);
      const { out, grads } = await runWithGrads(([t]) => softmaxCrossEntropy(t, labels, opts), [{ data: x, shape: [k.n, k.c] }], dy);
      const ref = (v: Float64Array) => crossEntropyRef(v, k.n, k.c, labels, k.reduction, k.eps);
      expect(out.length).toBe(1);
      expect(relError(out, ref(x))).toBeLessThan(1e-5);
      const [numeric] = numericGrads(([v]) => ref(v), [x], dy);
      expect(relError(grads[0]!, numeric)).toBeLessThan(1e-4);
    });
  });

  it('takes labels as number[], Int32Array and Uint32Array, and works without a tape', async () => {
    const k = CE_CASES[2];
    const { x, labels } = ceInputs(k, 7);
    const ref = crossEntropyRef(x, k.n, k.c, labels, 'mean', 0);
    const losses = await noGrad(() =>
      tidy(() => {
        const t = toGpu(x, [k.n, k.c]);
        return Promise.all([labels, Int32Array.from(labels), Uint32Array.from(labels)].map((l) => softmaxCrossEntropy(t, l).toArray()));
      }),
    );
    for (const l of losses) expect(relError(l, ref)).toBeLessThan(1e-5);
  });

  it('rejects labels out of range, the wrong number of labels, bad options and non-2-D logits', () => {
    tidy(() => {
      const t = Tensor.zeros([5, 7]);
      const bad: [() => unknown, RegExp][] = [
        [() => softmaxCrossEntropy(t, [0, 1, 2, 3, 7]), /softmaxCrossEntropy: label 7 at row 4 .*\[0, 7\).*\[5,7\]/],
        [() => softmaxCrossEntropy(t, Int32Array.of(0, -1, 2, 3, 4)), /label -1 at row 1/],
        [() => softmaxCrossEntropy(t, [0, 1, 2, 3, 1.5]), /label 1.5/],
        [() => softmaxCrossEntropy(t, [0, 1, 2]), /softmaxCrossEntropy: 3 labels for logits \[5,7\]/],
        [() => softmaxCrossEntropy(t, [0, 1, 2, 3, 4], { labelSmoothing: 1.5 }), /labelSmoothing/],
        [() => softmaxCrossEntropy(t, [0, 1, 2, 3, 4], { reduction: 'none' as 'sum' }), /reduction/],
        [() => softmaxCrossEntropy(t.reshape([35]), [0]), /softmaxCrossEntropy: expected logits \[N, C\].*got \[35\]/],
        [() => softmax(t.reshape([5, 7, 1])), /softmax: expected logits \[N, C\].*\[5,7,1\]/],
      ];
      for (const [fn, msg] of bad) {
        expect(fn).toThrow(OpError);
        expect(fn).toThrow(msg);
      }
    });
  });

  it('matches PyTorch: F.cross_entropy and F.softmax, forward and backward', async () => {
    const dyLoss = [0.7];
    const ce = CE_CASES.map((k, i) => ({ k, ...ceInputs(k, 500 + i) }));
    const smShape = [5, 7];
    const rng = new Rng(3);
    const smX = randomArray(smShape, rng, -3, 3);
    const smDy = randomArray(smShape, rng);
    const cases: TorchCase[] = [
      ...ce.map(({ k, x, labels }) => ({
        inputs: { x: { shape: [k.n, k.c], data: x, grad: true }, t: { shape: [k.n], data: labels, int: true } },
        expr: `F.cross_entropy(x, t, reduction='${k.reduction}', label_smoothing=${k.eps}).reshape(1)`,
        dy: dyLoss,
      })),
      { inputs: { x: { shape: smShape, data: smX, grad: true } }, expr: 'F.softmax(x, dim=1)', dy: smDy },
    ];
    const ref = torchRun(cases);
    for (const [i, { k, x, labels }] of ce.entries()) {
      const opts = { reduction: k.reduction, labelSmoothing: k.eps };
      const { out, grads } = await runWithGrads(([t]) => softmaxCrossEntropy(t, labels, opts), [{ data: x, shape: [k.n, k.c] }], Float64Array.from(dyLoss));
      expect(relError(out, ref[i].out), ceName(k)).toBeLessThan(1e-5);
      expect(relError(grads[0]!, ref[i].grads!.x), ceName(k)).toBeLessThan(1e-4);
    }
    const { out, grads } = await runWithGrads(([t]) => softmax(t), [{ data: smX, shape: smShape }], smDy);
    expect(relError(out, ref[ce.length].out)).toBeLessThan(1e-5);
    expect(relError(grads[0]!, ref[ce.length].grads!.x)).toBeLessThan(1e-4);
  });
});
