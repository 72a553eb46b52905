import { describe, expect, it } from 'vitest';
import { crossEntropy, logSoftmax, softmax, softmaxCrossEntropy, type CrossEntropyOptions } from '../src/ops/softmax.ts';
import { noGrad, OpError, Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { numericGrads, randomArray, relError, runWithGrads, shapeSize, toGpu, useGpu } from './helpers.ts';
import { crossEntropyRef, logSoftmaxRef, softmaxRef, type CrossEntropyRefOptions } from '../src/reference/softmax.ts';
import { torchRun, type TorchCase } from './torch.ts';

useGpu();

const ops = { softmax: [softmax, softmaxRef, 'softmax'], logSoftmax: [logSoftmax, logSoftmaxRef, 'log_softmax'] } as const;

// last axis: 1 column, 7 (a row per 2 invocations), 1000 (several invocations per row), 3000;
// other axes (rows strided by `inner`): the middle of an odd 3-D shape, axis 0, a negative axis
// over size-1 dims, a size-1 axis
const AXIS_CASES: [number[], number][] = [
  [[1, 1000], -1], [[5, 7], 1], [[3, 1], -1], [[37, 10], 1], [[2, 3000], 1],
  [[2, 5, 3], 1], [[3, 4, 5], 0], [[1, 7, 1, 5], -3], [[4, 1, 3], 1],
];

describe('softmax and logSoftmax along any axis', () => {
  for (const [name, [fn, ref]] of Object.entries(ops)) {
    for (const [shape, axis] of AXIS_CASES) {
      it(`${name} forward [${shape}] axis ${axis}`, async () => {
        const x = randomArray(shape, new Rng(shapeSize(shape) + axis), -5, 5);
        const y = await tidy(() => fn(toGpu(x, shape), axis).toArray());
        expect(relError(y, ref(x, shape, axis))).toBeLessThan(1e-5);
      });
    }

    it(`${name} with logits around 1000 does not overflow`, async () => {
      const x = randomArray([5, 7], new Rng(1), -3, 3).map((v) => v + 1000);
      const y = await tidy(() => fn(toGpu(x, [5, 7]), 0).toArray());
      // log-softmax's values are O(1) next to 1000: its error is relative to the logits' rounding
      expect(relError(y, ref(x, [5, 7], 0))).toBeLessThan(name === 'softmax' ? 1e-4 : 1e-3);
    });

    for (const [shape, axis] of [[[5, 7], 1], [[1, 40], -1], [[3, 4, 5], 1], [[2, 3, 1, 2], 0]] as [number[], number][]) {
      it(`${name} backward [${shape}] axis ${axis} vs finite differences`, async () => {
        const rng = new Rng(shapeSize(shape) + axis + 17);
        const x = randomArray(shape, rng, -2, 2);
        const dy = randomArray(shape, rng);
        const { out, grads } = await runWithGrads(([t]) => fn(t, axis), [{ data: x, shape }], dy);
        expect(relError(out, ref(x, shape, axis))).toBeLessThan(1e-5);
        const [numeric] = numericGrads(([v]) => ref(v, shape, axis), [x], dy);
        expect(relError(grads[0]!, numeric)).toBeLessThan(1e-4);
      });
    }
  }

  it('refuses an axis out of range, naming the op and the shape', () => {
    tidy(() => {
      const t = Tensor.zeros([5, 7]);
      expect(() => softmax(t, 2)).toThrow(OpError);
      expect(() => softmax(t, 2)).toThrow(/softmax: axis 2 out of range for \[5,7\]/);
      expect(() => logSoftmax(t, -3)).toThrow(/logSoftmax: axis -3 out of range for \[5,7\]/);
    });
  });
});

interface CeCase {
  /** logits: [N, C] or [N, C, d1, ...] */
  shape: number[];
  reduction: 'mean' | 'sum' | 'none';
  eps?: number;
  /** added to every logit: large offsets must not overflow exp */
  offset?: number;
  weight?: boolean;
  /** every third row gets this label, which is ignored */
  ignoreIndex?: number;
  /** probabilities of the logits' shape instead of class indices */
  soft?: boolean;
  /** class indices handed over as a tensor */
  labelTensor?: boolean;
}

// the ImageNet head (C = 1000, batch 1), 7 classes over 5 rows, one class, a batch of 37 over 10,
// logits around 1000; class weights, ignored rows (an index that is a class, and -100), both,
// with smoothing; probability targets (smoothed and weighted); per-row losses; ONNX's
// [N, C, d1, d2] layout; labels as a tensor
const CE_CASES: CeCase[] = [
  { shape: [1, 1000], reduction: 'mean' },
  { shape: [1, 1000], reduction: 'sum', eps: 0.1 },
  { shape: [5, 7], reduction: 'mean' },
  { shape: [5, 7], reduction: 'mean', eps: 0.1 },
  { shape: [5, 7], reduction: 'sum', eps: 0.1, offset: 1000 },
  { shape: [4, 1], reduction: 'mean', eps: 0.1 },
  { shape: [37, 10], reduction: 'mean', eps: 0.1, offset: 1000 },
  { shape: [6, 7], reduction: 'mean', weight: true },
  { shape: [6, 7], reduction: 'sum', weight: true },
  { shape: [7, 5], reduction: 'mean', ignoreIndex: 2 },
  { shape: [7, 5], reduction: 'mean', ignoreIndex: -100, weight: true, eps: 0.2 },
  { shape: [5, 7], reduction: 'mean', soft: true },
  { shape: [5, 7], reduction: 'sum', soft: true, weight: true, eps: 0.1 },
  { shape: [5, 7], reduction: 'none', weight: true, ignoreIndex: 0 },
  { shape: [3, 5, 2, 3], reduction: 'mean', weight: true, ignoreIndex: 1 },
  { shape: [3, 5, 2, 3], reduction: 'none', soft: true, eps: 0.1 },
  { shape: [5, 7], reduction: 'mean', weight: true, labelTensor: true },
];

interface CeInputs {
  x: Float64Array;
  labels: number[];
  probs: Float64Array;
  weight: Float64Array | null;
}

function ceInputs(k: CeCase, seed: number): CeInputs {
  const rng = new Rng(seed);
  const [n, c, ...rest] = k.shape;
  const inner = shapeSize(rest);
  const x = randomArray(k.shape, rng, -3, 3).map((v) => v + (k.offset ?? 0));
  const labels = Array.from({ length: n * inner }, (_, r) => (k.ignoreIndex !== undefined && r % 3 === 1 ? k.ignoreIndex : rng.int(c)));
  // a random distribution over the classes of every row (x[o, :, i])
  const probs = randomArray(k.shape, rng, 0.05, 1);
  for (let o = 0; o < n; o++) {
    for (let i = 0; i < inner; i++) {
      let s = 0;
      for (let j = 0; j < c; j++) s += probs[(o * c + j) * inner + i];
      for (let j = 0; j < c; j++) probs[(o * c + j) * inner + i] /= s;
    }
  }
  const weight = k.weight ? randomArray([c], rng, 0.2, 2) : null;
  return { x, labels, probs, weight };
}

const ceName = (k: CeCase): string =>
  `[${k.shape}] ${k.reduction}${k.eps ? ` eps=${k.eps}` : ''}${k.offset ? ` logits+${k.offset}` : ''}${k.weight ? ' weighted' : ''}` +
  `${k.ignoreIndex !== undefined ? ` ignore ${k.ignoreIndex}` : ''}${k.soft ? ' soft targets' : ''}${k.labelTensor ? ' label tensor' : ''}`;

const lossShape = (k: CeCase): number[] => (k.reduction === 'none' ? k.shape.filter((_, i) => i !== 1) : [1]);

/** The GPU op of case k on logits t. */
function gpuLoss(k: CeCase, t: Tensor, inp: CeInputs): Tensor {
  const opts: CrossEntropyOptions = { reduction: k.reduction, labelSmoothing: k.eps, weight: inp.weight, ignoreIndex: k.ignoreIndex };
  const rowShape = k.shape.filter((_, i) => i !== 1);
  const target = k.soft ? toGpu(inp.probs, k.shape) : k.labelTensor ? Tensor.from(inp.labels, rowShape) : inp.labels;
  return softmaxCrossEntropy(t, target, opts);
}

function refLoss(k: CeCase, inp: CeInputs): (x: Float64Array) => Float64Array {
  const o: CrossEntropyRefOptions = { reduction: k.reduction, labelSmoothing: k.eps, weight: inp.weight, ignoreIndex: k.ignoreIndex };
  return (x) => crossEntropyRef(x, k.shape, k.soft ? { probs: inp.probs } : { labels: inp.labels }, o);
}

describe('softmaxCrossEntropy', () => {
  CE_CASES.forEach((k, i) => {
    it(`forward and backward vs reference, ${ceName(k)}`, async () => {
      const inp = ceInputs(k, 100 + i);
      const dy = randomArray(lossShape(k), new Rng(i), 0.5, 1.5);
      const { out, grads } = await runWithGrads(([t]) => gpuLoss(k, t, inp), [{ data: inp.x, shape: k.shape }], dy);
      const ref = refLoss(k, inp);
      expect(out.length).toBe(dy.length);
      expect(relError(out, ref(inp.x))).toBeLessThan(1e-5);
      const [numeric] = numericGrads(([v]) => ref(v), [inp.x], dy);
      expect(relError(grads[0]!, numeric)).toBeLessThan(1e-4);
    });
  });

  it('takes labels as number[], Int32Array, Uint32Array and a tensor, and works without a tape', async () => {
    const k = CE_CASES[2];
    const inp = ceInputs(k, 7);
    const ref = refLoss(k, inp)(inp.x);
    const losses = await noGrad(() =>
      tidy(() => {
        const t = toGpu(inp.x, k.shape);
        const targets = [inp.labels, Int32Array.from(inp.labels), Uint32Array.from(inp.labels), Tensor.from(inp.labels, [5])];
        return Promise.all(targets.map((l) => crossEntropy(t, l).toArray()));
      }),
    );
    for (const l of losses) expect(relError(l, ref)).toBeLessThan(1e-5);
  });

  it('a label tensor holding no class index gives a NaN loss', async () => {
    const loss = await tidy(() => crossEntropy(Tensor.ones([3, 4]), Tensor.from([0, 4, 1], [3])).toArray());
    expect(loss[0]).toBeNaN();
  });

  it('rejects bad labels, targets, weights and options, naming the op and the shapes', () => {
    tidy(() => {
      const t = Tensor.zeros([5, 7]);
      const labels = [0, 1, 2, 3, 4];
      const bad: [() => unknown, RegExp][] = [
        [() => softmaxCrossEntropy(t, [0, 1, 2, 3, 7]), /crossEntropy: label 7 at row 4 .*\[0, 7\).*\[5,7\]/],
        [() => softmaxCrossEntropy(t, Int32Array.of(0, -1, 2, 3, 4)), /label -1 at row 1/],
        [() => softmaxCrossEntropy(t, [0, 1, 2, 3, 1.5]), /label 1.5/],
        [() => softmaxCrossEntropy(t, [0, 1, -5, 3, 4], { ignoreIndex: -100 }), /label -5 at row 2 .* nor the ignored -100/],
        [() => softmaxCrossEntropy(t, [0, 1, 2]), /crossEntropy: 3 labels for logits \[5,7\] \(one per row of \[5\]/],
        [() => softmaxCrossEntropy(t, Tensor.zeros([5, 6])), /target \[5,6\] is neither class indices \[5\] nor probabilities \[5,7\]/],
        [() => softmaxCrossEntropy(t, Tensor.zeros([5, 7]), { ignoreIndex: 0 }), /ignoreIndex applies to class indices/],
        [() => softmaxCrossEntropy(t, labels, { weight: [1, 2] }), /2 class weights for 7 classes/],
        [() => softmaxCrossEntropy(t, labels, { weight: Tensor.ones([7, 1]) }), /class weights \[7,1\] for 7 classes/],
        [() => softmaxCrossEntropy(t, labels, { weight: [1, 1, 1, NaN, 1, 1, 1] }), /class weight NaN of class 3/],
        [() => softmaxCrossEntropy(t, labels, { labelSmoothing: 1.5 }), /labelSmoothing/],
        [() => softmaxCrossEntropy(t, labels, { reduction: 'avg' as 'sum' }), /reduction/],
        [() => softmaxCrossEntropy(t, labels, { ignoreIndex: 0.5 }), /ignoreIndex must be an integer/],
        [() => softmaxCrossEntropy(t.reshape([35]), [0]), /crossEntropy: expected logits \[N, C\].*got \[35\]/],
      ];
      for (const [fn, msg] of bad) {
        expect(fn).toThrow(OpError);
        expect(fn).toThrow(msg);
      }
      const soft = Tensor.zeros([5, 7]);
      soft.requiresGrad = true;
      expect(() => softmaxCrossEntropy(t, soft)).toThrow(/the target takes no gradient/);
    });
  });

  it('matches PyTorch: F.cross_entropy, F.softmax and F.log_softmax, forward and backward', async () => {
    const ce = CE_CASES.map((k, i) => ({ k, inp: ceInputs(k, 500 + i), dy: randomArray(lossShape(k), new Rng(50 + i), 0.5, 1.5) }));
    const sm = (['softmax', 'logSoftmax'] as const).flatMap((name) =>
      ([[[5, 7], 1], [[3, 4, 5], 1], [[2, 3, 1, 2], 0]] as [number[], number][]).map(([shape, axis], j) => {
        const rng = new Rng(3 + j);
        return { name, shape, axis, x: randomArray(shape, rng, -3, 3), dy: randomArray(shape, rng) };
      }),
    );
    const cases: TorchCase[] = [
      ...ce.map(({ k, inp, dy }): TorchCase => {
        const args = [`reduction='${k.reduction}'`, `label_smoothing=${k.eps ?? 0}`];
        if (inp.weight) args.push('weight=w');
        if (k.ignoreIndex !== undefined) args.push(`ignore_index=${k.ignoreIndex}`);
        const rowShape = k.shape.filter((_, i) => i !== 1);
        return {
          inputs: {
            x: { shape: k.shape, data: inp.x, grad: true },
            t: k.soft ? { shape: k.shape, data: inp.probs } : { shape: rowShape, data: inp.labels, int: true },
            ...(inp.weight ? { w: { shape: [k.shape[1]], data: inp.weight } } : {}),
          },
          expr: `F.cross_entropy(x, t, ${args.join(', ')})${k.reduction === 'none' ? '' : '.reshape(1)'}`,
          dy,
        };
      }),
      ...sm.map(({ name, shape, axis, x, dy }) => ({ inputs: { x: { shape, data: x, grad: true } }, expr: `F.${ops[name][2]}(x, dim=${axis})`, dy })),
    ];
    const ref = await torchRun(cases);
    for (const [i, { k, inp, dy }] of ce.entries()) {
      const { out, grads } = await runWithGrads(([t]) => gpuLoss(k, t, inp), [{ data: inp.x, shape: k.shape }], dy);
      expect(relError(out, ref[i].out), ceName(k)).toBeLessThan(1e-5);
      expect(relError(grads[0]!, ref[i].grads!.x), ceName(k)).toBeLessThan(1e-4);
    }
    for (const [j, { name, shape, axis, x, dy }] of sm.entries()) {
      const { out, grads } = await runWithGrads(([t]) => ops[name][0](t, axis), [{ data: x, shape }], dy);
      const r = ref[ce.length + j];
      expect(relError(out, r.out), `${name} [${shape}] axis ${axis}`).toBeLessThan(1e-5);
      expect(relError(grads[0]!, r.grads!.x), `${name} [${shape}] axis ${axis}`).toBeLessThan(1e-4);
    }
  });
});
