import { describe, expect, it } from 'vitest';
import { avgPool1d, avgPool2d, globalAvgPool2d, globalMaxPool2d, maxPool1d, maxPool2d, type AvgPool2dOptions, type MaxPool2dOptions } from '../src/ops/pool.ts';
import { OpError, Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { numericGrads, randomArray, relError, runWithGrads, shapeSize, toGpu, useGpu } from './helpers.ts';
import {
  avgPool1dRef, avgPool2dBackwardRef, avgPool2dRef, globalAvgPool2dRef, globalMaxPool2dRef, maxPool1dRef, maxPool2dBackwardRef, maxPool2dRef,
  type Pool1dRefOptions, type PoolRefOptions,
} from '../src/reference/pool.ts';
import { torchRun, type TorchCase } from './torch.ts';

useGpu();

/** the values as the GPU sees them (f32), so the float64 reference starts from the same inputs */
const asF32 = (a: Float64Array) => Float64Array.from(Float32Array.from(a));

/** Distinct values in [-1, 1], spaced 2/n apart in random order: no ties in any max window, and a
 *  finite-difference step never changes which element wins. */
function distinctArray(shape: readonly number[], rng: Rng): Float64Array {
  const n = shapeSize(shape);
  const order = rng.shuffle(Array.from({ length: n }, (_, i) => i));
  return asF32(Float64Array.from(order, (k) => -1 + (2 * (k + 0.5)) / n));
}

const pair = (v: number | [number, number]): [number, number] => (typeof v === 'number' ? [v, v] : v);

function refOptions(o: AvgPool2dOptions & MaxPool2dOptions): PoolRefOptions {
  return {
    kernel: pair(o.kernel),
    stride: pair(o.stride ?? o.kernel),
    padding: pair(o.padding ?? 0),
    ceilMode: o.ceilMode ?? false,
    countIncludePad: o.countIncludePad,
    dilation: pair(o.dilation ?? 1),
  };
}

// kernel 2 and 3, stride 1 and 2, padding 0 and 1, ceil mode off and on, and a non-square one
const configs: AvgPool2dOptions[] = [];
for (const kernel of [2, 3]) {
  for (const stride of [1, 2]) {
    for (const padding of [0, 1]) {
      for (const ceilMode of [false, true]) configs.push({ kernel, stride, padding, ceilMode });
    }
  }
}
configs.push({ kernel: [2, 3], stride: [1, 2], padding: [1, 1], ceilMode: true });

// batch 1 with a 7x5 image and 3 channels; 7 channels with odd and even sides
const shapes = [
  [1, 3, 7, 5],
  [2, 7, 6, 9],
];

const ops = [
  { name: 'maxPool2d', run: maxPool2d, ref: maxPool2dRef, backwardRef: maxPool2dBackwardRef, inputs: distinctArray, variants: [{}] },
  {
    name: 'avgPool2d',
    run: avgPool2d,
    ref: avgPool2dRef,
    backwardRef: avgPool2dBackwardRef,
    inputs: (shape: readonly number[], rng: Rng) => asF32(randomArray(shape, rng)),
    variants: [{ countIncludePad: true }, { countIncludePad: false }],
  },
];

describe('pooling forward and backward vs float64 reference and finite differences', () => {
  for (const op of ops) {
    for (const config of configs) {
      for (const variant of op.variants) {
        const opts = { ...config, ...variant };
        it(`${op.name} ${JSON.stringify(opts)}`, async () => {
          for (const shape of shapes) {
            const rng = new Rng(shape[1] * 13 + pair(opts.kernel)[1]);
            const x = op.inputs(shape, rng);
            const ref = op.ref(x, shape, refOptions(opts));
            const dy = asF32(randomArray(ref.shape, rng));
            const { out, grads } = await runWithGrads(([t]) => op.run(t, opts), [{ data: x, shape }], dy);
            expect(relError(out, ref.y), `forward ${JSON.stringify(shape)}`).toBeLessThan(1e-6);
            const [numeric] = numericGrads(([v]) => op.ref(v, shape, refOptions(opts)).y, [x.slice()], dy);
            expect(relError(grads[0]!, numeric), `backward ${JSON.stringify(shape)}`).toBeLessThan(1e-4);
          }
        });
      }
    }
  }

  // images spanning several workgroups in both directions (tiles of 2x4, workgroups up to 256 of them)
  for (const op of ops) {
    for (const opts of [{ kernel: 3, stride: 2, padding: 1, ceilMode: true }, { kernel: [3, 2], stride: [1, 2], padding: [1, 0] }] as AvgPool2dOptions[]) {
      it(`${op.name} ${JSON.stringify(opts)} on large images vs the reference backward`, async () => {
        for (const shape of [[1, 2, 40, 300], [3, 5, 33, 70]]) {
          const rng = new Rng(shape[3]);
          const x = op.inputs(shape, rng);
          const o = { ...refOptions(opts), ...op.variants[op.variants.length - 1] };
          const ref = op.ref(x, shape, o);
          const dy = asF32(randomArray(ref.shape, rng));
          const { out, grads } = await runWithGrads(([t]) => op.run(t, { ...opts, ...op.variants[op.variants.length - 1] }), [{ data: x, shape }], dy);
          expect(relError(out, ref.y), `forward ${JSON.stringify(shape)}`).toBeLessThan(1e-6);
          expect(relError(grads[0]!, op.backwardRef(x, shape, o, dy)), `backward ${JSON.stringify(shape)}`).toBeLessThan(1e-6);
        }
      });
    }
  }

  it('maxPool2d without a backward to follow gives the same output', async () => {
    const shape = [2, 3, 9, 7];
    const x = distinctArray(shape, new Rng(3));
    const opts = { kernel: 3, stride: 2, padding: 1 };
    const out = await tidy(() => maxPool2d(toGpu(x, shape), opts).toArray());
    expect(relError(out, maxPool2dRef(x, shape, refOptions(opts)).y)).toBe(0);
  });
});

describe("maxPool2d's vec4 kernel (W and OW multiples of 4) vs float64 reference and finite differences", () => {
  // the stem's window, 2x2, stride 1, ceil mode over an odd H, dilation, a rectangle; then images
  // of several workgroups
  const cases: [MaxPool2dOptions, number[][]][] = [
    [{ kernel: 3, stride: 2, padding: 1 }, [[2, 3, 8, 16], [1, 2, 40, 256]]],
    [{ kernel: 2, stride: 2 }, [[1, 5, 7, 8]]],
    [{ kernel: 3, stride: 1, padding: 1 }, [[2, 3, 6, 8]]],
    [{ kernel: 3, stride: 2, ceilMode: true }, [[1, 2, 9, 16]]],
    [{ kernel: 3, stride: 2, padding: 1, dilation: 2, ceilMode: true }, [[1, 3, 8, 16]]],
    [{ kernel: [3, 2], stride: [1, 2], padding: [1, 0] }, [[2, 3, 5, 16], [3, 5, 33, 72]]],
  ];
  for (const [opts, shapes] of cases) {
    it(`maxPool2d ${JSON.stringify(opts)}`, async () => {
      for (const shape of shapes) {
        const rng = new Rng(shape[3] * 7 + shape[2]);
        const x = distinctArray(shape, rng);
        const ref = maxPool2dRef(x, shape, refOptions(opts));
        expect(ref.shape[3] % 4).toBe(0);
        const dy = asF32(randomArray(ref.shape, rng));
        const { out, grads } = await runWithGrads(([t]) => maxPool2d(t, opts), [{ data: x, shape }], dy);
        expect(relError(out, ref.y), `forward ${JSON.stringify(shape)}`).toBeLessThan(1e-6);
        const small = shapeSize(shape) < 2000;
        const expected = small ? numericGrads(([v]) => maxPool2dRef(v, shape, refOptions(opts)).y, [x.slice()], dy)[0] : maxPool2dBackwardRef(x, shape, refOptions(opts), dy);
        expect(relError(grads[0]!, expected), `backward ${JSON.stringify(shape)}`).toBeLessThan(small ? 1e-4 : 1e-6);
      }
    });
  }
});

describe('dilated max pooling vs float64 reference and finite differences', () => {
  // dilation 2 with padding; 3 with stride 2 and ceil mode; different dilations per axis
  const dilated: MaxPool2dOptions[] = [
    { kernel: 3, stride: 1, padding: 1, dilation: 2 },
    { kernel: 2, stride: 2, padding: 1, dilation: 3, ceilMode: true },
    { kernel: [3, 2], stride: [2, 1], padding: [1, 1], dilation: [2, 3] },
  ];
  for (const opts of dilated) {
    it(`maxPool2d ${JSON.stringify(opts)}`, async () => {
      for (const shape of [...shapes, [1, 2, 40, 70]]) {
        const rng = new Rng(shape[3] + pair(opts.dilation!)[1]);
        const x = distinctArray(shape, rng);
        const ref = maxPool2dRef(x, shape, refOptions(opts));
        const dy = asF32(randomArray(ref.shape, rng));
        const { out, grads } = await runWithGrads(([t]) => maxPool2d(t, opts), [{ data: x, shape }], dy);
        expect(relError(out, ref.y), `forward ${JSON.stringify(shape)}`).toBeLessThan(1e-6);
        // finite differences on the small shapes, the reference's scatter on the large one
        const expected = shape[3] > 10 ? maxPool2dBackwardRef(x, shape, refOptions(opts), dy) : numericGrads(([v]) => maxPool2dRef(v, shape, refOptions(opts)).y, [x.slice()], dy)[0];
        expect(relError(grads[0]!, expected), `backward ${JSON.stringify(shape)}`).toBeLessThan(1e-4);
      }
    });
  }
});

describe('globalMaxPool2d, maxPool1d and avgPool1d vs float64 reference and finite differences', () => {
  for (const shape of [[1, 3, 7, 5], [2, 7, 1, 1], [1, 2, 40, 40]]) {
    it(`globalMaxPool2d ${JSON.stringify(shape)}`, async () => {
      const rng = new Rng(shape[2]);
      const x = distinctArray(shape, rng);
      const dy = asF32(randomArray([shape[0], shape[1], 1, 1], rng));
      const { out, grads } = await runWithGrads(([t]) => globalMaxPool2d(t), [{ data: x, shape }], dy);
      expect(relError(out, globalMaxPool2dRef(x, shape))).toBe(0);
      const [numeric] = numericGrads(([v]) => globalMaxPool2dRef(v, shape), [x.slice()], dy);
      expect(relError(grads[0]!, numeric)).toBeLessThan(1e-4);
    });
  }

  // batch 1 with odd lengths, a length-1 signal, stride 2 with padding, dilation, ceil mode
  const pool1dCases: [number[], Pool1dRefOptions][] = [
    [[1, 3, 7], { kernel: 2, stride: 2, padding: 0, ceilMode: true }],
    [[2, 5, 16], { kernel: 3, stride: 2, padding: 1, ceilMode: false, countIncludePad: false }],
    [[2, 3, 9], { kernel: 3, stride: 1, padding: 1, ceilMode: false, dilation: 2 }],
    [[3, 2, 1], { kernel: 1, stride: 1, padding: 0, ceilMode: false }],
  ];
  for (const [shape, o] of pool1dCases) {
    for (const [name, run, ref] of [['maxPool1d', maxPool1d, maxPool1dRef], ['avgPool1d', avgPool1d, avgPool1dRef]] as const) {
      if (name === 'avgPool1d' && o.dilation) continue; // dilation is max pooling's
      it(`${name} ${JSON.stringify(shape)} ${JSON.stringify(o)}`, async () => {
        const rng = new Rng(shape[2] * 7 + o.kernel);
        const x = distinctArray(shape, rng);
        const expected = ref(x, shape, o);
        const dy = asF32(randomArray(expected.shape, rng));
        const { out, grads } = await runWithGrads(([t]) => run(t, o), [{ data: x, shape }], dy);
        expect(relError(out, expected.y)).toBeLessThan(1e-6);
        const [numeric] = numericGrads(([v]) => ref(v, shape, o).y, [x.slice()], dy);
        expect(relError(grads[0]!, numeric)).toBeLessThan(1e-4);
        expect(tidy(() => run(toGpu(x, shape), o).shape)).toEqual(expected.shape);
      });
    }
  }
});

describe('globalAvgPool2d vs float64 reference and finite differences', () => {
  // plane sizes from 1 to 16900 exercise 1 to 256 invocations per plane
  const cases = [
    [1, 3, 7, 5],
    [2, 7, 1, 1],
    [2, 3, 7, 7],
    [1, 2, 40, 40],
    [1, 3, 130, 130],
  ];
  for (const shape of cases) {
    it(`${JSON.stringify(shape)}`, async () => {
      const rng = new Rng(shape[3]);
      const x = asF32(randomArray(shape, rng));
      const dy = asF32(randomArray([shape[0], shape[1]], rng));
      const { out, grads } = await runWithGrads(([t]) => globalAvgPool2d(t), [{ data: x, shape }], dy);
      expect(relError(out, globalAvgPool2dRef(x, shape))).toBeLessThan(1e-5);
      if (shape[2] * shape[3] <= 64) {
        const [numeric] = numericGrads(([v]) => globalAvgPool2dRef(v, shape), [x.slice()], dy);
        expect(relError(grads[0]!, numeric)).toBeLessThan(1e-4);
      } else {
        // dy / HW broadcast over each plane
        const expected = x.map((_, i) => dy[Math.floor(i / (shape[2] * shape[3]))] / (shape[2] * shape[3]));
        expect(relError(grads[0]!, expected)).toBeLessThan(1e-6);
      }
    });
  }
});

describe('pooling matches PyTorch', () => {
  it('max (with and without ties), avg, global average; forward and backward', async () => {
    const rng = new Rng(99);
    const tied = (shape: number[]) => Float64Array.from(randomArray(shape, rng), (v) => Math.round(v * 2) / 2);
    const rows: { shape: number[]; x: Float64Array; expr: string; gpu: (t: Tensor) => Tensor }[] = [
      { shape: [2, 3, 7, 5], x: distinctArray([2, 3, 7, 5], rng), expr: 'F.max_pool2d(x, 3, 2, 1)', gpu: (t) => maxPool2d(t, { kernel: 3, stride: 2, padding: 1 }) },
      { shape: [1, 7, 7, 5], x: distinctArray([1, 7, 7, 5], rng), expr: 'F.max_pool2d(x, 2, 2, 0, ceil_mode=True)', gpu: (t) => maxPool2d(t, { kernel: 2, ceilMode: true }) },
      { shape: [2, 3, 6, 7], x: tied([2, 3, 6, 7]), expr: 'F.max_pool2d(x, 3, 1, 1)', gpu: (t) => maxPool2d(t, { kernel: 3, stride: 1, padding: 1 }) },
      // the vec4 kernel, ties broken by the first maximum in each window
      { shape: [2, 3, 8, 16], x: tied([2, 3, 8, 16]), expr: 'F.max_pool2d(x, 3, 2, 1)', gpu: (t) => maxPool2d(t, { kernel: 3, stride: 2, padding: 1 }) },
      {
        shape: [2, 3, 7, 5],
        x: asF32(randomArray([2, 3, 7, 5], rng)),
        expr: 'F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)',
        gpu: (t) => avgPool2d(t, { kernel: 3, stride: 2, padding: 1, ceilMode: true, countIncludePad: false }),
      },
      {
        shape: [1, 7, 6, 9],
        x: asF32(randomArray([1, 7, 6, 9], rng)),
        expr: 'F.avg_pool2d(x, (2, 3), (1, 2), (1, 1), ceil_mode=True)',
        gpu: (t) => avgPool2d(t, { kernel: [2, 3], stride: [1, 2], padding: [1, 1], ceilMode: true }),
      },
      { shape: [2, 3, 7, 5], x: asF32(randomArray([2, 3, 7, 5], rng)), expr: 'F.adaptive_avg_pool2d(x, 1)', gpu: globalAvgPool2d },
      { shape: [2, 3, 9, 8], x: tied([2, 3, 9, 8]), expr: 'F.max_pool2d(x, 3, 1, 1, dilation=2)', gpu: (t) => maxPool2d(t, { kernel: 3, stride: 1, padding: 1, dilation: 2 }) },
      {
        shape: [1, 3, 8, 7],
        x: distinctArray([1, 3, 8, 7], rng),
        expr: 'F.max_pool2d(x, (2, 3), (2, 1), (1, 1), dilation=(3, 2), ceil_mode=True)',
        gpu: (t) => maxPool2d(t, { kernel: [2, 3], stride: [2, 1], padding: [1, 1], dilation: [3, 2], ceilMode: true }),
      },
      { shape: [2, 3, 7, 5], x: tied([2, 3, 7, 5]), expr: 'F.adaptive_max_pool2d(x, 1)', gpu: globalMaxPool2d },
      { shape: [2, 3, 11], x: tied([2, 3, 11]), expr: 'F.max_pool1d(x, 3, 2, 1, dilation=2)', gpu: (t) => maxPool1d(t, { kernel: 3, stride: 2, padding: 1, dilation: 2 }) },
      {
        shape: [1, 4, 10],
        x: asF32(randomArray([1, 4, 10], rng)),
        expr: 'F.avg_pool1d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)',
        gpu: (t) => avgPool1d(t, { kernel: 3, stride: 2, padding: 1, ceilMode: true, countIncludePad: false }),
      },
    ];
    const gpuRuns: { dy: Float64Array; shape: readonly number[]; out: Float32Array; grads: (Float32Array | null)[] }[] = [];
    for (const r of rows) {
      const shape = tidy(() => r.gpu(toGpu(r.x, r.shape)).shape);
      const dy = asF32(randomArray(shape, rng));
      gpuRuns.push({ dy, shape, ...(await runWithGrads(([t]) => r.gpu(t), [{ data: r.x, shape: r.shape }], dy)) });
    }
    const cases: TorchCase[] = rows.map((r, i) => ({ inputs: { x: { shape: r.shape, data: r.x, grad: true } }, expr: r.expr, dy: gpuRuns[i].dy }));
    const ref = await torchRun(cases);
    rows.forEach((r, i) => {
      expect(ref[i].shape, r.expr).toEqual(gpuRuns[i].shape);
      expect(relError(gpuRuns[i].out, ref[i].out), r.expr).toBeLessThan(1e-6);
      expect(relError(gpuRuns[i].grads[0]!, ref[i].grads!.x), r.expr).toBeLessThan(1e-6);
    });
  });
});

describe('pooling argument checks', () => {
  it('bad shapes and windows throw an OpError naming the op', () => {
    tidy(() => {
      const x = Tensor.zeros([1, 2, 3, 3]);
      expect(() => maxPool2d(Tensor.zeros([2, 3, 4]), { kernel: 2 })).toThrow(OpError);
      expect(() => maxPool2d(Tensor.zeros([2, 3, 4]), { kernel: 2 })).toThrow(/maxPool2d: x must be .*\[2,3,4\]/);
      expect(() => avgPool2d(x, { kernel: 3, padding: 2 })).toThrow(/avgPool2d: padding 2,2 must be at most half the kernel 3,3/);
      expect(() => maxPool2d(x, { kernel: 5 })).toThrow(/maxPool2d: kernel 5,5 with padding 0,0 does not fit x \[1,2,3,3\]/);
      expect(() => maxPool2d(x, { kernel: 2, stride: 0 })).toThrow(/maxPool2d: .*stride/);
      expect(() => globalAvgPool2d(Tensor.zeros([2, 3]))).toThrow(/globalAvgPool2d: x must be .*\[2,3\]/);
      expect(() => globalMaxPool2d(Tensor.zeros([2, 3]))).toThrow(/globalMaxPool2d: x must be .*\[2,3\]/);
      expect(() => maxPool2d(x, { kernel: 2, dilation: 0 })).toThrow(/maxPool2d: dilation 0,0 must be positive/);
      expect(() => maxPool2d(x, { kernel: 2, dilation: 3 })).toThrow(/maxPool2d: kernel 2,2 dilation 3,3 with padding 0,0 does not fit/);
      // taps at rows -1 and 1 of a 1-row image: the window sees only padding
      expect(() => maxPool2d(Tensor.zeros([1, 1, 1, 3]), { kernel: [2, 1], stride: 1, padding: [1, 0], dilation: [2, 1] })).toThrow(
        /maxPool2d: kernel 2,1 dilation 2,1 with padding 1,0: window row 0 of x \[1,1,1,3\] has no tap inside the image/,
      );
      expect(() => maxPool1d(x, { kernel: 2 })).toThrow(/maxPool1d: x must be a non-empty \[N,C,L\] tensor, got \[1,2,3,3\]/);
      expect(() => avgPool1d(Tensor.zeros([1, 2, 3]), { kernel: 4 })).toThrow(/avgPool2d: kernel 1,4 with padding 0,0 does not fit x \[1,2,1,3\]/);
    });
  });
});
