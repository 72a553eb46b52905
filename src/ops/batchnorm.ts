// Batch normalization of [N,C,H,W] activations per channel (torch.nn.functional.batch_norm).
// Training normalizes with the batch mean and biased variance and moves the running stats toward
// the batch's (unbiased variance) in place; eval normalizes with the running stats. The math and
// the kernels are described in shaders/batchnorm.wgsl: per-channel reductions (a grid of slices per
// channel, then a per-channel merge) and one per-element affine kernel with per-channel
// coefficients, used for y and for dx alike; on small maps (layer3-4's 7x7 and 4x4) each pass is
// one kernel instead, a workgroup per group of channels.
// Read first: the plain float64 loops in src/reference/batchnorm.ts; the kernels are in shaders/batchnorm.wgsl.
import { getGpu, grid, type KernelSpec } from '../gpu/index.ts';
import { batchNorm2dRef } from '../reference/batchnorm.ts';
import { OpError, recordOp, shapeStr, Tensor } from '../tensor/index.ts';
import { registerGradcheck } from './gradcheck.ts';

export interface BatchNormOptions {
  training: boolean;
  /** weight of the batch statistic in the running average; 0.1 as torch */
  momentum?: number;
  /** added to the variance; 1e-5 as torch */
  eps?: number;
}

/** The switches in shaders/batchnorm.wgsl's Params. */
interface BatchNormFlags {
  training: boolean;
  hasGamma: boolean;
  hasBeta: boolean;
  writeDGamma: boolean;
  writeDBeta: boolean;
  twoInputs: boolean;
}

const NO_FLAGS: BatchNormFlags = { training: false, hasGamma: false, hasBeta: false, writeDGamma: false, writeDBeta: false, twoInputs: false };

/** The small-map kernels' Params fields, unused by the others. */
const NO_SMALL = { N: 0, hw: 0, group: 0, run: 0, imageVecs: 0, nGroups: 0, needDx: false };

/** floats each reduction invocation runs over before writing its 16-byte partial result */
const FLOATS_PER_LANE = 64;
/** T elements per channel_affine invocation */
const AFFINE_PER = 4;
/** lanes of a channel_affine workgroup, whatever the reductions' */
const AFFINE_WG = 256;
/** bound on the slices of a channel: each finalize invocation merges one partial per slice */
const MAX_SLICES = 1024;

/** The smallest reduction workgroup: a GPU wants 64 lanes busy at the least; on a CPU adapter
 *  every lane of a workgroup writes a partial result that the finalize pass reads back, which for
 *  small channels (layer4's 4x4 maps at batch 8: 32 elements) cost more than x itself, so 8. */
function minWorkgroup(): number {
  return getGpu().isCpu ? 8 : 64;
}

/** How x is walked: T elements (vec4 when H*W allows), the workgroup size (smaller for small
 *  channels, so that each lane still has work), slices of each channel, and the u32 params shared
 *  by every kernel (Params in the shader). */
function layout(shape: readonly number[], eps: number, momentum: number) {
  const [N, C, H, W] = shape;
  const lanes = (H * W) % 4 === 0 ? 4 : 1;
  const planeVecs = (H * W) / lanes;
  const items = N * planeVecs;
  const perLane = FLOATS_PER_LANE / lanes;
  const wg = Math.min(256, Math.max(minWorkgroup(), 2 ** Math.ceil(Math.log2(items / perLane))));
  const span = Math.max(wg * perLane, Math.ceil(items / MAX_SLICES));
  const slices = Math.ceil(items / span);
  const total = N * C * planeVecs;
  const defines = { T: lanes === 4 ? 'vec4<f32>' : 'f32', W: String(lanes) };
  // the reductions run workgroups of wg lanes; channel_affine of AFFINE_WG (its walk steps by them)
  const spec = (entry: string, bindings: KernelSpec['bindings'], size = wg): KernelSpec => ({
    shader: 'batchnorm', entry, bindings, defines, constants: { WG: size, PER: AFFINE_PER },
  });
  const params = (flags: Partial<BatchNormFlags>, withSlices = slices, size = wg) => {
    const stepN = Math.floor(size / planeVecs);
    return { params: { C, planeVecs, items, span, slices: withSlices, total, stepN, stepK: size % planeVecs, stepC: stepN % C, ...NO_FLAGS, ...flags, eps, momentum, ...NO_SMALL } };
  };
  return { slices, partials: [C, slices, wg, 4], spec, params, channelGroups: grid(C, 1), affineGroups: grid(total, AFFINE_WG * AFFINE_PER) };
}

/** A channel's values (N*H*W) up to which a pass is one kernel (small_forward, small_backward). */
const SMALL_MAX_VALUES = 1024;
/** lanes of a small-map workgroup */
const SMALL_WG = 64;

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/** The small-map path's layout, or null where x takes the three-kernel path: channels per
 *  workgroup (a group's planes at one image are whole vec4s together: four 7x7 planes make 49),
 *  each group's run at one image no longer than a workgroup, and the images its lanes walk at once.
 *  On a CPU adapter a workgroup takes as many channels as its lanes cover at one image (few
 *  workgroups, each looping over the images: a workgroup's launch and barriers are what cost); on
 *  a GPU the fewest that keep its lanes busy, for many workgroups (one unit: 128 workgroups for
 *  layer4's 512 7x7 channels). */
function smallLayout(shape: readonly number[], eps: number, momentum: number) {
  const [N, C, H, W] = shape;
  const hw = H * W;
  if ((C * hw) % 4 !== 0 || N * hw > SMALL_MAX_VALUES) return null;
  const unit = 4 / gcd(hw, 4); // channels whose planes together are whole vec4s
  const unitRun = (unit * hw) / 4;
  if (unitRun > SMALL_WG) return null;
  // CPU: as many units as a workgroup's lanes cover at one image; GPU: as many as they cover at
  // every image (one unit where that is more than a workgroup); a lane folds each channel's sums
  const perUnit = getGpu().isCpu ? unitRun : unitRun * N;
  const units = Math.max(1, Math.min(Math.floor(SMALL_WG / perUnit), Math.floor(SMALL_WG / unit), Math.ceil(C / unit)));
  const group = unit * units;
  const run = (group * hw) / 4;
  const nGroups = Math.min(N, Math.floor(SMALL_WG / run));
  const workgroups = grid(Math.ceil(C / group), 1, getGpu().limits.maxComputeWorkgroupsPerDimension);
  const spec = (entry: string, bindings: KernelSpec['bindings']): KernelSpec => ({
    shader: 'batchnorm', entry, bindings, defines: { T: 'vec4<f32>', W: '4' }, constants: { WG: SMALL_WG, PER: AFFINE_PER },
  });
  const params = (flags: Partial<BatchNormFlags> & { needDx?: boolean }) => ({
    params: {
      C, planeVecs: 0, items: 0, span: 0, slices: 0, total: 0, stepN: 0, stepK: 0, stepC: 0, ...NO_FLAGS, eps, momentum,
      ...NO_SMALL, N, hw, group, run, imageVecs: (C * hw) / 4, nGroups, ...flags,
    },
  });
  return { spec, params, workgroups };
}

/** stats_finalize: saved (mean, invstd) and coef (the channel_affine coefficients of y) from the
 *  partial moments (training, running stats updated) or the running stats (eval). */
function finalize(
  geo: ReturnType<typeof layout>, flags: Partial<BatchNormFlags>, out: [saved: Tensor, coef: Tensor, runningMean: Tensor, runningVar: Tensor],
  partials: Tensor | null, weight: Tensor | null, bias: Tensor | null, standIn: Tensor, label: string,
): void {
  getGpu().dispatch({
    kernel: geo.spec('stats_finalize', ['write', 'write', 'write', 'write', 'read', 'read', 'read']),
    buffers: [...out.map((t) => t.buffer), (partials ?? standIn).buffer, (weight ?? standIn).buffer, (bias ?? standIn).buffer],
    ...geo.params(flags),
    workgroups: geo.channelGroups,
    label: `${label}.finalize`,
  });
}

/**
 * An eval-mode batchnorm as per-channel coefficients [C,4] (_, a, c, m), y = a*(x - m) + c with
 * a = gamma / sqrt(running var + eps), c = beta, m = the running mean: what conv2dFused applies in
 * the convolution's epilogue instead of a pass of its own (not on the tape).
 */
export function batchNormEvalCoefficients(weight: Tensor | null, bias: Tensor | null, runningMean: Tensor, runningVar: Tensor, eps = 1e-5): Tensor {
  const C = runningMean.shape[0];
  const saved = Tensor.empty([C, 2], 'batchnorm mean, invstd');
  const coef = Tensor.empty([C, 4], 'batchnorm coefficients');
  const unread = Tensor.empty([4], 'batchnorm unused'); // stands in for the partials (a read binding no write binding may share)
  finalize(layout([1, C, 1, 1], eps, 0), { hasGamma: weight !== null, hasBeta: bias !== null, training: false }, [saved, coef, runningMean, runningVar], null, weight, bias, unread, `batchNorm2d.eval [${C}]`);
  saved.release();
  unread.release();
  return coef;
}

/** The training or eval forward on small maps: one kernel (statistics and y). */
function smallForward(
  small: NonNullable<ReturnType<typeof smallLayout>>, flags: Partial<BatchNormFlags>, x: Tensor, weight: Tensor | null, bias: Tensor | null,
  runningMean: Tensor, runningVar: Tensor, saved: Tensor, label: string,
): Tensor {
  const out = Tensor.empty(x.shape);
  getGpu().dispatch({
    kernel: small.spec('small_forward', ['write', 'write', 'write', 'write', 'read', 'read', 'read']),
    buffers: [out.buffer, saved.buffer, runningMean.buffer, runningVar.buffer, x.buffer, (weight ?? x).buffer, (bias ?? x).buffer],
    ...small.params(flags),
    workgroups: small.workgroups,
    label: `${label}.forward`,
    work: { bytes: (flags.training ? 12 : 8) * x.size },
  });
  return out;
}

/** The forward on large maps: the statistics' partials over a grid of slices per channel (when
 *  training), their per-channel merge (or the running stats) into y's coefficients, then y. */
function forward(
  geo: ReturnType<typeof layout>, flags: Partial<BatchNormFlags>, x: Tensor, weight: Tensor | null, bias: Tensor | null,
  runningMean: Tensor, runningVar: Tensor, saved: Tensor, label: string,
): Tensor {
  const gpu = getGpu();
  const [, C] = x.shape;
  const coef = Tensor.empty([C, 4], 'batchnorm coefficients');
  // unused read-only bindings are given x, never read
  let partials: Tensor | null = null;
  if (flags.training) {
    partials = Tensor.empty(geo.partials, 'batchnorm partial moments');
    gpu.dispatch({
      kernel: geo.spec('stats_partial', ['write', 'read']),
      buffers: [partials.buffer, x.buffer],
      ...geo.params(flags),
      workgroups: [geo.slices, C],
      label: `${label}.stats`,
      work: { bytes: 4 * x.size },
    });
  }
  finalize(geo, flags, [saved, coef, runningMean, runningVar], partials, weight, bias, x, label);
  partials?.release();
  const out = Tensor.empty(x.shape);
  gpu.dispatch({
    kernel: geo.spec('channel_affine', ['write', 'read', 'read', 'read'], AFFINE_WG),
    buffers: [out.buffer, coef.buffer, x.buffer, x.buffer],
    ...geo.params(flags, geo.slices, AFFINE_WG),
    workgroups: geo.affineGroups,
    label: `${label}.normalize`,
    work: { bytes: 8 * x.size },
  });
  coef.release();
  return out;
}

/** The backward on large maps: the sums of dy and dy*xhat over a grid of slices (when training or
 *  when dgamma or dbeta is wanted), their per-channel merge into dgamma, dbeta and dx's
 *  coefficients, then dx (when wanted). */
function backward(
  geo: ReturnType<typeof layout>, flags: Partial<BatchNormFlags>, dy: Tensor, x: Tensor, weight: Tensor | null, saved: Tensor,
  dx: Tensor | null, dgammaOut: Tensor, dbetaOut: Tensor, label: string,
): void {
  const gpu = getGpu();
  const [, C] = x.shape;
  const training = flags.training ?? false;
  const reduce = flags.writeDGamma || flags.writeDBeta || (dx !== null && training);
  let gradPartials: Tensor | null = null;
  if (reduce) {
    gradPartials = Tensor.empty(geo.partials, 'batchnorm partial sums');
    gpu.dispatch({
      kernel: geo.spec('grad_partial', ['write', 'read', 'read', 'read']),
      buffers: [gradPartials.buffer, dy.buffer, x.buffer, saved.buffer],
      ...geo.params(flags),
      workgroups: [geo.slices, C],
      label: `${label}.gradSums`,
      work: { bytes: 8 * x.size },
    });
  }
  const dxCoef = Tensor.empty([C, 4], 'batchnorm dx coefficients');
  gpu.dispatch({
    kernel: geo.spec('grad_finalize', ['write', 'write', 'write', 'read', 'read', 'read']),
    buffers: [dxCoef.buffer, dgammaOut.buffer, dbetaOut.buffer, (gradPartials ?? x).buffer, saved.buffer, (weight ?? x).buffer],
    ...geo.params(flags, reduce ? geo.slices : 0),
    workgroups: geo.channelGroups,
    label: `${label}.gradFinalize`,
  });
  gradPartials?.release();
  if (dx) {
    // training: dx = a*dy + b*(x - mean) + c; eval: dx = a*dy
    gpu.dispatch({
      kernel: geo.spec('channel_affine', ['write', 'read', 'read', 'read'], AFFINE_WG),
      buffers: [dx.buffer, dxCoef.buffer, dy.buffer, x.buffer],
      ...geo.params({ twoInputs: training }, geo.slices, AFFINE_WG),
      workgroups: geo.affineGroups,
      label: `${label}.dx`,
      work: { bytes: (training ? 12 : 8) * x.size },
    });
  }
  dxCoef.release();
}

export function batchNorm2d(
  x: Tensor,
  weight: Tensor | null,
  bias: Tensor | null,
  runningMean: Tensor,
  runningVar: Tensor,
  opts: BatchNormOptions,
): Tensor {
  const op = 'batchNorm2d';
  if (x.ndim !== 4 || x.size === 0) throw new OpError(op, `x must be a non-empty [N,C,H,W] tensor, got ${shapeStr(x.shape)}`);
  const [N, C, H, W] = x.shape;
  const perChannel: [string, Tensor | null][] = [['weight', weight], ['bias', bias], ['runningMean', runningMean], ['runningVar', runningVar]];
  for (const [name, t] of perChannel) {
    if (t !== null && (t.ndim !== 1 || t.shape[0] !== C)) {
      throw new OpError(op, `${name} must be [${C}] for x ${shapeStr(x.shape)}, got ${shapeStr(t.shape)}`);
    }
  }
  if (opts.training && N * H * W === 1) {
    throw new OpError(op, `training needs more than 1 value per channel, x is ${shapeStr(x.shape)}`);
  }
  const momentum = opts.momentum ?? 0.1;
  const eps = opts.eps ?? 1e-5;
  const training = opts.training;
  const gpu = getGpu();
  const label = `${op} x${shapeStr(x.shape)}`;
  const modeFlags = { hasGamma: weight !== null, hasBeta: bias !== null, training };
  const saved = Tensor.empty([C, 2], 'batchnorm mean, invstd'); // for the backward
  const small = smallLayout(x.shape, eps, momentum);
  const out = small ? smallForward(small, modeFlags, x, weight, bias, runningMean, runningVar, saved, label) : forward(layout(x.shape, eps, momentum), modeFlags, x, weight, bias, runningMean, runningVar, saved, label);

  const y = recordOp(op, [x, weight, bias], out, (dy, needs) => {
    const [needX, needGamma, needBeta] = needs;
    const dgamma = needGamma ? Tensor.empty([C]) : null;
    const dbeta = needBeta ? Tensor.empty([C]) : null;
    const gradFlags = { ...modeFlags, writeDGamma: needGamma, writeDBeta: needBeta };
    // a gradient nobody asked for is bound to a scratch buffer, which the kernel does not write
    // (each its own: WebGPU forbids two writable bindings of one buffer)
    const dgammaOut = dgamma ?? Tensor.empty([1], 'batchnorm unused dgamma');
    const dbetaOut = dbeta ?? Tensor.empty([1], 'batchnorm unused dbeta');
    const dx = needX ? Tensor.empty(x.shape) : null;
    if (small) {
      const dxOut = dx ?? Tensor.empty([4], 'batchnorm unused dx');
      gpu.dispatch({
        kernel: small.spec('small_backward', ['write', 'write', 'write', 'read', 'read', 'read', 'read']),
        buffers: [dxOut.buffer, dgammaOut.buffer, dbetaOut.buffer, dy.buffer, x.buffer, saved.buffer, (weight ?? x).buffer],
        ...small.params({ ...gradFlags, needDx: needX }),
        workgroups: small.workgroups,
        label: `${label}.backward`,
        work: { bytes: ((training || needGamma || needBeta ? 8 : 0) + (needX ? (training ? 12 : 8) : 0)) * x.size },
      });
      if (!dx) dxOut.release();
    } else {
      backward(layout(x.shape, eps, momentum), gradFlags, dy, x, weight, saved, dx, dgammaOut, dbetaOut, label);
    }
    if (!dgamma) dgammaOut.release();
    if (!dbeta) dbetaOut.release();
    return [dx, dgamma, dbeta];
  });
  if (!y.node) saved.release(); // no backward will read it
  return y;
}

// ---- gradcheck (training: batch statistics; eval: running statistics 0.1 and 1.5) ------------

registerGradcheck({
  name: 'batchnorm2d',
  inputs: ['x', 'weight', 'bias'],
  shapes: ([x = [2, 3, 4, 5], w = [x[1]], b = [x[1]]]) => [x, w, b],
  options: { training: true, momentum: 0.1, eps: 1e-5 },
  run: ([x, w, b], o) => batchNorm2d(x, w, b, Tensor.full(w.shape, 0.1), Tensor.full(w.shape, 1.5), o),
  reference: ([x, w, b], [shape, [C]], o) => batchNorm2dRef(x, shape, w, b, new Float64Array(C).fill(0.1), new Float64Array(C).fill(1.5), o),
});
