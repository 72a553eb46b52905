// conv2d: 2-D convolution with torch.nn.functional.conv2d semantics (zero padding, stride,
// dilation, groups), forward and backward as implicit-GEMM kernels (shaders/conv2d.wgsl).
//
// y = conv(x, w) + b is linear in each of x, w and b, so with dy the gradient of y:
//   dx = the transposed convolution of dy with w (each input element gathers the output positions
//        and taps that read it),
//   dw = the correlation of dy with x (a reduction over the batch and output positions),
//   db = dy summed over the batch and output positions.
// Only the gradients the tape asks for are computed (a frozen weight costs no dw kernel).
// Read first: the plain float64 loops in src/reference/conv2d.ts; the kernels are in shaders/conv2d.wgsl.
import { getGpu, grid, tuneCache, type KernelSpec, type TuneTask } from '../gpu/index.ts';
import { conv1dRef, conv2dRef } from '../reference/conv2d.ts';
import { isGradEnabled, OpError, recordOp, type Shape, shapeStr, Tensor } from '../tensor/index.ts';
import { registerGradcheck } from './gradcheck.ts';
import { transpose } from './layout.ts';
import { gemmStrided, type StridedMatrices } from './matmul.ts';

export interface Conv2dOptions {
  stride?: number | [number, number];
  padding?: number | [number, number];
  dilation?: number | [number, number];
  groups?: number;
}

/** Everything the kernels need to know about one convolution, validated. */
export interface Conv2dGeometry {
  N: number; C: number; H: number; W: number;
  OC: number; KH: number; KW: number; OH: number; OW: number;
  stride: [number, number];
  padding: [number, number];
  dilation: [number, number];
  groups: number;
  /** input and output channels per group */
  Cg: number;
  OCg: number;
}

function pair(v: number | readonly number[] | undefined, dflt: number, name: string, min: number): [number, number] {
  const p = v === undefined ? [dflt, dflt] : typeof v === 'number' ? [v, v] : [...v];
  if (p.length !== 2 || !p.every((d) => Number.isInteger(d) && d >= min)) {
    throw new OpError('conv2d', `${name} must be an integer >= ${min} or a pair of them, got ${JSON.stringify(v)}`);
  }
  return p as [number, number];
}

/** Checks shapes and options and derives the output size: OH = floor((H + 2p - d(K-1) - 1)/s) + 1. */
export function conv2dGeometry(xShape: Shape, wShape: Shape, biasShape: Shape | null, opts: Conv2dOptions = {}): Conv2dGeometry {
  const shapes = `x${shapeStr(xShape)} w${shapeStr(wShape)}${biasShape ? ` bias${shapeStr(biasShape)}` : ''}`;
  if (xShape.length !== 4) throw new OpError('conv2d', `input must be [N,C,H,W], got ${shapes}`);
  if (wShape.length !== 4) throw new OpError('conv2d', `weight must be [OC,C/groups,KH,KW], got ${shapes}`);
  const [N, C, H, W] = xShape;
  const [OC, Cg, KH, KW] = wShape;
  const stride = pair(opts.stride, 1, 'stride', 1);
  const padding = pair(opts.padding, 0, 'padding', 0);
  const dilation = pair(opts.dilation, 1, 'dilation', 1);
  const groups = opts.groups ?? 1;
  if (!Number.isInteger(groups) || groups < 1) throw new OpError('conv2d', `groups must be a positive integer, got ${groups} (${shapes})`);
  if (C % groups !== 0) throw new OpError('conv2d', `groups=${groups} does not divide the ${C} input channels of ${shapes}`);
  if (OC % groups !== 0) throw new OpError('conv2d', `groups=${groups} does not divide the ${OC} output channels of ${shapes}`);
  if (Cg * groups !== C) {
    throw new OpError('conv2d', `input has ${C} channels but the weight expects ${Cg} per group x ${groups} groups = ${Cg * groups} (${shapes})`);
  }
  if (OC < 1 || KH < 1 || KW < 1) throw new OpError('conv2d', `empty weight ${shapes}`);
  if (biasShape && (biasShape.length !== 1 || biasShape[0] !== OC)) throw new OpError('conv2d', `bias must be [${OC}], got ${shapes}`);
  const OH = Math.floor((H + 2 * padding[0] - dilation[0] * (KH - 1) - 1) / stride[0]) + 1;
  const OW = Math.floor((W + 2 * padding[1] - dilation[1] * (KW - 1) - 1) / stride[1]) + 1;
  if (OH < 1 || OW < 1) {
    throw new OpError('conv2d', `kernel ${KH}x${KW} (dilation ${dilation}) is larger than the padded input ${shapes} with padding ${padding}`);
  }
  // the kernels divide these with float arithmetic that is exact below 2^22
  const limit = 2 ** 22 - 64;
  if (Math.max(Cg * KH * KW, (OC / groups) * KH * KW, OH * OW, H + 2 * padding[0], W + 2 * padding[1]) > limit) {
    throw new OpError('conv2d', `sizes of ${shapes} exceed what the kernels index exactly (2^22 taps or pixels per image)`);
  }
  return { N, C, H, W, OC, KH, KW, OH, OW, stride, padding, dilation, groups, Cg, OCg: OC / groups };
}

// ---- kernel launches ------------------------------------------------------------------------

/** How the GEMM kernels are tiled and how lanes share the gathered operand on this adapter. */
export interface ConvTiling {
  /** lanes per workgroup; the subgroup size when subgroups are available */
  SG: number;
  /** rows (channels) per lane */
  TM: number;
  /** columns (pixels, or weight taps for dw) per workgroup */
  TN: number;
  subgroups: boolean;
}

const tilings = new WeakMap<GPUDevice, ConvTiling>();
/** forced tiles, and (the tuner's other candidates) the algorithm: winograd 0 direct, else m of
 *  F(m x m, 3x3); im2col, the column matrix and GEMMs */
type Forced = Partial<ConvTiling> & { winograd?: number; im2col?: boolean };
let forced: Forced | null = null;

/** The knobs the tuner searches (src/gpu/tuning.ts), every one a correct kernel (the tests run them
 *  all): rows per lane x columns per workgroup. Few columns suit small images (layer4's 7x7: a
 *  12-wide tile leaves lanes idle), more rows per lane amortise the shared B loads; TM = 1 never
 *  won on lavapipe and costs compile time, so it is not a candidate. */
export const CONV2D_CANDIDATES: readonly { TM: number; TN: number }[] = [2, 4].flatMap((TM) => [4, 8, 12, 16].map((TN) => ({ TM, TN })));
const DEFAULT_TILES = { TM: 2, TN: 12 };

/** Tile sizes for the current adapter, for the kernel and shape `key` when given: what the tuner
 *  chose for it if the adapter's tuning cache has it (gpunet tune), else the default. TM=2, TN=12
 *  was fastest on lavapipe overall (bench/conv2d.ts): every storage load there is a per-lane scalar
 *  loop, so what counts is loads per multiply-add, (TM + TN/SG) / (TM * TN) per lane, against the
 *  ~32 vector registers the tile must fit in. Without the subgroups feature, lanes share B through
 *  workgroup memory and barriers. */
export function conv2dTiling(key?: string): ConvTiling {
  const gpu = getGpu();
  let t = tilings.get(gpu.device);
  if (!t) {
    const sg = gpu.device.adapterInfo?.subgroupMinSize ?? 0;
    // the shuffle scheme needs the whole workgroup in one subgroup, in chunks of 4 (vec4 loads)
    const subgroups = gpu.features.has('subgroups') && sg >= 4 && sg <= 64 && sg % 4 === 0;
    t = { SG: subgroups ? sg : 8, ...DEFAULT_TILES, subgroups };
    tilings.set(gpu.device, t);
  }
  if (forced) return { ...t, ...forced };
  const tuned = key ? tuneCache(gpu).lookup('conv2d', key) : null;
  return tuned && tuned.TM !== undefined ? { ...t, TM: Number(tuned.TM), TN: Number(tuned.TN) } : t;
}

/** Runs `fn` with the tiling forced to `tiles` (the tuner's candidates). */
function withTiles<T>(tiles: Forced, fn: () => T): T {
  const prev = forced;
  forced = { ...prev, ...tiles };
  try {
    return fn();
  } finally {
    forced = prev;
  }
}

/** The tuner's task for kernel `entry` at geometry `geo`: operands of that shape, one launch per candidate. */
function tuneTask(entry: string, key: string, geo: Conv2dGeometry): TuneTask {
  const computed = { forward: geo, backwardInput: winogradBackward(geo), backwardWeight: winogradWeightGeometry(geo) }[entry] ?? null;
  const winograd = computed !== null && winogradApplies(computed);
  const im2col = im2colApplies(geo);
  // its forward launches keep U as inference does (the tuner's weight wants no gradient)
  const keptU = entry === 'forward' && winogradCache;
  return {
    family: 'conv2d',
    key,
    // Winograd F(2x2) and F(4x4), and im2col + GEMM, are more candidates where they apply (their
    // GEMMs have tuning tasks of their own)
    candidates: [...CONV2D_CANDIDATES, ...(winograd ? WINOGRAD_TILES.map((m) => ({ winograd: m })) : []), ...(im2col ? [{ im2col: 1 }] : [])],
    defaultConfig: winograd && winogradPays(computed, keptU) ? { winograd: winogradPays(computed, keptU) } : im2col && im2colPays(geo) ? { im2col: 1 } : DEFAULT_TILES,
    setup: () => {
      const x = Tensor.zeros([geo.N, geo.C, geo.H, geo.W]);
      const w = Tensor.zeros([geo.OC, geo.Cg, geo.KH, geo.KW]);
      const dy = Tensor.zeros([geo.N, geo.OC, geo.OH, geo.OW]);
      const run = {
        forward: () => conv2dForward(x, w, null, geo),
        backwardInput: () => conv2dBackwardInput(dy, w, geo),
        backwardWeight: () => conv2dBackwardWeight(dy, x, geo),
      }[entry]!;
      return {
        launch: (config) => withTiles(
          config.winograd ? { winograd: Number(config.winograd) } : config.im2col ? { im2col: true } : { TM: Number(config.TM), TN: Number(config.TN) },
          () => run().release(),
        ),
        dispose: () => [x, w, dy].forEach((t) => t.release()),
      };
    },
  };
}

/** Overrides the tiling (benchmarks, and tests of the path without subgroups); null restores it. */
export function setConv2dTiling(t: Partial<ConvTiling> | null): void {
  const within = (v: number | undefined, hi: number) => v === undefined || (Number.isInteger(v) && v >= 1 && v <= hi);
  if (t && !(within(t.TM, 8) && within(t.TN, 16) && within(t.SG, 64) && (t.SG ?? 4) % 4 === 0)) {
    throw new OpError('conv2d', `tiling ${JSON.stringify(t)}: TM 1..8, TN 1..16 (the shader's register arrays), SG a multiple of 4`);
  }
  forced = t;
}

const GEMM_ENTRIES = new Set(['forward', 'backwardInput', 'backwardWeight']);

/** A kernel of shaders/conv2d.wgsl: out, then `bindings - 1` inputs; `aVec4` reads operand A as vec4. */
function kernel(entry: string, bindings: number, aVec4: boolean, t = conv2dTiling(), constants: Record<string, number> = {}): KernelSpec {
  return {
    shader: 'conv2d',
    entry,
    bindings: ['write', ...Array<'read'>(bindings - 1).fill('read')],
    constants: GEMM_ENTRIES.has(entry) ? { SG: t.SG, TM: t.TM, TN: t.TN, ...constants } : constants,
    defines: {
      ENABLE: t.subgroups ? 'enable subgroups;' : '',
      PUBLISH_B: t.subgroups ? '' : 'publishB(lane);',
      READ_B: t.subgroups ? 'subgroupShuffle(bLane[j], s)' : 'bShared[s * MAXN + j]',
      DONE_B: t.subgroups ? '' : 'workgroupBarrier();',
      A_ELEM: aVec4 ? 'vec4<f32>' : 'f32',
      LOAD_A4: aVec4 ? 'a[e / 4u]' : 'vec4f(a[e], a[e + 1u], a[e + 2u], a[e + 3u])',
    },
  };
}

/** One phase of the input gradient along one axis: the input rows i with (i + pad) % stride == r,
 *  and the kernel taps that reach them (see backwardInput in the shader). */
interface AxisPhase {
  first: number; count: number; q0: number;
  k0: number; kStep: number; nk: number; a0: number; aStep: number;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

function axisPhases(size: number, k: number, s: number, pad: number, d: number): AxisPhase[] {
  const kStep = s / gcd(s, d); // taps k and k + kStep land on the same phase
  return Array.from({ length: s }, (_, r) => {
    const first = (((r - pad) % s) + s) % s;
    const count = first < size ? Math.ceil((size - first) / s) : 0;
    let k0 = 0;
    while (k0 < kStep && (k0 * d) % s !== r) k0++;
    const nk = k0 < Math.min(kStep, k) ? Math.ceil((k - k0) / kStep) : 0;
    return { first, count, q0: (first + pad - r) / s, k0, kStep, nk, a0: nk ? (k0 * d - r) / s : 0, aStep: (kStep * d) / s };
  });
}

const NO_PHASE: AxisPhase = { first: 0, count: 0, q0: 0, k0: 0, kStep: 0, nk: 0, a0: 0, aStep: 0 };
const NO_EPILOGUE = { hasAffine: false, hasResidual: false, relu: false };

/** The shader's Params; `phase` (rows, columns, wT offset) only for backwardInput and transposeWeight. */
function params(geo: Conv2dGeometry, hasBias = false, phase?: [AxisPhase, AxisPhase, number], epilogue: { hasAffine: boolean; hasResidual: boolean; relu: boolean } = NO_EPILOGUE) {
  const [h, w, wTOffset] = phase ?? [NO_PHASE, NO_PHASE, 0];
  return {
    N: geo.N, C: geo.C, H: geo.H, W: geo.W, OC: geo.OC, OH: geo.OH, OW: geo.OW, Cg: geo.Cg, OCg: geo.OCg, KH: geo.KH, KW: geo.KW,
    SH: geo.stride[0], SW: geo.stride[1], PH: geo.padding[0], PW: geo.padding[1], DH: geo.dilation[0], DW: geo.dilation[1], hasBias, ...epilogue,
    ihs: h.first, iws: w.first, Hr: h.count, Wr: w.count, qh0: h.q0, qw0: w.q0, kh0: h.k0, kw0: w.k0,
    khStep: h.kStep, kwStep: w.kStep, nkh: h.nk, nkw: w.nk, ah0: h.a0, aw0: w.a0, ahStep: h.aStep, awStep: w.aStep, wTOffset, flip: false,
  };
}

function describe(geo: Conv2dGeometry): string {
  return `x[${geo.N},${geo.C},${geo.H},${geo.W}] w[${geo.OC},${geo.Cg},${geo.KH},${geo.KW}] ` +
    `s${geo.stride.join('x')} p${geo.padding.join('x')} d${geo.dilation.join('x')} g${geo.groups}`;
}

/** Launches one of the three GEMM kernels: `rows` channels per group (TM per lane, SG lanes),
 *  `cols` columns (TN per workgroup). */
function launchGemm(entry: string, out: Tensor, inputs: Tensor[], aVec4: boolean, rows: number, cols: number, depth: number, geo: Conv2dGeometry, shaderParams: ReturnType<typeof params>, what = ''): void {
  const gpu = getGpu();
  const key = `${entry} ${describe(geo)}`;
  const t = conv2dTiling(key);
  if (!forced && !tuneCache(gpu).lookup('conv2d', key)) tuneCache(gpu).notePending(tuneTask(entry, key, geo));
  const [gx, gy] = grid(cols, t.TN);
  gpu.dispatch({
    kernel: kernel(entry, inputs.length + 1, aVec4, t),
    buffers: [out.buffer, ...inputs.map((x) => x.buffer)],
    params: shaderParams,
    workgroups: [gx, gy, Math.ceil(rows / (t.SG * t.TM)) * geo.groups],
    label: `conv2d.${entry} ${describe(geo)}${what}`,
    work: { flops: 2 * rows * geo.groups * cols * depth, bytes: 4 * [...new Set([out, ...inputs])].reduce((a, x) => a + x.size, 0) },
  });
}

/** What conv2dFused does after the convolution, for inference. */
export interface ConvEpilogue {
  /** [OC,4] per-channel (_, a, c, m): y = a*(y - m) + c, an eval batchnorm (batchNormEvalCoefficients) */
  affine?: Tensor | null;
  /** [N,OC,OH,OW] added after the affine map (a residual connection) */
  residual?: Tensor | null;
  relu?: boolean;
}

// ---- Winograd F(m x m, 3x3), m = 2 or 4 (see the end of shaders/conv2d.wgsl) ---------------------

/** The output tile sizes m of Winograd F(m x m, 3x3) the shader implements. */
const WINOGRAD_TILES = [2, 4] as const;

/** When the 3x3 stride-1 convolutions go through Winograd: 'auto' (the tuner's choice, else
 *  winogradPays), 'never', or always (where it applies) with output tiles of 2 or 4. */
export type WinogradMode = 'auto' | 'never' | 2 | 4;
let winogradMode: WinogradMode = 'auto';

/** Chooses when 3x3 stride-1 convolutions (forward and both gradients) use Winograd F(m x m,3x3);
 *  for benchmarks and the tests of every path. */
export function setConv2dWinograd(mode: WinogradMode): void {
  winogradMode = mode;
}

let winogradCache = true;

/** Turns the cache of Winograd's transformed weights off or on (benchmarks, and the tests that
 *  compare both paths). */
export function setConv2dWinogradCache(on: boolean): void {
  winogradCache = on;
}

/**
 * Whether a Winograd forward keeps its transformed weight U = G w G^T with w (Tensor.derived), so
 * that the next calls with the same weight values skip the weight transform: when w is not being
 * trained (inference, a frozen layer, the tuner's launches). U is a^2/9 of w's size (16/9 for
 * F(2x2): 64 MiB for all of ResNet18's 3x3 stride-1 convs), freed with w; a weight being trained
 * is written every step, so its forward drops what was kept (after an evaluation) and keeps
 * nothing.
 */
function keepsWinogradWeights(w: Tensor): boolean {
  const training = isGradEnabled() && w.requiresGrad;
  if (training) w.dropDerived();
  return winogradCache && !training;
}

/** Tiles of F(m x m, 3x3) over `geo`'s output: N * ceil(OH/m) * ceil(OW/m). */
function winogradTiles(geo: Conv2dGeometry, m: number): number {
  return geo.N * Math.ceil(geo.OH / m) * Math.ceil(geo.OW / m);
}

/** Winograd computes the convolution `geo` describes: 3x3, stride 1, no dilation, no groups. */
function winogradApplies(geo: Conv2dGeometry): boolean {
  const tiles = winogradTiles(geo, 2);
  return geo.KH === 3 && geo.KW === 3 && geo.stride.every((s) => s === 1) && geo.dilation.every((d) => d === 1) &&
    geo.groups === 1 && tiles <= 65535 * 64 && Math.max(geo.C, geo.OC) <= 65535;
}

/** The convolution whose Winograd computes the input gradient of `geo` (dy convolved with w
 *  rotated and transposed, padding 2 - PH), or null when there is none. */
function winogradBackward(geo: Conv2dGeometry): Conv2dGeometry | null {
  if (!winogradApplies(geo) || geo.padding.some((p) => p > 2)) return null;
  return conv2dGeometry([geo.N, geo.OC, geo.OH, geo.OW], [geo.C, geo.OC, 3, 3], null, { padding: [2 - geo.padding[0], 2 - geo.padding[1]] });
}

/** `geo` when Winograd computes its weight gradient (its GEMMs read dZ's lines along OC as vec4s), else null. */
function winogradWeightGeometry(geo: Conv2dGeometry): Conv2dGeometry | null {
  return winogradApplies(geo) && geo.OC % 4 === 0 ? geo : null;
}

/** The default when the tuner has not timed `geo` (the convolution computed): m, or 0 for the
 *  direct kernels. F(2x2)'s GEMMs do 16 products per tile and channel where the direct kernel
 *  does 36, F(4x4)'s 36 where it does 144, but the transforms are passes over memory, whose share
 *  grows as 1/C, and the weight's (OC*C*(9 + a^2) loads and stores) is paid back only over enough
 *  tiles: 32 (ResNet18's 512-channel 7x7 convs at batch 1, 16 tiles of 2x2, gained nothing).
 *  With U kept (keptU: inference) only the input and output transforms' launches and passes
 *  remain, and 16 tiles (a 7x7 or 8x8 map at batch 1: layer4 at 224 px, layer3 at 112) pay where
 *  the GEMMs are large, 128 channels or more (1.1-1.4x against im2col + GEMM); at 64 channels and
 *  fewer, or under 16 tiles, Winograd measured slower or no faster (bench/NOTES.md section 13).
 *  The default is F(2x2): F(4x4)'s larger transform constants round more, and through a deep
 *  network (Wide ResNet-50, Inception v3 in the zoo test) its logits drift to 4-5x PyTorch's own
 *  float32 error, where F(2x2)'s stay within it; `gpunet tune` may still choose F(4x4) for speed. */
function winogradPays(geo: Conv2dGeometry, keptU = false): number {
  const channels = Math.min(geo.C, geo.OC);
  const tiles = winogradTiles(geo, 2);
  return channels >= 16 && (tiles >= 32 || (keptU && tiles >= 16 && channels >= 128)) ? DEFAULT_WINOGRAD : 0;
}
const DEFAULT_WINOGRAD = 2;

/** Whether pass `entry` of `geo` runs as `computed` (its Winograd form) through Winograd, and with
 *  which m (0: direct): forced (setConv2dWinograd, the tuner's candidates), else the tuner's
 *  choice, else winogradPays. */
function winogradChosen(entry: string, geo: Conv2dGeometry, computed: Conv2dGeometry | null, keptU = false): number {
  if (computed === null || !winogradApplies(computed) || winogradMode === 'never') return 0;
  if (winogradMode !== 'auto') return winogradMode;
  if (forced?.winograd !== undefined) return forced.winograd;
  if (forced) return 0; // tiles forced: the direct kernels
  const gpu = getGpu();
  const key = `${entry} ${describe(geo)}`;
  const tuned = tuneCache(gpu).lookup('conv2d', key);
  if (tuned) return Number(tuned.winograd ?? 0);
  tuneCache(gpu).notePending(tuneTask(entry, key, geo));
  return winogradPays(computed, keptU);
}

/** out: [batch, rows, cols] = a: [batch, rows, depth] x b: [batch, depth, cols], row-major, on the
 *  GEMM kernels of src/ops/matmul.ts (their tiling tuned per shape); `flops` is what the profiler
 *  is told (the convolution's, for Winograd). */
function batchedGemm(a: Tensor, b: Tensor, shape: { batch: number; rows: number; depth: number; cols: number }, what: string, flops: number): Tensor {
  const { batch, rows, depth, cols } = shape;
  const out = Tensor.empty([batch, rows, cols]);
  gemmStrided('conv2d', `conv2d.winogradGemm ${batch}x[${rows},${depth}]x[${depth},${cols}]${what}`, { M: rows, N: cols, K: depth, batch },
    { t: a, stride: rows * depth }, { t: b, stride: depth * cols }, { t: out, stride: rows * cols }, flops);
  return out;
}

/** V: [a^2, C, Tp] = B^T d B for every 4-padded tile d of x: [N,C,H,W], the input transform the
 *  forward (and input gradient) and the weight gradient share. */
function winogradInputTransform(x: Tensor, geo: Conv2dGeometry, m: number, what: string): Tensor {
  const Tp = Math.ceil(winogradTiles(geo, m) / 4) * 4;
  const v = Tensor.empty([(m + 2) ** 2, geo.C, Tp]);
  getGpu().dispatch({
    kernel: kernel('winogradInput', 2, false, undefined, { WM: m }),
    buffers: [v.buffer, x.buffer],
    params: params(geo),
    workgroups: [Math.ceil(Tp / 64), geo.C],
    label: `conv2d.winogradInput ${what}`,
  });
  return v;
}

/** y: [N,OC,OH,OW] = conv(src: [N,C,H,W], w') + bias, then the epilogue, by Winograd F(m x m,3x3);
 *  w' = w: [OC,C,3,3], or for the input gradient (flip) w: [C,OC,3,3] rotated by 180 degrees.
 *  keepU: the transformed weight U is kept with w (Tensor.derived) and computed again only after
 *  w is written. */
function winogradConv(src: Tensor, w: Tensor, bias: Tensor | null, geo: Conv2dGeometry, flip: boolean, epilogue: ConvEpilogue, pass: string, m: number, keepU = false): Tensor {
  const gpu = getGpu();
  const { N, C, OC, OH, OW } = geo;
  const T = winogradTiles(geo, m);
  const Tp = Math.ceil(T / 4) * 4;
  const a2 = (m + 2) ** 2;
  const what = `${describe(geo)} (${pass}, F${m}x${m})`;
  const WM = { WM: m };
  const v = winogradInputTransform(src, geo, m, what);
  const transform = () => {
    const u = Tensor.empty([a2, OC, C]);
    gpu.dispatch({
      kernel: kernel('winogradWeight', 2, false, undefined, WM),
      buffers: [u.buffer, w.buffer],
      params: { ...params(geo), flip },
      workgroups: [Math.ceil(C / 64), OC],
      label: `conv2d.winogradWeight ${what}`,
    });
    return u;
  };
  const u = keepU ? w.derived(`winograd U F${m}x${m}${flip ? ' flipped' : ''}`, transform) : transform();
  // the GEMM counts the convolution's FLOPs, 2 * N*OC*OH*OW * C*9, as the direct kernels do (what
  // the op computes, so that profiles and benchmarks compare algorithms by time): it does a^2/9m^2 of them
  const z = batchedGemm(u, v, { batch: a2, rows: OC, depth: C, cols: Tp }, ` ${what}`, 2 * N * OC * OH * OW * C * 9);
  const y = Tensor.empty([N, OC, OH, OW]);
  const { affine = null, residual = null, relu = false } = epilogue;
  gpu.dispatch({
    kernel: kernel('winogradOutput', 6, false, undefined, WM),
    buffers: [y.buffer, z.buffer, z.buffer, (bias ?? z).buffer, (affine ?? z).buffer, (residual ?? z).buffer],
    params: params(geo, bias !== null, undefined, { hasAffine: affine !== null, hasResidual: residual !== null, relu }),
    workgroups: [Math.ceil(T / 64), OC],
    label: `conv2d.winogradOutput ${what}`,
  });
  [v, z, ...(keepU ? [] : [u])].forEach((t) => t.release()); // the recorded dispatches keep their order with later reuse
  return y;
}

/** dw: [OC,C,3,3] of the convolution `geo` by Winograd F(m x m,3x3): the forward's input transform
 *  V, dy's tiles taken back through the output transform (dZ = A dY A^T), the a^2 GEMMs reducing
 *  over the tiles (dU^T = V dZ), dw = G^T dU G. */
function winogradWeightGradient(dy: Tensor, x: Tensor, geo: Conv2dGeometry, m: number): Tensor {
  const gpu = getGpu();
  const { N, C, OC, OH, OW } = geo;
  const Tp = Math.ceil(winogradTiles(geo, m) / 4) * 4;
  const a2 = (m + 2) ** 2;
  const what = `${describe(geo)} (backwardWeight, F${m}x${m})`;
  const WM = { WM: m };
  const v = winogradInputTransform(x, geo, m, what);
  const dz = Tensor.empty([a2, Tp, OC]);
  gpu.dispatch({
    kernel: kernel('winogradOutputGrad', 2, false, undefined, WM),
    buffers: [dz.buffer, dy.buffer],
    params: params(geo),
    workgroups: [Math.ceil(OC / 64), Math.min(Tp, 65535), Math.ceil(Tp / 65535)],
    label: `conv2d.winogradOutputGrad ${what}`,
  });
  const duT = batchedGemm(v, dz, { batch: a2, rows: C, depth: Tp, cols: OC }, ` ${what}`, 2 * N * OC * OH * OW * C * 9);
  const dw = Tensor.empty([OC, C, 3, 3]);
  gpu.dispatch({
    kernel: kernel('winogradWeightGrad', 2, false, undefined, WM),
    buffers: [dw.buffer, duT.buffer],
    params: params(geo),
    workgroups: [Math.ceil(OC / 64), C],
    label: `conv2d.winogradWeightGrad ${what}`,
  });
  [v, dz, duT].forEach((t) => t.release());
  return dw;
}

// ---- im2col + GEMM (groups 1; see shaders/conv2d.wgsl) ------------------------------------------

/** When convolutions go through im2col + GEMM: 'auto' (the tuner's choice, else im2colPays),
 *  'never', or 'always' where it applies. */
export type Im2colMode = 'auto' | 'never' | 'always';
let im2colMode: Im2colMode = 'auto';

/** Chooses when convolutions (forward and both gradients) use im2col and the matmul's GEMM
 *  kernels; for benchmarks and the tests of every path. */
export function setConv2dIm2col(mode: Im2colMode): void {
  im2colMode = mode;
}

/** x is its own column matrix: a 1x1 kernel, stride 1, no padding */
function isPointwise(geo: Conv2dGeometry): boolean {
  return geo.KH === 1 && geo.KW === 1 && geo.stride.every((s) => s === 1) && geo.padding.every((q) => q === 0);
}

/** The column matrix [N, C*KH*KW, OH*OW] of `geo` fits one storage binding and COL_BYTES, and its
 *  rows the dispatch grid. */
function im2colApplies(geo: Conv2dGeometry): boolean {
  const K = geo.C * geo.KH * geo.KW;
  const bytes = geo.N * K * geo.OH * geo.OW * 4;
  return geo.groups === 1 && geo.N * K <= 65535 && bytes <= Math.min(COL_BYTES, getGpu().limits.maxStorageBufferBindingSize);
}

/** The largest column matrix, bytes: ResNet18's stem at batch 16 and 224 px (118 MB) fits; what
 *  the direct kernels do without a buffer is not worth gigabytes of one. */
const COL_BYTES = 2 ** 27;

/** The default without a tuned choice. On CPUs the matmul's shared-tile GEMM does up to 2-3x the
 *  multiply-adds per core-second of the implicit-GEMM kernels, whose loads bound them
 *  (bench/NOTES.md sections 6 and 10), and the column matrix is one pass over at most KH*KW times
 *  x; but a GEMM of fewer than 32 columns (one tile's width) measured no faster: an image of 16
 *  output pixels (layer4 at 112 px) alone, not a batch of them folded into the columns. On GPUs
 *  the implicit GEMMs, which write no column matrix, stay the default. */
function im2colPays(geo: Conv2dGeometry): boolean {
  return getGpu().isCpu && im2colApplies(geo) && (batchFolded(geo) ? geo.N : 1) * geo.OH * geo.OW >= 32;
}

let foldBatch = true;

/** Whether the im2col GEMMs fold the batch into their columns (batchFolded) and the weight
 *  gradient's into its reduction (weightGradientFolded); for benchmarks and the tests of both paths. */
export function setConv2dBatchFold(on: boolean): void {
  foldBatch = on;
}

/** Whether the forward and input-gradient GEMMs of `geo` take the batch as columns: one GEMM
 *  [OC, K] x [K, N*P] whose store writes y: [N, OC, P] (the GEMM's column groups), instead of one
 *  [OC, K] x [K, P] per image, whose tiles a small image fills only in part (P 16 or 49 against 32
 *  columns a tile) and whose dispatches are many small ones. Where images are small (P <= 256,
 *  16x16 output pixels; the GEMM's inner loop is the same either way, each lane finding its
 *  columns' offsets once) and the matrices fit one storage binding. On large images one image's
 *  column matrix is what the row tiles share in cache; folded, every row tile streams all images'
 *  (the stem at batch 8 measured 1.3-1.4x slower folded, bench/NOTES.md section 14). The weight
 *  gradient sums over the images along K, so its tiles are full either way: it folds the batch
 *  into K (weightGradientFolded). */
function batchFolded(geo: Conv2dGeometry): boolean {
  const P = geo.OH * geo.OW;
  const bytes = 4 * geo.N * P * Math.max(geo.C * geo.KH * geo.KW, geo.OC);
  return foldBatch && geo.N > 1 && P <= 256 && bytes <= getGpu().limits.maxStorageBufferBindingSize;
}

/** Whether the weight gradient of `geo` is one GEMM over the batch, its reduction N*P long (dy
 *  transposed to [OC, N, P], col written [K, N, P]), instead of N GEMMs of K = P each adding into
 *  dw: [OC, K]. Per image, a small image's GEMM reads and writes all of dw for few multiply-adds
 *  (the 1x1 downsample at 16 pixels: 16 per element of dw, 8 times over); folded, dw is stored
 *  once. Where images are small (the P <= 256 of batchFolded) and dy's copy fits one binding. */
function weightGradientFolded(geo: Conv2dGeometry): boolean {
  return foldBatch && geo.N > 1 && geo.OH * geo.OW <= 256 && 4 * geo.N * geo.OC * geo.OH * geo.OW <= getGpu().limits.maxStorageBufferBindingSize;
}

/** Whether pass `entry` of `geo` runs as im2col + GEMM: forced (setConv2dIm2col, the tuner's
 *  candidates), else the tuner's choice, else im2colPays. */
function im2colChosen(entry: string, geo: Conv2dGeometry): boolean {
  if (!im2colApplies(geo) || im2colMode === 'never') return false;
  if (im2colMode === 'always') return true;
  if (forced) return forced.im2col ?? false; // tiles forced: the direct kernels
  const gpu = getGpu();
  const key = `${entry} ${describe(geo)}`;
  const tuned = tuneCache(gpu).lookup('conv2d', key);
  if (tuned) return Boolean(tuned.im2col);
  tuneCache(gpu).notePending(tuneTask(entry, key, geo));
  return im2colPays(geo);
}

let im2colVec4s: number | null = null;

/** Forces the vec4s of columns each im2col lane writes (null: the adapter's default); for
 *  benchmarks and the tests of every choice. */
export function setIm2colVec4s(vec4s: number | null): void {
  im2colVec4s = vec4s;
}

/** vec4s of columns per im2col lane: on CPUs 8 (32 columns), where the lane's index work, not the
 *  bytes, bounded the pass (1, 2, 4, 8 and 16 measured, bench/NOTES.md section 10); on GPUs 1, for
 *  lanes enough to fill the device. */
function im2colLaneVec4s(): number {
  return im2colVec4s ?? (getGpu().isCpu ? 8 : 1);
}

/** col: [N, C*KH*KW, OH*OW], the receptive fields of x: [N,C,H,W] (x itself for a pointwise conv),
 *  or with `batchInner` col: [C*KH*KW, N, OH*OW] (the weight gradient's folded layout; for a
 *  pointwise conv x transposed); exported for its benchmark (bench/im2col.ts) and tests. */
export function im2col(x: Tensor, geo: Conv2dGeometry, what: string, batchInner = false): Tensor {
  if (isPointwise(geo) && (!batchInner || geo.N === 1)) return x;
  const K = geo.C * geo.KH * geo.KW;
  const P = geo.OH * geo.OW;
  const col = Tensor.empty(batchInner ? [K, geo.N, P] : [geo.N, K, P]);
  // a lane per 4*G columns; short rows packed R to a workgroup of 64 lanes (see the shader)
  const G = im2colLaneVec4s();
  const runs = Math.ceil(P / (4 * G));
  const rowsPerGroup = Math.max(1, Math.floor(64 / runs));
  getGpu().dispatch({
    // G vec4 stores per lane where every row of col starts 16-byte aligned
    kernel: kernel(P % 4 === 0 ? 'im2col4' : 'im2col', 2, false, undefined, { G, BATCH_INNER: Number(batchInner) }),
    buffers: [col.buffer, x.buffer],
    params: params(geo),
    workgroups: [Math.ceil(runs / 64), 1, Math.ceil((geo.N * K) / rowsPerGroup)],
    label: `conv2d.im2col ${what}`,
    work: { flops: 0, bytes: 4 * (col.size + x.size) },
  });
  return col;
}

/** The GEMMs over images n of `geo`'s column matrices, with the convolution's FLOPs for the
 *  profiler: one per image (`batch` 1: one GEMM whose operands hold every image), or with `fold` (dims.N = P = OH*OW) one over N*P columns whose groups
 *  of P are B's and C's images (each `stride` apart); the forward's epilogue (bias, eval
 *  batchnorm, residual, ReLU per output channel, a row of the GEMM) in the GEMM's store. */
function convGemm(
  geo: Conv2dGeometry, pass: string, dims: { M: number; N: number; K: number }, a: StridedMatrices, b: StridedMatrices, c: StridedMatrices,
  fold: boolean, epilogue?: ConvEpilogue & { bias: Tensor | null }, batch = geo.N,
): void {
  const flops = 2 * geo.N * geo.OC * geo.OH * geo.OW * geo.C * geo.KH * geo.KW;
  const { bias = null, affine = null, residual = null, relu = false } = epilogue ?? {};
  // along the GEMM's rows, the output channels (or none)
  const store = bias || affine || residual || relu ? { along: 'rows' as const, bias, affine, residual, relu } : null;
  const label = `conv2d.${pass} ${describe(geo)} (im2col GEMM${fold ? ', batch in columns' : batch === 1 && geo.N > 1 ? ', batch in K' : ''})`;
  if (!fold) return gemmStrided('conv2d', label, { ...dims, batch }, a, b, c, flops, store);
  // a B of stride 0 is one matrix [K, N*P] (im2col's batch-inner layout), not grouped
  const bFolded = b.stride === 0 ? b : { ...b, group: b.stride };
  gemmStrided('conv2d', label, { ...dims, N: geo.N * dims.N, batch: 1, P: dims.N }, a, bFolded, { ...c, group: c.stride }, flops, store);
}

/** y = conv(x, w) + bias, then the epilogue: y[n] = w [OC,K] col[n] [K,P] on the GEMM kernels, the
 *  epilogue in the GEMM's store. Folded (batchFolded), y = w [OC,K] col [K, N*P] with col in the
 *  batch-inner layout [K, N, P], whose lines are whole vec4s even where P is not a multiple of 4
 *  (7x7 = 49; [N, K, P]'s lines straddle images there and load as scalars); a pointwise conv's x
 *  is its own col [N, K, P], read in groups. */
function im2colForward(x: Tensor, w: Tensor, bias: Tensor | null, geo: Conv2dGeometry, epilogue: ConvEpilogue, kept?: KeptCol): Tensor {
  const { N, OC, OH, OW } = geo;
  const K = geo.C * geo.KH * geo.KW;
  const P = OH * OW;
  const fold = batchFolded(geo);
  const inner = fold && !isPointwise(geo);
  const col = im2col(x, geo, `${describe(geo)}${inner ? ' (batch inner)' : ''}`, inner);
  const y = Tensor.empty([N, OC, OH, OW]);
  convGemm(geo, 'forward', { M: OC, N: P, K }, { t: w, stride: 0 }, { t: col, stride: inner ? 0 : K * P }, { t: y, stride: OC * P }, fold, { ...epilogue, bias });
  if (kept && col !== x) kept.col = col;
  else if (col !== x) col.release();
  return y;
}

/** The forward's column matrix, held for the weight gradient (colShared), which releases it. */
interface KeptCol {
  col: Tensor | null;
}

/** Whether the weight gradient of `geo` can take the forward's column matrix instead of writing
 *  it again: both passes run im2col + GEMM and read col in the same layout (both folded: [K, N, P];
 *  neither: [N, K, P]; a pointwise conv's forward reads x itself). Held from the forward to the
 *  backward (the stem's at b8 112 px: 15 MB), it saves one pass over col (~11 ms of a ResNet18
 *  training step at b8 112 px, bench/NOTES.md section 21). */
function colShared(geo: Conv2dGeometry): boolean {
  return !isPointwise(geo) && batchFolded(geo) === weightGradientFolded(geo) && im2colChosen('forward', geo) &&
    !winogradChosen('backwardWeight', geo, winogradWeightGeometry(geo)) && im2colChosen('backwardWeight', geo);
}

/** dx: dcol[n] = w^T [K,OC] dy[n] [OC,P], summed into dx by col2im (dx = dcol for a pointwise conv). */
function im2colBackwardInput(dy: Tensor, w: Tensor, geo: Conv2dGeometry): Tensor {
  const { N, C, OC, H, W } = geo;
  const K = C * geo.KH * geo.KW;
  const P = geo.OH * geo.OW;
  const dcol = Tensor.empty([N, K, P]);
  convGemm(geo, 'backwardInput', { M: K, N: P, K: OC }, { t: w, stride: 0, trans: true }, { t: dy, stride: OC * P }, { t: dcol, stride: K * P }, batchFolded(geo));
  if (isPointwise(geo)) return dcol.reshape([N, C, H, W]);
  const dx = Tensor.empty([N, C, H, W]);
  getGpu().dispatch({
    kernel: kernel('col2im', 2, false),
    buffers: [dx.buffer, dcol.buffer],
    params: params(geo),
    // a lane per 4 pixels of a row; small planes packed R to a workgroup (see the shader)
    workgroups: col2imWorkgroups(geo),
    label: `conv2d.col2im ${describe(geo)}`,
    work: { flops: 0, bytes: 4 * (dcol.size + dx.size) },
  });
  dcol.release();
  return dx;
}

/** col2im's grid: a lane per run of 4 pixels of a row, H * ceil(W / 4) lanes a plane; planes of at
 *  most 32 lanes packed 64 / lanes to a workgroup, larger ones over several. */
function col2imWorkgroups(geo: Conv2dGeometry): [number, number, number] {
  const lanes = geo.H * Math.ceil(geo.W / 4);
  const R = Math.max(1, Math.floor(64 / lanes));
  return [R > 1 ? 1 : Math.ceil(lanes / 64), 1, Math.ceil((geo.N * geo.C) / R)];
}

/** dw [OC,K] = sum over images of dy[n] [OC,P] col[n]^T [P,K]: one GEMM per image, each adding
 *  into dw, or where weightGradientFolded one GEMM whose reduction runs over the images and pixels,
 *  dy: [OC, N*P] (dy transposed) times col: [K, N*P] (im2col's batch-inner layout) transposed. */
function im2colBackwardWeight(dy: Tensor, x: Tensor, geo: Conv2dGeometry, kept: Tensor | null = null): Tensor {
  const { N, OC } = geo;
  const K = geo.C * geo.KH * geo.KW;
  const P = geo.OH * geo.OW;
  const fold = weightGradientFolded(geo);
  const col = kept ?? im2col(x, geo, `${describe(geo)} (backwardWeight${fold ? ', batch inner' : ''})`, fold);
  const dw = Tensor.empty([OC, geo.C, geo.KH, geo.KW]);
  if (fold) {
    const dyT = transpose(dy.reshape([N, OC, P]), [1, 0, 2]);
    convGemm(geo, 'backwardWeight', { M: OC, N: K, K: N * P }, { t: dyT, stride: 0 }, { t: col, stride: 0, trans: true }, { t: dw, stride: 0 }, false, undefined, 1);
    dyT.release();
  } else {
    convGemm(geo, 'backwardWeight', { M: OC, N: K, K: P }, { t: dy, stride: OC * P }, { t: col, stride: K * P, trans: true }, { t: dw, stride: 0 }, false);
  }
  if (col !== x) col.release();
  return dw;
}

/** y: [N,OC,OH,OW] = conv(x: [N,C,H,W], w: [OC,C/groups,KH,KW]) + bias: [OC], then the epilogue */
export function conv2dForward(x: Tensor, w: Tensor, bias: Tensor | null, geo: Conv2dGeometry, epilogue: ConvEpilogue = {}, kept?: KeptCol): Tensor {
  const keepU = keepsWinogradWeights(w);
  const m = winogradChosen('forward', geo, geo, keepU);
  if (m) return winogradConv(x, w, bias, geo, false, epilogue, 'forward', m, keepU);
  if (im2colChosen('forward', geo)) return im2colForward(x, w, bias, geo, epilogue, kept);
  const y = Tensor.empty([geo.N, geo.OC, geo.OH, geo.OW]);
  const K = geo.Cg * geo.KH * geo.KW;
  const { affine = null, residual = null, relu = false } = epilogue;
  // bindings the flags leave unread are given w
  launchGemm('forward', y, [x, w, bias ?? w, affine ?? w, residual ?? w], K % 4 === 0, geo.OCg, geo.N * geo.OH * geo.OW, K, geo,
    params(geo, bias !== null, undefined, { hasAffine: affine !== null, hasResidual: residual !== null, relu }));
  return y;
}

/** dx: [N,C,H,W] from dy: [N,OC,OH,OW] and w, one dispatch per stride phase (all of them, so
 *  that pixels no tap reaches get their zeros), through w transposed in per-phase blocks. */
export function conv2dBackwardInput(dy: Tensor, w: Tensor, geo: Conv2dGeometry): Tensor {
  const back = winogradBackward(geo);
  const m = winogradChosen('backwardInput', geo, back);
  if (m) return winogradConv(dy, w, null, back!, true, {}, 'backwardInput', m);
  if (im2colChosen('backwardInput', geo)) return im2colBackwardInput(dy, w, geo);
  const rows = axisPhases(geo.H, geo.KH, geo.stride[0], geo.padding[0], geo.dilation[0]);
  const cols = axisPhases(geo.W, geo.KW, geo.stride[1], geo.padding[1], geo.dilation[1]);
  const phases: [AxisPhase, AxisPhase, number][] = [];
  let offset = 0;
  for (const h of rows) {
    for (const v of cols) {
      if (h.count * v.count === 0) continue; // no input pixels (input smaller than the stride)
      phases.push([h, v, offset]);
      offset += geo.C * geo.OCg * h.nk * v.nk;
    }
  }
  const wT = Tensor.empty([offset]);
  for (const phase of phases) {
    if (phase[0].nk * phase[1].nk === 0) continue;
    getGpu().dispatch({
      kernel: kernel('transposeWeight', 2, false),
      buffers: [wT.buffer, w.buffer],
      params: params(geo, false, phase),
      workgroups: [Math.ceil(geo.OCg / 64), geo.C],
      label: `conv2d.transposeWeight ${describe(geo)} phase ${phase[0].first},${phase[1].first}`,
    });
  }
  const dx = Tensor.empty([geo.N, geo.C, geo.H, geo.W]);
  for (const phase of phases) {
    const [h, v, off] = phase;
    const K = geo.OCg * h.nk * v.nk;
    launchGemm('backwardInput', dx, [dy, wT], K % 4 === 0 && off % 4 === 0, geo.Cg, geo.N * h.count * v.count, K, geo, params(geo, false, phase), ` phase ${h.first},${v.first}`);
  }
  wT.release(); // the dispatches already recorded keep their order with later reuse of the buffer
  return dx;
}

/** dw: [OC,C/groups,KH,KW] from dy: [N,OC,OH,OW] and x: [N,C,H,W] */
export function conv2dBackwardWeight(dy: Tensor, x: Tensor, geo: Conv2dGeometry, kept: Tensor | null = null): Tensor {
  if (kept) return im2colBackwardWeight(dy, x, geo, kept); // the forward's col (colShared)
  const m = winogradChosen('backwardWeight', geo, winogradWeightGeometry(geo));
  if (m) return winogradWeightGradient(dy, x, geo, m);
  if (im2colChosen('backwardWeight', geo)) return im2colBackwardWeight(dy, x, geo);
  const dw = Tensor.empty([geo.OC, geo.Cg, geo.KH, geo.KW]);
  launchGemm('backwardWeight', dw, [x, dy], (geo.OH * geo.OW) % 4 === 0, geo.OCg, geo.Cg * geo.KH * geo.KW, geo.N * geo.OH * geo.OW, geo, params(geo));
  return dw;
}

/** db: [OC] = dy: [N,OC,OH,OW] summed over N, OH, OW */
export function conv2dBackwardBias(dy: Tensor, geo: Conv2dGeometry): Tensor {
  const db = Tensor.empty([geo.OC]);
  getGpu().dispatch({
    kernel: kernel('backwardBias', 2, false),
    buffers: [db.buffer, dy.buffer],
    params: params(geo),
    workgroups: [geo.OC],
    label: `conv2d.backwardBias ${describe(geo)}`,
  });
  return db;
}

/**
 * Inference only (nothing recorded on the tape): relu(affine(conv2d(x, w, bias)) + residual) in
 * one kernel, the convolution's epilogue doing what would be three more passes over y (an eval
 * batchnorm, the residual add, the ReLU) and their dispatches.
 */
export function conv2dFused(x: Tensor, w: Tensor, bias: Tensor | null, opts: Conv2dOptions, epilogue: ConvEpilogue): Tensor {
  const geo = conv2dGeometry(x.shape, w.shape, bias ? bias.shape : null, opts);
  const { affine, residual } = epilogue;
  if (isGradEnabled() && [x, w, bias, affine, residual].some((t) => t?.requiresGrad)) {
    throw new OpError('conv2dFused', 'has no gradient (inference only): an input requires one; use conv2d, batchNorm2d and relu, or noGrad');
  }
  if (affine && (affine.shape.length !== 2 || affine.shape[0] !== geo.OC || affine.shape[1] !== 4)) {
    throw new OpError('conv2dFused', `affine must be [${geo.OC},4], got ${shapeStr(affine.shape)}`);
  }
  const yShape = [geo.N, geo.OC, geo.OH, geo.OW];
  if (residual && shapeStr(residual.shape) !== shapeStr(yShape)) {
    throw new OpError('conv2dFused', `residual must be ${shapeStr(yShape)}, got ${shapeStr(residual.shape)}`);
  }
  return conv2dForward(x, w, bias, geo, epilogue);
}

/** torch.nn.functional.conv2d: x: [N,C,H,W], w: [OC,C/groups,KH,KW], bias: [OC] or null -> [N,OC,OH,OW] */
export function conv2d(x: Tensor, w: Tensor, bias: Tensor | null = null, opts: Conv2dOptions = {}): Tensor {
  const geo = conv2dGeometry(x.shape, w.shape, bias ? bias.shape : null, opts);
  // the forward's column matrix, for the weight gradient where it reads the same one
  const kept = isGradEnabled() && w.requiresGrad && colShared(geo) ? ({ col: null } as KeptCol) : undefined;
  const y = conv2dForward(x, w, bias, geo, {}, kept);
  return recordOp('conv2d', [x, w, bias], y, (dy, needs) => [
    needs[0] ? conv2dBackwardInput(dy, w, geo) : null,
    needs[1] ? conv2dBackwardWeight(dy, x, geo, kept?.col ?? null) : null,
    needs[2] ? conv2dBackwardBias(dy, geo) : null,
  ]);
}

export interface Conv1dOptions {
  stride?: number;
  padding?: number;
  dilation?: number;
  groups?: number;
}

/** torch.nn.functional.conv1d: x: [N,C,L], w: [OC,C/groups,K], bias: [OC] or null -> [N,OC,OL].
 *  The convolution of the views x: [N,C,1,L] and w: [OC,C/groups,1,K] (one kernel serves both). */
export function conv1d(x: Tensor, w: Tensor, bias: Tensor | null, opts: Conv1dOptions = {}): Tensor {
  if (!(x instanceof Tensor) || !(w instanceof Tensor) || x.ndim !== 3 || w.ndim !== 3) {
    const shape = (t: unknown) => (t instanceof Tensor ? shapeStr(t.shape) : typeof t);
    throw new OpError('conv1d', `expected x [N,C,L] and w [OC,C/groups,K], got x${shape(x)} w${shape(w)}`);
  }
  const [N, C, L] = x.shape;
  const [OC, Cg, K] = w.shape;
  const { stride = 1, padding = 0, dilation = 1, groups } = opts;
  const y = conv2d(x.reshape([N, C, 1, L]), w.reshape([OC, Cg, 1, K]), bias, { stride: [1, stride], padding: [0, padding], dilation: [1, dilation], groups });
  return y.reshape([N, OC, y.shape[3]]);
}

// ---- gradcheck (gpunet gradcheck conv2d --shape N,C,H,W --options '{"stride":2}') ------------

registerGradcheck({
  name: 'conv2d',
  inputs: ['x', 'weight', 'bias'],
  shapes: ([x = [2, 3, 7, 5], w, b], o) => {
    const groups = o.groups ?? 1;
    w ??= [4 * groups, x[1] / groups, 3, 3];
    return [x, w, b ?? [w[0]]];
  },
  options: { stride: 1, padding: 1, dilation: 1, groups: 1 } as Conv2dOptions,
  run: ([x, w, b], o) => conv2d(x, w, b, o),
  reference: ([x, w, b], [xs, ws], o) => {
    const { stride, padding, dilation, groups } = conv2dGeometry(xs, ws, null, o);
    return conv2dRef(x, xs, w, ws, b, { stride, padding, dilation, groups }).y;
  },
});

registerGradcheck({
  name: 'conv1d',
  inputs: ['x', 'weight', 'bias'],
  shapes: ([x = [2, 3, 9], w, b], o) => {
    w ??= [4 * o.groups, x[1] / o.groups, 3];
    return [x, w, b ?? [w[0]]];
  },
  options: { stride: 1, padding: 1, dilation: 1, groups: 1 } as Required<Conv1dOptions>,
  run: ([x, w, b], o) => conv1d(x, w, b, o),
  reference: ([x, w, b], [xs, ws], o) => conv1dRef(x, xs, w, ws, b, o).y,
});
