// Window ops: Conv, MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, in 2-D and in 1-D
// (an [N,C,L] input runs as [N,C,1,L], its window as 1 x k). ONNX pads may be asymmetric (and
// come from auto_pad); the engine's kernels take symmetric padding (pooling: at most half the
// window), so the rest becomes an explicit pad step before the kernel.
import { padAxis } from '../../ops/concat.ts';
import { conv2d } from '../../ops/conv2d.ts';
import { mul } from '../../ops/elementwise.ts';
import { avgPool2d, globalAvgPool2d, globalMaxPool2d, maxPool2d } from '../../ops/pool.ts';
import { OpError, shapeStr, Tensor } from '../../tensor/index.ts';
import type { OnnxNode } from '../ir.ts';
import type { NodeContext, OnnxOp } from './op.ts';

type Pair = [number, number];

/** The spatial rank of a window op's input x: [N,C,L] or [N,C,H,W]. */
function spatialRank(c: NodeContext, x: Tensor): 1 | 2 {
  if (x.ndim !== 3 && x.ndim !== 4) throw new OpError(c.op, `only 1-D and 2-D ${c.op} are supported, got x${shapeStr(x.shape)}`);
  return x.ndim === 3 ? 1 : 2;
}

/** x as [N,C,H,W]: a 1-D input [N,C,L] viewed as [N,C,1,L]. */
const as2d = (x: Tensor): Tensor => (x.ndim === 3 ? x.reshape([x.shape[0], x.shape[1], 1, x.shape[2]]) : x);

/** A 2-D result back in the input's rank: [N,C,1,L] -> [N,C,L]. */
function fromAs2d(y: Tensor, rank: 1 | 2): Tensor {
  if (rank === 2) return y;
  const out = y.reshape([y.shape[0], y.shape[1], y.shape[3]]);
  y.discard();
  return out;
}

/** A window attribute (kernel_shape, strides, dilations) for the two spatial axes: a 1-D op's
 *  height is 1. */
function pairAttr(c: NodeContext, name: string, dflt: number, rank: 1 | 2): Pair {
  const v = c.ints(name, Array(rank).fill(dflt));
  if (v.length !== rank) throw new OpError(c.op, `${name} ${JSON.stringify(v)} for a ${rank}-D input`);
  return rank === 1 ? [1, v[0]] : [v[0], v[1]];
}

/** ONNX pads of a window op as [top, left, bottom, right] (a 1-D op's [begin, end] as [0, begin,
 *  0, end]), resolving auto_pad. */
function windowPads(c: NodeContext, H: number, W: number, k: Pair, s: Pair, d: Pair, rank: 1 | 2): number[] {
  const autoPad = c.str('auto_pad', 'NOTSET');
  if (autoPad === 'NOTSET') {
    const pads = c.ints('pads', Array(2 * rank).fill(0));
    return rank === 1 && pads.length === 2 ? [0, pads[0], 0, pads[1]] : pads;
  }
  if (autoPad === 'VALID') return [0, 0, 0, 0];
  if (autoPad !== 'SAME_UPPER' && autoPad !== 'SAME_LOWER') throw new OpError(c.op, `unknown auto_pad '${autoPad}'`);
  const pads = [0, 0, 0, 0];
  [H, W].forEach((size, i) => {
    const out = Math.ceil(size / s[i]);
    const total = Math.max(0, (out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - size);
    const small = Math.floor(total / 2);
    // SAME_UPPER puts the extra padding at the end, SAME_LOWER at the beginning
    pads[i] = autoPad === 'SAME_UPPER' ? small : total - small;
    pads[i + 2] = total - pads[i];
  });
  return pads;
}

/**
 * Splits ONNX pads [top, left, bottom, right] into the symmetric part the engine's kernels take
 * (at most `limit` per side) and the rest, applied as an explicit pad step of `value` rows.
 */
function splitPads(x: Tensor, pads: number[], limit: Pair, value: number): { x: Tensor; padding: Pair } {
  if (pads.length !== 4 || pads.some((p) => !Number.isInteger(p) || p < 0)) throw new OpError('pads', `expected 4 non-negative pads, got ${JSON.stringify(pads)}`);
  const padding: Pair = [0, 0];
  let y = x;
  for (const i of [0, 1]) {
    padding[i] = Math.min(pads[i], pads[i + 2], limit[i]);
    const before = pads[i] - padding[i];
    const after = pads[i + 2] - padding[i];
    if (before > 0 || after > 0) {
      const next = padAxis(y, 2 + i, before, after, value);
      if (y !== x) y.discard();
      y = next;
    }
  }
  return { x: y, padding };
}

/** Runs `kernel` on x padded as the node says, discarding the padded copy afterwards. */
function withPads(x: Tensor, pads: number[], limit: Pair, value: number, kernel: (x: Tensor, padding: Pair) => Tensor): Tensor {
  const padded = splitPads(x, pads, limit, value);
  const y = kernel(padded.x, padded.padding);
  if (padded.x !== x) padded.x.discard();
  return y;
}

function conv(c: NodeContext): Tensor {
  const rank = spatialRank(c, c.gpu(0));
  const [x, w] = [as2d(c.gpu(0)), as2d(c.gpu(1))];
  const b = c.has(2) ? c.gpu(2) : null;
  if (w.ndim !== 4) throw new OpError(c.op, `weight ${shapeStr(c.shape(1))} for x${shapeStr(c.shape(0))}`);
  const k: Pair = [w.shape[2], w.shape[3]];
  const stride = pairAttr(c, 'strides', 1, rank);
  const dilation = pairAttr(c, 'dilations', 1, rank);
  const pads = windowPads(c, x.shape[2], x.shape[3], k, stride, dilation, rank);
  // asymmetric pads: the symmetric part in the kernel, the rest as a zero-padding step
  const y = withPads(x, pads, [Infinity, Infinity], 0, (xp, padding) => conv2d(xp, w, b, { stride, dilation, padding, groups: c.int('group', 1) }));
  for (const v of [x, w]) if (rank === 1) v.discard();
  return fromAs2d(y, rank);
}

/**
 * MaxPool / AveragePool. An average that excludes padding (count_include_pad = 0) over explicitly
 * padded input is corrected by the host-computed factor window / valid elements per output position.
 */
function pool(c: NodeContext): Tensor {
  const rank = spatialRank(c, c.gpu(0));
  const x = as2d(c.gpu(0));
  const y = pool2d(c, x, rank);
  if (x !== c.gpu(0)) x.discard();
  return fromAs2d(y, rank);
}

function pool2d(c: NodeContext, x: Tensor, rank: 1 | 2): Tensor {
  const [N, C, H, W] = x.shape;
  const k = pairAttr(c, 'kernel_shape', 0, rank);
  const stride = pairAttr(c, 'strides', 1, rank);
  const dilation = pairAttr(c, 'dilations', 1, rank);
  const pads = windowPads(c, H, W, k, stride, dilation, rank);
  const ceilMode = c.int('ceil_mode', 0) === 1;
  const half: Pair = [Math.floor(k[0] / 2), Math.floor(k[1] / 2)];
  if (c.op === 'MaxPool') return withPads(x, pads, half, -Infinity, (xp, padding) => maxPool2d(xp, { kernel: k, stride, dilation, padding, ceilMode }));
  const includePad = c.int('count_include_pad', 0) === 1;
  const symmetric = pads[0] === pads[2] && pads[1] === pads[3] && pads[0] <= half[0] && pads[1] <= half[1];
  if (symmetric || includePad) {
    return withPads(x, pads, half, 0, (xp, padding) => avgPool2d(xp, { kernel: k, stride, padding, ceilMode, countIncludePad: includePad }));
  }
  const sums = withPads(x, pads, [0, 0], 0, (xp) => avgPool2d(xp, { kernel: k, stride, ceilMode, countIncludePad: true }));
  const [OH, OW] = [sums.shape[2], sums.shape[3]];
  const factor = new Float32Array(N * C * OH * OW);
  for (let oh = 0; oh < OH; oh++) {
    for (let ow = 0; ow < OW; ow++) {
      const h0 = oh * stride[0] - pads[0];
      const w0 = ow * stride[1] - pads[1];
      const rows = Math.min(h0 + k[0], H) - Math.max(h0, 0);
      const cols = Math.min(w0 + k[1], W) - Math.max(w0, 0);
      // the kernel divided by the window's cells inside the padded input
      const cells = (Math.min(h0 + k[0], H + pads[2]) - h0) * (Math.min(w0 + k[1], W + pads[3]) - w0);
      for (let p = 0; p < N * C; p++) factor[(p * OH + oh) * OW + ow] = cells / Math.max(1, rows * cols);
    }
  }
  const f = Tensor.from(factor, sums.shape);
  const y = mul(sums, f);
  sums.discard();
  f.discard();
  return y;
}

/** Global pooling over the spatial axes, the result [N,C,1,1] (or [N,C,1] in 1-D). */
function globalPool(c: NodeContext, kernel: (x: Tensor) => Tensor): Tensor {
  const rank = spatialRank(c, c.gpu(0));
  const x = as2d(c.gpu(0));
  const y = kernel(x);
  if (x !== c.gpu(0)) x.discard();
  return fromAs2d(y, rank);
}

const refusePool = (node: OnnxNode): string | null => {
  if (node.opType === 'AveragePool' && ((node.attrs.dilations as number[] | undefined) ?? []).some((d) => d !== 1)) return `dilations ${JSON.stringify(node.attrs.dilations)}`;
  if (node.outputs.slice(1).some((o) => o !== '')) return 'the Indices output';
  return null;
};

export const CONV_OPS: Record<string, OnnxOp> = {
  Conv: { params: [1, 2], run: (c) => [conv(c)] },
  MaxPool: { refuse: refusePool, run: (c) => [pool(c)] },
  AveragePool: { refuse: refusePool, run: (c) => [pool(c)] },
  GlobalAveragePool: { run: (c) => [globalPool(c, globalAvgPool2d)] },
  GlobalMaxPool: { run: (c) => [globalPool(c, globalMaxPool2d)] },
};
