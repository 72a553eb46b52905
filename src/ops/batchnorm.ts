// Batch normalization of [N,C,H,W] activations per channel (torch.nn.functional.batch_norm).
// Training normalizes with the batch mean and biased variance and moves the running stats toward
// the batch's (unbiased variance) in place; eval normalizes with the running stats. The math and
// the kernels are described in shaders/batchnorm.wgsl: per-channel reductions (a grid of slices per
// channel, then a per-channel merge) and one per-element affine kernel with per-channel
// coefficients, used for y and for dx alike.
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
    return { params: { C, planeVecs, items, span, slices: withSlices, total, stepN, stepK: size % planeVecs, stepC: stepN % C, ...NO_FLAGS, ...flags, eps, momentum } };
  };
  return { slices, partials: [C, slices, wg, 4], spec, params, channelGroups: grid(C, 1), affineGroups: grid(total, AFFINE_WG * AFFINE_PER) };
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
  const geo = layout(x.shape, eps, momentum);
  const label = `${op} x${shapeStr(x.shape)}`;
  const modeFlags = { hasGamma: weight !== null, hasBeta: bias !== null, training };

  const saved = Tensor.empty([C, 2], 'batchnorm mean, invstd'); // for the backward
  const coef = Tensor.empty([C, 4], 'batchnorm coefficients');
  // unused read-only bindings are given x, never read
  let partials: Tensor | null = null;
  if (training) {
    partials = Tensor.empty(geo.partials, 'batchnorm partial moments');
    gpu.dispatch({
      kernel: geo.spec('stats_partial', ['write', 'read']),
      buffers: [partials.buffer, x.buffer],
      ...geo.params(modeFlags),
      workgroups: [geo.slices, C],
      label: `${label}.stats`,
      work: { bytes: 4 * x.size },
    });
  }
  finalize(geo, modeFlags, [saved, coef, runningMean, runningVar], partials, weight, bias, x, label);
  partials?.release();
  const out = Tensor.empty(x.shape);
  gpu.dispatch({
    kernel: geo.spec('channel_affine', ['write', 'read', 'read', 'read'], AFFINE_WG),
    buffers: [out.buffer, coef.buffer, x.buffer, x.buffer],
    ...geo.params(modeFlags, geo.slices, AFFINE_WG),
    workgroups: geo.affineGroups,
    label: `${label}.normalize`,
    work: { bytes: 8 * x.size },
  });
  coef.release();

  const y = recordOp(op, [x, weight, bias], out, (dy, needs) => {
    const [needX, needGamma, needBeta] = needs;
    // dgamma, dbeta and the training dx need the per-channel sums of dy and dy*xhat
    const reduce = needGamma || needBeta || (needX && training);
    const dgamma = needGamma ? Tensor.empty([C]) : null;
    const dbeta = needBeta ? Tensor.empty([C]) : null;
    const gradFlags = { ...modeFlags, writeDGamma: needGamma, writeDBeta: needBeta };
    let gradPartials: Tensor | null = null;
    if (reduce) {
      gradPartials = Tensor.empty(geo.partials, 'batchnorm partial sums');
      gpu.dispatch({
        kernel: geo.spec('grad_partial', ['write', 'read', 'read', 'read']),
        buffers: [gradPartials.buffer, dy.buffer, x.buffer, saved.buffer],
        ...geo.params(gradFlags),
        workgroups: [geo.slices, C],
        label: `${label}.gradSums`,
        work: { bytes: 8 * x.size },
      });
    }
    // a gradient nobody asked for is bound to a scratch buffer, which the kernel does not write
    // (each its own: WebGPU forbids two writable bindings of one buffer)
    const dgammaOut = dgamma ?? Tensor.empty([1], 'batchnorm unused dgamma');
    const dbetaOut = dbeta ?? Tensor.empty([1], 'batchnorm unused dbeta');
    const dxCoef = Tensor.empty([C, 4], 'batchnorm dx coefficients');
    gpu.dispatch({
      kernel: geo.spec('grad_finalize', ['write', 'write', 'write', 'read', 'read', 'read']),
      buffers: [dxCoef.buffer, dgammaOut.buffer, dbetaOut.buffer, (gradPartials ?? x).buffer, saved.buffer, (weight ?? x).buffer],
      ...geo.params(gradFlags, reduce ? geo.slices : 0),
      workgroups: geo.channelGroups,
      label: `${label}.gradFinalize`,
    });
    gradPartials?.release();
    if (!dgamma) dgammaOut.release();
    if (!dbeta) dbetaOut.release();
    let dx: Tensor | null = null;
    if (needX) {
      dx = Tensor.empty(x.shape);
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
