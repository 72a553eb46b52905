// Dropout (shaders/dropout.wgsl), as torch.nn.functional.dropout: in training each element is zeroed
// with probability p and the kept ones are scaled by 1/(1-p); in eval it is the identity. The mask
// is a hash of (seed, element index) computed in the shader, so the backward (dy masked and scaled
// the same way: the op is linear in x) recomputes it from the seed instead of storing it.
// Read first: the plain float64 version in src/reference/dropout.ts; the kernel is in shaders/dropout.wgsl.
import { getGpu, stridedWorkgroups } from '../gpu/index.ts';
import { dropoutRef } from '../reference/dropout.ts';
import { OpError, recordOp, shapeStr, Tensor } from '../tensor/index.ts';
import { registerGradcheck } from './gradcheck.ts';

/** Applies the mask of (seed, p) to `x`, scaling the kept elements. */
function applyMask(x: Tensor, p: number, seed: number, label: string): Tensor {
  const out = Tensor.empty(x.shape);
  const n = x.size;
  if (n === 0) return out;
  const vec = n % 4 === 0;
  getGpu().dispatch({
    kernel: {
      shader: 'dropout',
      entry: 'main',
      bindings: ['write', 'read'],
      defines: vec
        ? { T: 'vec4<f32>', U: 'vec4<u32>', WIDTH: '4', LANES: 'vec4u(0u, 1u, 2u, 3u)' }
        : { T: 'f32', U: 'u32', WIDTH: '1', LANES: '0u' },
    },
    buffers: [out.buffer, x.buffer],
    params: { n: vec ? n / 4 : n, seed: seed >>> 0, keepBelow: Math.round((1 - p) * 2 ** 24), scale: p === 1 ? 0 : 1 / (1 - p) },
    workgroups: [stridedWorkgroups(vec ? n / 4 : n, 256)],
    label: `${label} ${shapeStr(x.shape)} p=${p}`,
  });
  return out;
}

/**
 * torch.nn.functional.dropout(x, p, training). The same seed gives the same mask; pass a new seed
 * per call (e.g. a counter) for fresh masks.
 */
export function dropout(x: Tensor, p: number, training: boolean, seed: number): Tensor {
  if (!(x instanceof Tensor)) throw new OpError('dropout', `expected a tensor, got ${typeof x}`);
  if (!(p >= 0 && p <= 1)) throw new OpError('dropout', `p must be in [0, 1], got ${p} for ${shapeStr(x.shape)}`);
  if (!Number.isInteger(seed)) throw new OpError('dropout', `seed must be an integer, got ${seed}`);
  if (!training || p === 0) return x;
  const out = applyMask(x, p, seed, 'dropout');
  return recordOp('dropout', [x], out, (dy) => [applyMask(dy, p, seed, 'dropout.backward')]);
}

// ---- gradcheck (eval by default: the identity; --options '{"training":true}' checks the mask) --

registerGradcheck({
  name: 'dropout',
  inputs: ['x'],
  shapes: ([x = [2, 3, 7, 5]]) => [x],
  options: { p: 0.5, training: false, seed: 1 },
  run: ([x], o) => dropout(x, o.p, o.training, o.seed),
  reference: ([x], _, o) => dropoutRef(x, o.p, o.training, o.seed),
});
