import { afterEach, describe, expect, it, vi } from 'vitest';
import { getGpu } from '../src/gpu/index.ts';
import { batchNorm2d } from '../src/ops/batchnorm.ts';
import { OpError, Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { dispatchesOf, numericGrads, randomArray, relError, toGpu, useGpu, withGpuLayouts } from './helpers.ts';
import { batchNorm2dRef, type BatchNormRefOptions } from '../src/reference/batchnorm.ts';
import { torchRun, type TorchCase } from './torch.ts';

useGpu();
afterEach(() => vi.restoreAllMocks());

/** the values as the GPU sees them (f32), so the float64 reference starts from the same inputs */
const asF32 = (a: Float64Array) => Float64Array.from(Float32Array.from(a));

interface BnCase {
  shape: number[];
  x: Float64Array;
  gamma: Float64Array;
  beta: Float64Array;
  runningMean: Float64Array;
  runningVar: Float64Array;
  dy: Float64Array;
}

/** x ~ U(offset-1, offset+1); running var in [0.5, 1.5] */
function bnCase(shape: number[], seed: number, offset = 0): BnCase {
  const rng = new Rng(seed);
  const C = [shape[1]];
  return {
    shape,
    x: asF32(randomArray(shape, rng, offset - 1, offset + 1)),
    gamma: asF32(randomArray(C, rng, 0.5, 1.5)),
    beta: asF32(randomArray(C, rng)),
    runningMean: asF32(randomArray(C, rng, -0.5, 0.5)),
    runningVar: asF32(randomArray(C, rng, 0.5, 1.5)),
    dy: asF32(randomArray(shape, rng)),
  };
}

interface BnRun {
  y: Float32Array;
  grads: (Float32Array | null)[]; // x, gamma, beta
  runningMean: Float32Array;
  runningVar: Float32Array;
}

/**
 * batchNorm2d on the GPU: one call per x in `xs` (default [c.x]) on the same running stats, then
 * backward of the last output with c.dy when `needs` asks for any gradient of (x, gamma, beta).
 */
async function runBn(c: BnCase, training: boolean, affine: boolean, needs = [false, false, false], xs = [c.x]): Promise<BnRun> {
  return tidy(async () => {
    const C = c.shape[1];
    const gamma = affine ? toGpu(c.gamma, [C], needs[1]) : null;
    const beta = affine ? toGpu(c.beta, [C], needs[2]) : null;
    const runningMean = toGpu(c.runningMean, [C]);
    const runningVar = toGpu(c.runningVar, [C]);
    let x!: Tensor;
    let y!: Tensor;
    for (const data of xs) {
      x = toGpu(data, c.shape, needs[0]);
      y = batchNorm2d(x, gamma, beta, runningMean, runningVar, { training });
    }
    if (needs.some(Boolean)) y.backward(toGpu(c.dy, c.shape));
    const params = [x, gamma, beta];
    const grads = await Promise.all(params.map((t) => (t?.grad ? t.grad.toArray() : null)));
    for (const t of params) t?.grad?.release();
    return { y: await y.toArray(), grads, runningMean: await runningMean.toArray(), runningVar: await runningVar.toArray() };
  });
}

const OPTS = { momentum: 0.1, eps: 1e-5 };

/** the reference on (x, gamma, beta), leaving the case's running stats untouched */
function refForward(c: BnCase, training: boolean, affine: boolean) {
  const opts: BatchNormRefOptions = { training, ...OPTS };
  return (xs: Float64Array[]) => batchNorm2dRef(xs[0], c.shape, affine ? xs[1] : null, affine ? xs[2] : null, c.runningMean.slice(), c.runningVar.slice(), opts);
}

describe('batchNorm2d forward vs float64 reference', () => {
  const cases: [string, number[], number][] = [
    ['batch 1, 7x5, 3 channels', [1, 3, 7, 5], 0],
    ['7x5, 7 channels', [2, 7, 7, 5], 0],
    ['4x4 (vec4 path)', [3, 3, 4, 4], 0],
    ['1x1 spatial, batch 4', [4, 7, 1, 1], 0],
    ['several slices per channel, vec4 path, mean 100', [2, 3, 96, 96], 100],
    ['several slices per channel, scalar path', [3, 2, 75, 75], 0],
  ];
  for (const [name, shape, offset] of cases) {
    for (const affine of [true, false]) {
      it(`training, ${affine ? 'affine' : 'no affine'}: ${name} ${JSON.stringify(shape)}`, async () => {
        const c = bnCase(shape, shape[1] * 31 + shape[2] + offset, offset);
        const rm = c.runningMean.slice();
        const rv = c.runningVar.slice();
        const y = batchNorm2dRef(c.x, shape, affine ? c.gamma : null, affine ? c.beta : null, rm, rv, { training: true, ...OPTS });
        const got = await runBn(c, true, affine);
        expect(relError(got.y, y)).toBeLessThan(1e-4);
        expect(relError(got.runningMean, rm)).toBeLessThan(1e-5);
        expect(relError(got.runningVar, rv)).toBeLessThan(1e-4);
      });
    }
  }

  for (const shape of [[1, 7, 1, 1], [1, 3, 7, 5], [2, 3, 4, 4]]) {
    it(`eval ${JSON.stringify(shape)}: running stats used and left alone`, async () => {
      const c = bnCase(shape, 5 + shape[2]);
      const y = batchNorm2dRef(c.x, shape, c.gamma, c.beta, c.runningMean.slice(), c.runningVar.slice(), { training: false, ...OPTS });
      const got = await runBn(c, false, true);
      expect(relError(got.y, y)).toBeLessThan(1e-5);
      expect(relError(got.runningMean, c.runningMean)).toBe(0);
      expect(relError(got.runningVar, c.runningVar)).toBe(0);
    });
  }

  it('running stats after several training calls', async () => {
    const c = bnCase([2, 7, 7, 5], 77);
    const rng = new Rng(78);
    const xs = [c.x, asF32(randomArray(c.shape, rng, 1, 3)), asF32(randomArray(c.shape, rng, -2, 0))];
    const rm = c.runningMean.slice();
    const rv = c.runningVar.slice();
    let y: Float64Array = new Float64Array(0);
    for (const x of xs) y = batchNorm2dRef(x, c.shape, c.gamma, c.beta, rm, rv, { training: true, ...OPTS });
    const got = await runBn(c, true, true, [false, false, false], xs);
    expect(relError(got.y, y)).toBeLessThan(1e-4);
    expect(relError(got.runningMean, rm)).toBeLessThan(1e-5);
    expect(relError(got.runningVar, rv)).toBeLessThan(1e-5);
  });
});

describe('batchNorm2d backward vs finite differences', () => {
  const cases: [string, number[], boolean, boolean][] = [
    ['training, batch 1, 7x5', [1, 3, 7, 5], true, true],
    ['training, 2x2 (vec4 path), 7 channels', [2, 7, 2, 2], true, true],
    ['training, 1x1 spatial', [3, 3, 1, 1], true, true],
    ['training, no affine', [2, 3, 5, 7], true, false],
    ['eval, batch 1, 7x5', [1, 3, 7, 5], false, true],
    ['eval, no affine, vec4 path', [2, 3, 2, 4], false, false],
    ['training, vec4 path over slices (not a small map)', [2, 3, 24, 24], true, true],
    ['eval, vec4 path over slices (not a small map)', [2, 3, 24, 24], false, true],
  ];
  for (const [name, shape, training, affine] of cases) {
    it(`${name} ${JSON.stringify(shape)}`, async () => {
      const c = bnCase(shape, 11 * shape[1] + shape[3]);
      const needs = [true, affine, affine];
      const got = await runBn(c, training, affine, needs);
      const which = affine ? [0, 1, 2] : [0];
      const numeric = numericGrads(refForward(c, training, affine), [c.x.slice(), c.gamma.slice(), c.beta.slice()], c.dy, which);
      which.forEach((k, i) => expect(relError(got.grads[k]!, numeric[i]), `grad ${k}`).toBeLessThan(1e-4));
    });
  }

  it('frozen gamma and beta still give dx (training and eval)', async () => {
    for (const training of [true, false]) {
      const c = bnCase([2, 3, 7, 5], 21);
      const got = await runBn(c, training, true, [true, false, false]);
      expect(got.grads[1]).toBeNull();
      expect(got.grads[2]).toBeNull();
      const [numeric] = numericGrads(refForward(c, training, true), [c.x.slice(), c.gamma.slice(), c.beta.slice()], c.dy, [0]);
      expect(relError(got.grads[0]!, numeric)).toBeLessThan(1e-4);
    }
  });

  it('computes only the gradients asked for', async () => {
    const c = bnCase([2, 3, 7, 5], 22);
    const labels = (): string[] => spy.mock.calls.map(([args]) => args.label ?? '');
    const spy = vi.spyOn(getGpu(), 'dispatch');
    // x frozen: dgamma and dbeta, no dx kernel
    const got = await runBn(c, true, true, [false, true, true]);
    expect(labels().some((l) => l.includes('.dx'))).toBe(false);
    expect(labels().some((l) => l.includes('.gradSums'))).toBe(true);
    const numeric = numericGrads(refForward(c, true, true), [c.x.slice(), c.gamma.slice(), c.beta.slice()], c.dy, [1, 2]);
    expect(relError(got.grads[1]!, numeric[0])).toBeLessThan(1e-4);
    expect(relError(got.grads[2]!, numeric[1])).toBeLessThan(1e-4);
    // eval with only dx wanted: a plain affine map, no reduction
    spy.mockClear();
    await runBn(c, false, true, [true, false, false]);
    expect(labels().some((l) => l.includes('.gradSums'))).toBe(false);
    expect(labels().some((l) => l.includes('.dx'))).toBe(true);
  });
});

// Small maps (a channel's N*H*W values up to 1024, C*H*W a multiple of 4) take one kernel per
// pass: one workgroup per group of channels whose planes together are whole vec4s (four 7x7 planes;
// on a CPU adapter as many as a workgroup's 64 lanes cover at one image: 4 of 7x7, 16 of 4x4, 3
// of 2x2 at C 3), its lanes walking images nGroups at a time. GPU layouts: the fewest channels
// whose planes at every image fill the lanes (4 of 7x7; 4x4 at N 2: 8). The shapes below cover
// 7x7 and 4x4 maps, a last group of fewer channels ([2,20,4,4]: 16 + 4 on a CPU, 8 + 8 + 4 on a
// GPU), N = 1, images that do not divide among the lanes ([40,3,2,2]: 21 at once on a CPU,
// [20,2,4,4]: 16 on a GPU), more channels than a workgroup's lanes ([4,72,1,1]: 64 + 8) and a
// large mean.
describe('batchNorm2d on small maps (one kernel per pass)', () => {
  const shapes: [number[], number][] = [
    [[2, 8, 7, 7], 0],
    [[1, 12, 7, 7], 0],
    [[3, 8, 7, 7], 100],
    [[2, 20, 4, 4], 0],
    [[1, 8, 4, 4], 0],
    [[20, 2, 4, 4], 0],
    [[40, 3, 2, 2], 0],
    [[4, 72, 1, 1], 0],
  ];
  const layouts: [string, <T>(fn: () => Promise<T>) => Promise<T>][] = [
    ['', (fn) => fn()],
    [', GPU layouts', withGpuLayouts],
  ];
  for (const [where, within] of layouts) {
    for (const [shape, offset] of shapes) {
      it(`forward, training and eval${where}: ${JSON.stringify(shape)}${offset ? ` mean ${offset}` : ''}, one dispatch each`, async () => {
        const c = bnCase(shape, 3 * shape[1] + shape[0] + offset, offset);
        const rm = c.runningMean.slice();
        const rv = c.runningVar.slice();
        const y = batchNorm2dRef(c.x, shape, c.gamma, c.beta, rm, rv, { training: true, ...OPTS });
        const train = await within(() => dispatchesOf('batchnorm', () => runBn(c, true, true)));
        expect(train.dispatches).toBe(1);
        expect(relError(train.result.y, y)).toBeLessThan(1e-4);
        expect(relError(train.result.runningMean, rm)).toBeLessThan(1e-5);
        expect(relError(train.result.runningVar, rv)).toBeLessThan(1e-4);
        const evalY = batchNorm2dRef(c.x, shape, c.gamma, c.beta, c.runningMean.slice(), c.runningVar.slice(), { training: false, ...OPTS });
        const evaluated = await within(() => runBn(c, false, true));
        expect(relError(evaluated.y, evalY)).toBeLessThan(1e-5);
        expect(relError(evaluated.runningMean, c.runningMean)).toBe(0);
        expect(relError(evaluated.runningVar, c.runningVar)).toBe(0);
      });
    }
  }

  const backwardCases: [number[], boolean, boolean][] = [
    [[2, 8, 7, 7], true, true],
    [[1, 12, 7, 7], true, false],
    [[2, 20, 4, 4], true, true],
    [[20, 2, 4, 4], true, true],
    [[40, 3, 2, 2], true, true],
    [[2, 8, 7, 7], false, true],
    [[1, 8, 4, 4], false, false],
  ];
  for (const [where, within] of layouts) {
    for (const [shape, training, affine] of backwardCases) {
      it(`backward vs finite differences${where}: ${training ? 'training' : 'eval'}, ${affine ? 'affine' : 'no affine'} ${JSON.stringify(shape)}`, async () => {
        const c = bnCase(shape, 13 * shape[1] + shape[0]);
        const needs = [true, affine, affine];
        const run = await within(() => dispatchesOf('batchnorm', () => runBn(c, training, affine, needs)));
        expect(run.dispatches).toBe(2); // forward, backward
        const which = affine ? [0, 1, 2] : [0];
        const numeric = numericGrads(refForward(c, training, affine), [c.x.slice(), c.gamma.slice(), c.beta.slice()], c.dy, which);
        which.forEach((k, i) => expect(relError(run.result.grads[k]!, numeric[i]), `grad ${k}`).toBeLessThan(1e-4));
      });
    }
  }

  it('more groups than a grid dimension holds: the 2-D grid\'s extra workgroups write nothing', async () => {
    // 7 groups of four 7x7 channels, folded into [3, 3] workgroups on an adapter of 3 per dimension
    const gpu = getGpu() as { limits: GPUSupportedLimits };
    const limits = gpu.limits;
    const copy: Record<string, number> = {};
    for (const k in limits) copy[k] = (limits as unknown as Record<string, number>)[k];
    gpu.limits = { ...copy, maxComputeWorkgroupsPerDimension: 3 } as unknown as GPUSupportedLimits;
    try {
      const shape = [2, 28, 7, 7];
      const c = bnCase(shape, 41);
      const rm = c.runningMean.slice();
      const rv = c.runningVar.slice();
      const y = batchNorm2dRef(c.x, shape, c.gamma, c.beta, rm, rv, { training: true, ...OPTS });
      const got = await runBn(c, true, true, [true, true, true]);
      expect(relError(got.y, y)).toBeLessThan(1e-4);
      expect(relError(got.runningMean, rm)).toBeLessThan(1e-5);
      expect(relError(got.runningVar, rv)).toBeLessThan(1e-4);
      const numeric = numericGrads(refForward(c, true, true), [c.x.slice(), c.gamma.slice(), c.beta.slice()], c.dy, [0, 1, 2]);
      numeric.forEach((g, k) => expect(relError(got.grads[k]!, g), `grad ${k}`).toBeLessThan(1e-4));
    } finally {
      gpu.limits = limits;
    }
  });

  it('only the gradients asked for: dgamma and dbeta without dx, dx alone', async () => {
    const c = bnCase([2, 8, 7, 7], 23);
    const got = await runBn(c, true, true, [false, true, true]);
    expect(got.grads[0]).toBeNull();
    const numeric = numericGrads(refForward(c, true, true), [c.x.slice(), c.gamma.slice(), c.beta.slice()], c.dy, [0, 1, 2]);
    expect(relError(got.grads[1]!, numeric[1])).toBeLessThan(1e-4);
    expect(relError(got.grads[2]!, numeric[2])).toBeLessThan(1e-4);
    for (const training of [true, false]) {
      const frozen = await runBn(c, training, true, [true, false, false]);
      expect(frozen.grads[1]).toBeNull();
      expect(frozen.grads[2]).toBeNull();
      const [dx] = numericGrads(refForward(c, training, true), [c.x.slice(), c.gamma.slice(), c.beta.slice()], c.dy, [0]);
      expect(relError(frozen.grads[0]!, dx)).toBeLessThan(1e-4);
    }
  });
});

describe('batchNorm2d matches PyTorch', () => {
  it('training, eval, no affine, running stats over several calls, small maps', async () => {
    const train = bnCase([2, 3, 7, 5], 31);
    const small = bnCase([4, 8, 7, 7], 35); // one kernel per pass
    const smallEval = bnCase([2, 20, 4, 4], 36);
    const evalCase = bnCase([1, 7, 5, 3], 32);
    const plain = bnCase([2, 7, 4, 4], 33);
    const rng = new Rng(34);
    const xs = [train.x, asF32(randomArray(train.shape, rng, 0, 2)), asF32(randomArray(train.shape, rng, -1, 3))];
    const C = (c: BnCase) => [c.shape[1]];
    const inputs = (c: BnCase, affine: boolean) => ({
      x: { shape: c.shape, data: c.x, grad: true },
      ...(affine ? { w: { shape: C(c), data: c.gamma, grad: true }, b: { shape: C(c), data: c.beta, grad: true } } : {}),
      rm: { shape: C(c), data: c.runningMean },
      rv: { shape: C(c), data: c.runningVar },
    });
    const call = (x: string, affine: boolean, training: boolean) =>
      `F.batch_norm(${x}, rm, rv, ${affine ? 'w, b' : 'None, None'}, training=${training ? 'True' : 'False'}, momentum=0.1, eps=1e-5)`;
    const cases: TorchCase[] = [
      { inputs: inputs(train, true), expr: call('x', true, true), dy: train.dy, outputs: ['rm', 'rv'] },
      { inputs: inputs(evalCase, true), expr: call('x', true, false), dy: evalCase.dy },
      { inputs: inputs(plain, false), expr: call('x', false, true), dy: plain.dy, outputs: ['rm', 'rv'] },
      {
        inputs: { ...inputs(train, true), x1: { shape: train.shape, data: xs[1] }, x2: { shape: train.shape, data: xs[2] } },
        prelude: `${call('x', true, true)}\n${call('x1', true, true)}`,
        expr: call('x2', true, true),
        outputs: ['rm', 'rv'],
      },
      { inputs: inputs(small, true), expr: call('x', true, true), dy: small.dy, outputs: ['rm', 'rv'] },
      { inputs: inputs(smallEval, true), expr: call('x', true, false), dy: smallEval.dy },
    ];
    const ref = await torchRun(cases);
    const runs = [
      await runBn(train, true, true, [true, true, true]),
      await runBn(evalCase, false, true, [true, true, true]),
      await runBn(plain, true, false, [true, false, false]),
      await runBn(train, true, true, [false, false, false], xs),
      await runBn(small, true, true, [true, true, true]),
      await runBn(smallEval, false, true, [true, true, true]),
    ];
    runs.forEach((got, i) => {
      const r = ref[i];
      expect(relError(got.y, r.out), `case ${i} y`).toBeLessThan(1e-4);
      for (const [k, name] of ['x', 'w', 'b'].entries()) {
        if (r.grads?.[name]) expect(relError(got.grads[k]!, r.grads[name]), `case ${i} grad ${name}`).toBeLessThan(1e-4);
      }
      if (r.extra.rm) {
        expect(relError(got.runningMean, r.extra.rm), `case ${i} running mean`).toBeLessThan(1e-5);
        expect(relError(got.runningVar, r.extra.rv), `case ${i} running var`).toBeLessThan(1e-5);
      }
    });
    // every gradient torch computed was checked
    expect(Object.keys(ref[0].grads!)).toEqual(['x', 'w', 'b']);
    expect(Object.keys(ref[2].grads!)).toEqual(['x']);
    expect(Object.keys(ref[4].grads!)).toEqual(['x', 'w', 'b']);
    expect(Object.keys(ref[5].grads!)).toEqual(['x', 'w', 'b']);
  });
});

describe('batchNorm2d argument checks', () => {
  it('bad shapes and one value per channel in training throw an OpError naming the op', () => {
    tidy(() => {
      const x = Tensor.zeros([2, 3, 4, 4]);
      const c3 = Tensor.ones([3]);
      const c4 = Tensor.ones([4]);
      const train = { training: true };
      expect(() => batchNorm2d(x, c4, c3, c3, c3, train)).toThrow(OpError);
      expect(() => batchNorm2d(x, c4, c3, c3, c3, train)).toThrow(/batchNorm2d: weight must be \[3\] for x \[2,3,4,4\], got \[4\]/);
      expect(() => batchNorm2d(x, c3, c3, c3, c4, train)).toThrow(/batchNorm2d: runningVar/);
      expect(() => batchNorm2d(Tensor.zeros([2, 3, 4]), c3, c3, c3, c3, train)).toThrow(/batchNorm2d: x must be .*\[2,3,4\]/);
      const single = Tensor.zeros([1, 3, 1, 1]);
      expect(() => batchNorm2d(single, c3, c3, c3, c3, train)).toThrow(/batchNorm2d: training needs more than 1 value per channel/);
      expect(() => batchNorm2d(single, c3, c3, c3, c3, { training: false })).not.toThrow();
    });
  });
});
