import { describe, expect, it } from 'vitest';
import { getGpu, type DispatchArgs } from '../src/gpu/index.ts';
import { GEMM_CANDIDATES, gemm, gemmStrided, linear, matmul, setGemmBindingLimit, setGemmSubgroups, setGemmTiling, type GemmEpilogue, type GemmTiling } from '../src/ops/matmul.ts';
import { OpError, Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { dispatchesOf, numericGrads, randomArray, relError, runWithGrads, toGpu, useGpu } from './helpers.ts';
import { linearRef, matmulNdRef, matmulRef } from '../src/reference/matmul.ts';
import { torchRun, type TorchCase } from './torch.ts';

useGpu();

const TRANSPOSES = [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
] as const;

/** stored shapes of a and b for C[M,N] = op(A) op(B) */
function storedShapes(M: number, N: number, K: number, transA: boolean, transB: boolean): [number[], number[]] {
  return [transA ? [K, M] : [M, K], transB ? [N, K] : [K, N]];
}

const tag = (transA: boolean, transB: boolean) => `${transA ? 'A^T' : 'A'} ${transB ? 'B^T' : 'B'}`;

describe('matmul forward', () => {
  // [M, N, K]: the odd shapes are multiples of neither the 4x4 blocks nor the workgroup tiles and take
  // scalar loads; 16x24x36 takes vec4 loads for both operands; in 8x12x9 the operands whose rows run
  // along M or N take vec4 loads and end with a partial K step; M = 1 and N = 1 are a single row and
  // column. (Each operand layout is its own pipeline, compiled for seconds on lavapipe: the shapes
  // are chosen to cover each path without compiling every combination.)
  const shapes = [[1, 1, 1], [7, 5, 3], [33, 17, 9], [65, 3, 130], [16, 24, 36], [8, 12, 9], [1, 37, 21], [41, 1, 13], [70, 70, 70]];
  for (const [transA, transB] of TRANSPOSES) {
    it(`${tag(transA, transB)} matches the float64 reference`, async () => {
      const rng = new Rng(11 + Number(transA) * 2 + Number(transB));
      for (const [M, N, K] of shapes) {
        const [aShape, bShape] = storedShapes(M, N, K, transA, transB);
        const a = randomArray(aShape, rng);
        const b = randomArray(bShape, rng);
        const out = await tidy(() => matmul(toGpu(a, aShape), toGpu(b, bShape), { transA, transB }).toArray());
        expect(relError(out, matmulRef(a, b, M, N, K, { transA, transB })), `${M}x${N}x${K}`).toBeLessThan(1e-5);
      }
    });
  }

  it('gemmShared without subgroups (the A tile through workgroup memory) gives the same results', async () => {
    const rng = new Rng(4);
    setGemmSubgroups(false);
    try {
      // a full subgroup's workgroup, and a narrow one (4 lanes)
      for (const [tiling, [M, N, K]] of [[{ TM: 8, NB: 2 }, [33, 17, 9]], [{ TM: 8, NB: 2 }, [70, 70, 70]], [{ TM: 16, NB: 1, lanes: 4 }, [33, 17, 9]]] as const) {
        const a = randomArray([M, K], rng);
        const b = randomArray([K, N], rng);
        const bias = randomArray([N], rng);
        const out = await tidy(() => gemm(toGpu(a, [M, K]), toGpu(b, [K, N]), { bias: toGpu(bias, [N]) }, { kernel: 'gemmShared', ...tiling }).toArray());
        expect(relError(out, matmulRef(a, b, M, N, K, { bias })), `${JSON.stringify(tiling)} ${M}x${N}x${K}`).toBeLessThan(1e-5);
      }
    } finally {
      setGemmSubgroups(true);
    }
  });

  it('gemm adds the bias to every row', async () => {
    const rng = new Rng(5);
    for (const [M, N, K] of [[9, 7, 5], [12, 16, 8]]) {
      const a = randomArray([M, K], rng);
      const b = randomArray([K, N], rng);
      const bias = randomArray([N], rng);
      const out = await tidy(() => gemm(toGpu(a, [M, K]), toGpu(b, [K, N]), { bias: toGpu(bias, [N]) }).toArray());
      expect(relError(out, matmulRef(a, b, M, N, K, { bias }))).toBeLessThan(1e-5);
    }
  });

  it('K = 0 gives zeros (plus bias)', async () => {
    const bias = new Float64Array([1, -2, 3, 4]);
    const out = await tidy(() => gemm(Tensor.empty([2, 0]), Tensor.empty([0, 4]), { bias: toGpu(bias, [4]) }).toArray());
    expect(Array.from(out)).toEqual([1, -2, 3, 4, 1, -2, 3, 4]);
  });
});

/** The store's epilogue in float64: C = relu(a * (s + bias - m) + c + residual), bias and the
 *  (_, a, c, m) table per row of C (along rows) or per column. */
function epilogueRef(s: Float64Array, M: number, N: number, e: { rows: boolean; bias?: Float64Array; affine?: Float64Array; residual?: Float64Array; relu?: boolean }): Float64Array {
  return s.map((v, at) => {
    const i = e.rows ? Math.floor(at / N) : at % N;
    const [a, c, m] = e.affine ? [e.affine[4 * i + 1], e.affine[4 * i + 2], e.affine[4 * i + 3]] : [1, 0, 0];
    const r = a * (v + (e.bias ? e.bias[i] : 0) - m) + c + (e.residual ? e.residual[at] : 0);
    return e.relu ? Math.max(r, 0) : r;
  });
}

describe("the GEMM store's epilogue (bias, affine table, residual, ReLU)", () => {
  // along rows (a convolution's channels) and columns (linear), each part alone (every part at
  // every tiling: below); 33x17x9 stores scalars past tile edges; outputs poisoned
  const parts = [
    { bias: true, affine: true, residual: true, relu: true },
    { bias: true },
    { affine: true },
    { residual: true },
    { relu: true },
  ];
  const run = (M: number, N: number, K: number, rows: boolean, part: (typeof parts)[number], rng: Rng, tiling?: GemmTiling) => {
    const a = randomArray([M, K], rng);
    const b = randomArray([K, N], rng);
    const len = rows ? M : N;
    const bias = part.bias ? randomArray([len], rng) : undefined;
    const affine = part.affine ? randomArray([len, 4], rng) : undefined;
    const residual = part.residual ? randomArray([M, N], rng) : undefined;
    const want = epilogueRef(matmulRef(a, b, M, N, K), M, N, { rows, bias, affine, residual, relu: part.relu });
    const got = tidy(() => {
      const epilogue: GemmEpilogue = {
        along: rows ? 'rows' : 'cols', relu: part.relu,
        bias: bias && toGpu(bias, [len]), affine: affine && toGpu(affine, [len, 4]), residual: residual && toGpu(residual, [M, N]),
      };
      return gemm(toGpu(a, [M, K]), toGpu(b, [K, N]), { epilogue }, tiling).toArray();
    });
    return { got, want };
  };
  it('each part alone, along rows and columns', async () => {
    const rng = new Rng(82);
    for (const rows of [true, false]) {
      for (const part of parts.slice(1)) {
        const { got, want } = run(33, 17, 9, rows, part, rng, GEMM_CANDIDATES[0]);
        expect(relError(await got, want), `${JSON.stringify(part)} along ${rows ? 'rows' : 'columns'}`).toBeLessThan(1e-5);
      }
    }
  });

  it('applies once, to the whole sum, when K runs in chunks', async () => {
    const rng = new Rng(83);
    for (const rows of [true, false]) {
      const { result, dispatches } = await withBindingLimit(512, async () => {
        const r = run(9, 13, 70, rows, parts[0], rng);
        return { got: await r.got, want: r.want };
      });
      expect(dispatches, 'chunked').toBeGreaterThan(3);
      expect(relError(result.got, result.want), rows ? 'rows' : 'columns').toBeLessThan(1e-5);
    }
  });

  it('refuses tensors of the wrong shape, and an epilogue on a sum over the batch', () => {
    tidy(() => {
      const [a, b] = [Tensor.ones([3, 2]), Tensor.ones([2, 5])];
      expect(() => gemm(a, b, { epilogue: { along: 'rows', bias: Tensor.ones([5]) } })).toThrow(/bias must be \[3\]/);
      expect(() => gemm(a, b, { epilogue: { along: 'cols', affine: Tensor.ones([5, 3]) } })).toThrow(/affine must be \[5,4\]/);
      expect(() => gemm(a, b, { epilogue: { along: 'cols', residual: Tensor.ones([2, 5]) } })).toThrow(/residual \[2,5\] must have C's layout/);
      const c = Tensor.empty([3, 5]);
      expect(() => gemmStrided('t', 't', { M: 3, N: 5, K: 2, batch: 2 }, { t: a, stride: 0 }, { t: Tensor.ones([2, 2, 5]), stride: 10 }, { t: c, stride: 0 }, undefined, { along: 'rows', relu: true }))
        .toThrow(/not to a sum over the batch/);
    });
  });
});

/** The parts of the epilogue a check applies: every one, along C's rows or its columns. */
type EpilogueCheck = { rows: boolean } | null;

/**
 * `batch` GEMMs C[z] = epilogue(op(A[z]) op(B[z])) on random operands stored at strides one after
 * the other (gemmStrided; at tiling `tiling`, else the default), against float64; outputs poisoned.
 * The epilogue, when given, has every part: bias, table, a residual per item, ReLU.
 */
async function checkGemm(M: number, N: number, K: number, o: { transA: boolean; transB: boolean; batch: number; epilogue: EpilogueCheck }, rng: Rng, tiling?: GemmTiling): Promise<void> {
  const { transA, transB, batch, epilogue } = o;
  const [aShape, bShape] = storedShapes(M, N, K, transA, transB);
  const a = randomArray([batch, ...aShape], rng);
  const b = randomArray([batch, ...bShape], rng);
  const len = epilogue?.rows ? M : N;
  const bias = randomArray([len], rng);
  const affine = randomArray([len, 4], rng);
  const residual = randomArray([batch, M, N], rng);
  const want = new Float64Array(batch * M * N);
  for (let z = 0; z < batch; z++) {
    const s = matmulRef(a.subarray(z * M * K, (z + 1) * M * K), b.subarray(z * K * N, (z + 1) * K * N), M, N, K, { transA, transB });
    want.set(epilogue ? epilogueRef(s, M, N, { rows: epilogue.rows, bias, affine, residual: residual.subarray(z * M * N, (z + 1) * M * N), relu: true }) : s, z * M * N);
  }
  if (epilogue) expect(want.some((v) => v === 0) && want.some((v) => v > 0), 'the ReLU bites').toBe(true);
  const got = await tidy(() => {
    const c = Tensor.empty([batch, M, N]);
    const e: GemmEpilogue | null = epilogue && { along: epilogue.rows ? 'rows' : 'cols', bias: toGpu(bias, [len]), affine: toGpu(affine, [len, 4]), residual: toGpu(residual, [batch, M, N]), relu: true };
    setGemmTiling(tiling ?? null);
    try {
      gemmStrided('t', 't', { M, N, K, batch }, { t: toGpu(a, [batch, ...aShape]), stride: M * K, trans: transA }, { t: toGpu(b, [batch, ...bShape]), stride: K * N, trans: transB },
        { t: c, stride: M * N }, undefined, e);
    } finally {
      setGemmTiling(null);
    }
    return c.toArray();
  });
  const what = `${tiling ? JSON.stringify(tiling) : 'default tiling'} ${tag(transA, transB)} ${M}x${N}x${K}${batch > 1 ? ` x${batch}` : ''}${epilogue ? ` epilogue along ${epilogue.rows ? 'rows' : 'columns'}` : ''}`;
  expect(relError(got, want), what).toBeLessThan(1e-5);
}

/**
 * C[g, m, p] = relu(sum_k op(A)[m, k] B[g, k, p] + bias[m] + R[g, m, p]) as one GEMM of G*P columns
 * in groups of P (B: [G, K, P], C: [G, M, P]), against float64; outputs poisoned.
 */
async function checkFolded(M: number, K: number, G: number, P: number, transA: boolean, rng: Rng, tiling?: GemmTiling): Promise<void> {
  const a = randomArray(transA ? [K, M] : [M, K], rng);
  const b = randomArray([G, K, P], rng);
  const bias = randomArray([M], rng);
  const residual = randomArray([G, M, P], rng);
  const want = new Float64Array(G * M * P);
  for (let g = 0; g < G; g++) {
    const s = matmulRef(a, b.subarray(g * K * P, (g + 1) * K * P), M, P, K, { transA });
    want.set(epilogueRef(s, M, P, { rows: true, bias, residual: residual.subarray(g * M * P, (g + 1) * M * P), relu: true }), g * M * P);
  }
  setGemmTiling(tiling ?? null);
  const got = await tidy(() => {
    const c = Tensor.empty([G, M, P]);
    gemmStrided('t', 't', { M, N: G * P, K, batch: 1, P }, { t: toGpu(a, transA ? [K, M] : [M, K]), stride: 0, trans: transA },
      { t: toGpu(b, [G, K, P]), stride: 0, group: K * P }, { t: c, stride: 0, group: M * P }, undefined,
      { along: 'rows', bias: toGpu(bias, [M]), residual: toGpu(residual, [G, M, P]), relu: true });
    return c.toArray();
  }).finally(() => setGemmTiling(null));
  expect(relError(got, want), `${tiling ? JSON.stringify(tiling) : 'default tiling'} M ${M} K ${K} ${G} images of ${P}${transA ? ', A^T' : ''}`).toBeLessThan(1e-5);
}

describe('a GEMM over images folded into its columns (B: [G, K, P], C: [G, M, P])', () => {
  // P 5 and 7 (lines cross images, scalar stores), P 8 (vec4); M and G*P multiples of no tile; A as
  // stored and transposed (the input gradient's w^T); with the epilogue along rows (every tiling:
  // below)
  it('matches the float64 reference', async () => {
    const rng = new Rng(91);
    for (const [M, K, G, P] of [[33, 9, 3, 5], [20, 12, 5, 8], [13, 7, 4, 7]]) {
      for (const transA of [false, true]) await checkFolded(M, K, G, P, transA, rng);
    }
  });

  it('refuses groups on A or on a transposed B', () => {
    tidy(() => {
      const m = (shape: number[]) => ({ t: Tensor.ones(shape), stride: 0, group: 6 });
      expect(() => gemmStrided('t', 't', { M: 2, N: 6, K: 3, batch: 1, P: 3 }, m([2, 3]), m([2, 3, 3]), m([2, 2, 3]))).toThrow(/grouped columns/);
      expect(() => gemmStrided('t', 't', { M: 2, N: 6, K: 3, batch: 1, P: 3 }, { t: Tensor.ones([2, 3]), stride: 0 }, { ...m([6, 3]), trans: true }, m([2, 2, 3]))).toThrow(/grouped columns/);
    });
  });
});

describe('every candidate tiling (GEMM_CANDIDATES), each in two pipelines', () => {
  // What tilings do differently is in their loops over the tile: loading lines (scalar or vec4,
  // stored as op() reads them or transposed), sharing them, the last partial step along K, storing
  // past M and N. Each candidate runs in two pipelines, scalar operands in one transpose layout and
  // vec4 operands in another (over the eight candidates, every layout of each kind twice), and each
  // pipeline runs shapes that are multiples of no tile with a partial K step (vec4 operands have one
  // where neither operand's stored rows run along K), a batch of items at strides, the epilogue with
  // every part along rows and along columns, and, where B is stored [K, N], images folded into the
  // columns. The epilogue's parts, the strides and the groups are Params, so all of that is two
  // pipelines (a TM 32 NB 2 one took LLVM 10-30 s on a cold shader cache), which the test counts.
  const gemmPipelines = () => getGpu().pipelines.all().filter((k) => k.spec.shader === 'matmul').length;
  for (const [i, tiling] of GEMM_CANDIDATES.entries()) {
    it(JSON.stringify(tiling), async () => {
      const rng = new Rng(100 + i);
      const before = gemmPipelines();
      for (const vec4 of [false, true]) {
        const [transA, transB] = TRANSPOSES[(i + (vec4 ? 2 : 0)) % 4];
        const k = (n: number) => (vec4 && !(transA && !transB) ? n - (n % 4) : n);
        const shapes = vec4 ? [[16, 24, k(37)], [68, 76, k(45)]] : [[33, 17, 9], [70, 70, 70]];
        for (const [M, N, K] of shapes) await checkGemm(M, N, K, { transA, transB, batch: 1, epilogue: null }, rng, tiling);
        const [M, N, K] = shapes[0];
        await checkGemm(M, N, K, { transA, transB, batch: 3, epilogue: null }, rng, tiling);
        for (const rows of [true, false]) await checkGemm(M, N, K, { transA, transB, batch: 1, epilogue: { rows } }, rng, tiling);
        if (!transB) await (vec4 ? checkFolded(20, 12, 5, 8, transA, rng, tiling) : checkFolded(33, 9, 3, 5, transA, rng, tiling));
      }
      expect(gemmPipelines() - before, 'new GEMM pipelines').toBeLessThanOrEqual(2);
    }, 120_000); // two pipelines: 1.5-3 s of LLVM each on a cold shader cache (NOTES section 20)
  }
});

describe('matmul backward', () => {
  for (const [transA, transB] of TRANSPOSES) {
    it(`${tag(transA, transB)} gradients match finite differences`, async () => {
      const rng = new Rng(21 + Number(transA) * 2 + Number(transB));
      for (const [M, N, K] of [[7, 5, 3], [5, 6, 9]]) {
        const [aShape, bShape] = storedShapes(M, N, K, transA, transB);
        const a = randomArray(aShape, rng);
        const b = randomArray(bShape, rng);
        const dy = randomArray([M, N], rng);
        const { out, grads } = await runWithGrads(([ta, tb]) => matmul(ta, tb, { transA, transB }), [{ data: a, shape: aShape }, { data: b, shape: bShape }], dy);
        const f = ([x, y]: Float64Array[]) => matmulRef(x, y, M, N, K, { transA, transB });
        expect(relError(out, f([a, b]))).toBeLessThan(1e-5);
        const [ga, gb] = numericGrads(f, [a, b], dy);
        expect(relError(grads[0]!, ga), `dA ${M}x${N}x${K}`).toBeLessThan(1e-4);
        expect(relError(grads[1]!, gb), `dB ${M}x${N}x${K}`).toBeLessThan(1e-4);
      }
    });
  }
});

interface NdCase {
  a: number[];
  b: number[];
  transA?: boolean;
  transB?: boolean;
}

// attention's [B,H,T,D] x [B,H,D,T] (odd sizes; D = 8: vec4 rows and batch strides); batch dims
// broadcast on both sides (two merged levels: a dispatch per outer item, sums in the backward);
// a stack times a matrix (folded into one GEMM) and a matrix times a stack (b's batch on z, dA
// summed over it); ranks that differ; transposed stacks; 1-D operands (a dot product included)
const ND_CASES: NdCase[] = [
  { a: [2, 3, 5, 8], b: [2, 3, 8, 5] },
  { a: [2, 1, 5, 3], b: [1, 3, 3, 7] },
  { a: [3, 5, 4], b: [4, 6] },
  { a: [5, 4], b: [3, 4, 6] },
  { a: [1, 7, 3], b: [2, 1, 3, 4] },
  { a: [2, 4, 5], b: [2, 6, 4], transA: true, transB: true },
  { a: [3, 5, 4], b: [6, 4], transB: true },
  { a: [5], b: [3, 5, 2] },
  { a: [2, 3, 5], b: [5] },
  { a: [7], b: [7] },
];

const ndName = (c: NdCase) => `[${c.a}]${c.transA ? '^T' : ''} x [${c.b}]${c.transB ? '^T' : ''}`;

function ndInputs(c: NdCase, seed: number) {
  const rng = new Rng(seed);
  const a = randomArray(c.a, rng);
  const b = randomArray(c.b, rng);
  const ref = matmulNdRef(a, c.a, b, c.b, c);
  return { a, b, ref, dy: randomArray(ref.shape, rng) };
}

const ndRun = (c: NdCase, inp: ReturnType<typeof ndInputs>) =>
  runWithGrads(([ta, tb]) => matmul(ta, tb, c), [{ data: inp.a, shape: c.a }, { data: inp.b, shape: c.b }], inp.dy);

describe('batched and 1-D matmul (torch.matmul semantics)', () => {
  ND_CASES.forEach((c, i) => {
    it(`${ndName(c)}: forward vs reference, gradients vs finite differences`, async () => {
      const inp = ndInputs(c, 80 + i);
      const { out, grads } = await ndRun(c, inp);
      expect(tidy(() => matmul(toGpu(inp.a, c.a), toGpu(inp.b, c.b), c).shape)).toEqual(inp.ref.shape);
      expect(relError(out, inp.ref.y)).toBeLessThan(1e-5);
      const [ga, gb] = numericGrads(([x, y]) => matmulNdRef(x, c.a, y, c.b, c).y, [inp.a, inp.b], inp.dy);
      expect(relError(grads[0]!, ga), 'dA').toBeLessThan(1e-4);
      expect(relError(grads[1]!, gb), 'dB').toBeLessThan(1e-4);
    });
  });

  it('a full batch is one dispatch forward, a stack times a matrix one per product backward', async () => {
    const count = async (c: NdCase) => {
      const inp = ndInputs(c, 1);
      const { dispatches } = await withBindingLimit(2 ** 30, () => ndRun(c, inp));
      return dispatches;
    };
    expect(await count({ a: [2, 3, 5, 8], b: [2, 3, 8, 5] })).toBe(3);
    expect(await count({ a: [4, 5, 4], b: [4, 6] })).toBe(3);
  });

  it('stacks larger than a binding run in chunks of batch items, or of rows for one item at a time', async () => {
    // 96-byte matrices, several per 512-byte binding; 17x19 matrices no binding of 1024 bytes holds
    for (const [c, limit] of [[{ a: [6, 4, 6], b: [6, 6, 4] }, 512], [{ a: [2, 17, 19], b: [2, 19, 13] }, 1024]] as [NdCase, number][]) {
      const inp = ndInputs(c, 7);
      const { result, largest, dispatches } = await withBindingLimit(limit, () => ndRun(c, inp));
      expect(largest, ndName(c)).toBeLessThanOrEqual(limit);
      expect(dispatches, `${ndName(c)}: chunked`).toBeGreaterThanOrEqual(6);
      expect(relError(result.out, inp.ref.y), ndName(c)).toBeLessThan(1e-5);
      const [ga, gb] = numericGrads(([x, y]) => matmulNdRef(x, c.a, y, c.b, c).y, [inp.a, inp.b], inp.dy);
      expect(relError(result.grads[0]!, ga), `dA ${ndName(c)}`).toBeLessThan(1e-4);
      expect(relError(result.grads[1]!, gb), `dB ${ndName(c)}`).toBeLessThan(1e-4);
    }
  });
});

describe('linear', () => {
  // [N, IN, OUT]
  const shapes = [[5, 7, 3], [1, 9, 13], [6, 9, 1], [4, 16, 12]];
  for (const withBias of [true, false]) {
    it(`${withBias ? 'with' : 'without'} bias: forward and gradients of x, w${withBias ? ', b' : ''}`, async () => {
      const rng = new Rng(withBias ? 31 : 32);
      for (const [N, IN, OUT] of shapes) {
        const x = randomArray([N, IN], rng);
        const w = randomArray([OUT, IN], rng);
        const b = randomArray([OUT], rng);
        const dy = randomArray([N, OUT], rng);
        const inputs = [{ data: x, shape: [N, IN] }, { data: w, shape: [OUT, IN] }, ...(withBias ? [{ data: b, shape: [OUT] }] : [])];
        const { out, grads } = await runWithGrads((ts) => linear(ts[0], ts[1], ts[2] ?? null), inputs, dy);
        const f = (xs: Float64Array[]) => linearRef(xs[0], xs[1], xs[2] ?? null, N, IN, OUT);
        const data = inputs.map((i) => i.data);
        expect(relError(out, f(data)), `${N}x${IN}->${OUT}`).toBeLessThan(1e-5);
        numericGrads(f, data, dy).forEach((g, i) => expect(relError(grads[i]!, g), `grad ${i} ${N}x${IN}->${OUT}`).toBeLessThan(1e-4));
      }
    });
  }

  it('a frozen weight gets no gradient, and none is computed', async () => {
    const rng = new Rng(41);
    const [N, IN, OUT] = [3, 5, 7];
    const gpu = getGpu();
    const labels: string[] = [];
    const dispatch = gpu.dispatch;
    await tidy(async () => {
      const x = toGpu(randomArray([N, IN], rng), [N, IN], true);
      const w = toGpu(randomArray([OUT, IN], rng), [OUT, IN], false);
      const b = toGpu(randomArray([OUT], rng), [OUT], true);
      const y = linear(x, w, b);
      gpu.dispatch = (args: DispatchArgs) => {
        labels.push(args.label ?? '');
        dispatch.call(gpu, args);
      };
      try {
        y.backward(toGpu(randomArray([N, OUT], rng), [N, OUT]));
      } finally {
        gpu.dispatch = dispatch;
      }
      expect(w.grad).toBeNull();
      expect(x.grad).not.toBeNull();
      expect(b.grad).not.toBeNull();
      await x.grad!.toArray();
      for (const t of [x, b]) t.grad!.release();
    });
    expect(labels.some((l) => l.startsWith('linear.backwardX'))).toBe(true);
    expect(labels.some((l) => l.startsWith('linear.backwardB'))).toBe(true);
    expect(labels.some((l) => l.startsWith('linear.backwardW'))).toBe(false);
  });
});

/**
 * Runs f with gemm planning its chunks for a `limit`-byte storage binding limit, and returns what the
 * matmul-shader dispatches bound: the largest range in bytes, and how many dispatches there were.
 */
async function withBindingLimit<T>(limit: number, f: () => Promise<T>): Promise<{ result: T; largest: number; dispatches: number }> {
  setGemmBindingLimit(limit);
  try {
    return await dispatchesOf('matmul', f);
  } finally {
    setGemmBindingLimit(null);
  }
}

describe('chunked past the storage binding limit', () => {
  // A binding limit of 1024 (512) bytes holds 193..253 (65..125) floats once offsets are aligned down
  // (to 16 bytes on lavapipe, at most 256 elsewhere): every matrix here is split, in chunks of 1..8
  // rows along M, N and K that end mid-way through 4x4 blocks and workgroup tiles; chunks along K add
  // into C. Odd sizes take scalar loads, multiples of 4 vec4s.
  for (const [transA, transB] of TRANSPOSES) {
    it(`matmul ${tag(transA, transB)}: forward and gradients match the reference`, async () => {
      const rng = new Rng(61 + Number(transA) * 2 + Number(transB));
      for (const [M, N, K, limit] of [[37, 29, 23, 1024], [9, 41, 43, 512]]) {
        const [aShape, bShape] = storedShapes(M, N, K, transA, transB);
        const a = randomArray(aShape, rng);
        const b = randomArray(bShape, rng);
        const dy = randomArray([M, N], rng);
        const { result, largest, dispatches } = await withBindingLimit(limit, () =>
          runWithGrads(([ta, tb]) => matmul(ta, tb, { transA, transB }), [{ data: a, shape: aShape }, { data: b, shape: bShape }], dy),
        );
        const name = `${M}x${N}x${K} limit ${limit}`;
        expect(largest, name).toBeLessThanOrEqual(limit);
        expect(dispatches, `${name}: chunked`).toBeGreaterThan(3);
        const f = ([x, y]: Float64Array[]) => matmulRef(x, y, M, N, K, { transA, transB });
        expect(relError(result.out, f([a, b])), name).toBeLessThan(1e-5);
        const [ga, gb] = numericGrads(f, [a, b], dy);
        expect(relError(result.grads[0]!, ga), `dA ${name}`).toBeLessThan(1e-4);
        expect(relError(result.grads[1]!, gb), `dB ${name}`).toBeLessThan(1e-4);
      }
    });
  }

  it('linear: a weight split by output rows, a batch split by rows, forward and all gradients', async () => {
    const rng = new Rng(71);
    // [N, IN, OUT]: w [37,21] in chunks of rows (dx sums chunks along K); x and dy [23,13] split by
    // rows (db adds chunks of rows); w [44,40] in chunks of rows with vec4 loads
    for (const [N, IN, OUT] of [[5, 21, 37], [23, 13, 10], [6, 40, 44]]) {
      const x = randomArray([N, IN], rng);
      const w = randomArray([OUT, IN], rng);
      const b = randomArray([OUT], rng);
      const dy = randomArray([N, OUT], rng);
      const inputs = [{ data: x, shape: [N, IN] }, { data: w, shape: [OUT, IN] }, { data: b, shape: [OUT] }];
      const { result, largest, dispatches } = await withBindingLimit(1024, () => runWithGrads((ts) => linear(ts[0], ts[1], ts[2]), inputs, dy));
      const name = `${N}x${IN}->${OUT}`;
      expect(largest, name).toBeLessThanOrEqual(1024);
      expect(dispatches, `${name}: chunked`).toBeGreaterThan(4);
      const f = (xs: Float64Array[]) => linearRef(xs[0], xs[1], xs[2], N, IN, OUT);
      const data = inputs.map((i) => i.data);
      expect(relError(result.out, f(data)), name).toBeLessThan(1e-5);
      numericGrads(f, data, dy).forEach((g, i) => expect(relError(result.grads[i]!, g), `grad ${i} ${name}`).toBeLessThan(1e-4));
    }
  });

  it('a row too long for one binding throws an OpError naming the tensor', async () => {
    setGemmBindingLimit(1024);
    try {
      tidy(() => {
        expect(() => linear(Tensor.zeros([2, 300]), Tensor.zeros([4, 300]), null)).toThrow(/^linear: one row of a\[2,300\] \(1200 bytes\) exceeds/);
      });
    } finally {
      setGemmBindingLimit(null);
    }
  });
});

describe('matmul and linear match PyTorch', () => {
  it('F.linear with and without bias, a @ b in all four transpose combinations, torch.matmul of stacks and vectors', async () => {
    const rng = new Rng(51);
    const [N, IN, OUT] = [6, 10, 7];
    const x = randomArray([N, IN], rng);
    const w = randomArray([OUT, IN], rng);
    const b = randomArray([OUT], rng);
    const dyLin = randomArray([N, OUT], rng);
    const [M, MN, K] = [9, 6, 11];
    const mm = TRANSPOSES.map(([transA, transB]) => {
      const [aShape, bShape] = storedShapes(M, MN, K, transA, transB);
      return { transA, transB, aShape, bShape, a: randomArray(aShape, rng), b: randomArray(bShape, rng) };
    });
    const dyMm = randomArray([M, MN], rng);
    const nd = ND_CASES.map((c, i) => ({ c, inp: ndInputs(c, 300 + i) }));
    const t = (name: string, trans?: boolean) => (trans ? `${name}.transpose(-1, -2)` : name);
    const cases: TorchCase[] = [
      {
        inputs: { x: { shape: [N, IN], data: x, grad: true }, w: { shape: [OUT, IN], data: w, grad: true }, b: { shape: [OUT], data: b, grad: true } },
        expr: 'F.linear(x, w, b)',
        dy: dyLin,
      },
      { inputs: { x: { shape: [N, IN], data: x, grad: true }, w: { shape: [OUT, IN], data: w, grad: true } }, expr: 'F.linear(x, w)', dy: dyLin },
      ...mm.map((c) => ({
        inputs: { a: { shape: c.aShape, data: c.a, grad: true }, b: { shape: c.bShape, data: c.b, grad: true } },
        expr: `${c.transA ? 'a.T' : 'a'} @ ${c.transB ? 'b.T' : 'b'}`,
        dy: dyMm,
      })),
      ...nd.map(({ c, inp }) => ({
        inputs: { a: { shape: c.a, data: inp.a, grad: true }, b: { shape: c.b, data: inp.b, grad: true } },
        // a 0-d result (the dot product) is returned as [1]
        expr: `torch.matmul(${t('a', c.transA)}, ${t('b', c.transB)}).reshape(${inp.ref.shape.length ? `${JSON.stringify(inp.ref.shape)}` : '1'})`,
        dy: inp.dy,
      })),
    ];
    const ref = await torchRun(cases);

    const lin = [
      await runWithGrads((ts) => linear(ts[0], ts[1], ts[2]), [{ data: x, shape: [N, IN] }, { data: w, shape: [OUT, IN] }, { data: b, shape: [OUT] }], dyLin),
      await runWithGrads((ts) => linear(ts[0], ts[1], null), [{ data: x, shape: [N, IN] }, { data: w, shape: [OUT, IN] }], dyLin),
    ];
    lin.forEach((r, i) => {
      expect(relError(r.out, ref[i].out), `linear ${i} out`).toBeLessThan(1e-4);
      expect(relError(r.grads[0]!, ref[i].grads!.x), `linear ${i} dx`).toBeLessThan(1e-4);
      expect(relError(r.grads[1]!, ref[i].grads!.w), `linear ${i} dw`).toBeLessThan(1e-4);
    });
    expect(relError(lin[0].grads[2]!, ref[0].grads!.b), 'linear db').toBeLessThan(1e-4);

    for (const [i, c] of mm.entries()) {
      const r = await runWithGrads(([ta, tb]) => matmul(ta, tb, c), [{ data: c.a, shape: c.aShape }, { data: c.b, shape: c.bShape }], dyMm);
      const t = ref[2 + i];
      const name = tag(c.transA, c.transB);
      expect(t.shape).toEqual([M, MN]);
      expect(relError(r.out, t.out), `${name} out`).toBeLessThan(1e-4);
      expect(relError(r.grads[0]!, t.grads!.a), `${name} da`).toBeLessThan(1e-4);
      expect(relError(r.grads[1]!, t.grads!.b), `${name} db`).toBeLessThan(1e-4);
    }
    for (const [i, { c, inp }] of nd.entries()) {
      const r = await ndRun(c, inp);
      const ref1 = ref[2 + mm.length + i];
      expect(relError(r.out, ref1.out), `${ndName(c)} out`).toBeLessThan(1e-5);
      expect(relError(r.grads[0]!, ref1.grads!.a), `${ndName(c)} da`).toBeLessThan(1e-5);
      expect(relError(r.grads[1]!, ref1.grads!.b), `${ndName(c)} db`).toBeLessThan(1e-5);
    }
  });
});

describe('bad input', () => {
  it('shape mismatches throw an OpError naming the op and the shapes', () => {
    tidy(() => {
      const a = Tensor.zeros([2, 3]);
      const b = Tensor.zeros([4, 5]);
      expect(() => matmul(a, b)).toThrow(OpError);
      expect(() => matmul(a, b)).toThrow(/^matmul: .*\[2,3\].*\[4,5\]/);
      expect(() => matmul(a, b, { transA: true })).toThrow(/^matmul: inner dimensions differ \(2 vs 4\)/);
      expect(() => matmul(a, Tensor.zeros([]))).toThrow(/^matmul: expected operands of rank 1 or more, got a\[2,3\] b\[\]/);
      expect(() => matmul(Tensor.zeros([2, 5, 3]), Tensor.zeros([3, 3, 4]))).toThrow(/^matmul: batch dimensions \[2\] and \[3\] do not broadcast: a\[2,5,3\] b\[3,3,4\]/);
      expect(() => matmul(Tensor.zeros([2, 5, 3]), Tensor.zeros([2, 4, 4]))).toThrow(/^matmul: inner dimensions differ \(3 vs 4\)/);
      expect(() => gemm(a, Tensor.zeros([3]))).toThrow(/^gemm: expected 2-D matrices.*\[3\]/);
      expect(() => gemm(a, Tensor.zeros([3, 4]), { bias: Tensor.zeros([3]) })).toThrow(/^gemm: bias must be \[4\]/);
      const x = Tensor.zeros([2, 3]);
      expect(() => linear(x, Tensor.zeros([4, 5]), null)).toThrow(OpError);
      expect(() => linear(x, Tensor.zeros([4, 5]), null)).toThrow(/^linear: .*x\[2,3\] w\[4,5\]/);
      expect(() => linear(x, Tensor.zeros([4, 3]), Tensor.zeros([5]))).toThrow(/^linear: .*b\[5\]/);
    });
  });
});
