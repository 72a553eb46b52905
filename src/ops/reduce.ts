// Reductions of a whole tensor to one value: sum and mean (shaders/reduce.wgsl).
// Forward: a two-level tree (per-workgroup partial sums, then one workgroup over the partials).
// Backward: every element contributes with weight 1 (sum) or 1/n (mean), so dx = dy broadcast.
import { getGpu, stridedWorkgroups } from '../gpu/index.ts';
import { OpError, recordOp, shapeStr, Tensor } from '../tensor/index.ts';

/**
 * Workgroup size and first-level workgroup count for summing n elements. A GPU wants many
 * workgroups to fill its cores; on the CPU each workgroup's barrier tree costs ~20 us and two
 * cores are busy with a few, so there a few workgroups each make long strided loops.
 */
function reduceLayout(n: number): { wg: number; groups: number } {
  const cpu = getGpu().isCpu;
  const wg = cpu ? 64 : Math.min(256, getGpu().limits.maxComputeInvocationsPerWorkgroup);
  const vec4PerInvocation = cpu ? 64 : 8; // at least, before another workgroup is worth launching
  const maxGroups = cpu ? 16 : 4 * wg; // the final pass loads at most one vec4 of partials per invocation
  return { wg, groups: Math.max(1, Math.min(maxGroups, Math.ceil(n / 4 / (wg * vec4PerInvocation)))) };
}

/**
 * The sum of x's elements times `scale`, into a new [1] tensor (not recorded on the tape). Shared
 * with the ops whose loss is a sum of per-row terms (softmax cross-entropy).
 */
export function reduceSum(x: Tensor, scale: number, label: string): Tensor {
  const gpu = getGpu();
  const { wg, groups } = reduceLayout(x.size);
  const kernel = { shader: 'reduce', entry: 'sumPartial', bindings: ['write', 'read'] as const, constants: { WG: wg } };
  const out = Tensor.empty([1]);
  if (groups === 1) {
    gpu.dispatch({ kernel, buffers: [out.buffer, x.buffer], params: { n: x.size, scale }, workgroups: [1], label });
    return out;
  }
  const partials = Tensor.empty([groups]);
  gpu.dispatch({ kernel, buffers: [partials.buffer, x.buffer], params: { n: x.size, scale: 1 }, workgroups: [groups], label: `${label} partials` });
  gpu.dispatch({ kernel, buffers: [out.buffer, partials.buffer], params: { n: groups, scale }, workgroups: [1], label: `${label} final` });
  partials.release();
  return out;
}

function reduceAll(op: 'sum' | 'mean', x: Tensor): Tensor {
  if (!(x instanceof Tensor)) throw new OpError(op, `expected a tensor, got ${typeof x}`);
  const scale = op === 'mean' ? 1 / x.size : 1; // mean of nothing is NaN, as in torch
  const out = reduceSum(x, scale, `${op} ${shapeStr(x.shape)}`);
  return recordOp(op, [x], out, (dy) => {
    const dx = Tensor.empty(x.shape);
    getGpu().dispatch({
      kernel: { shader: 'reduce', entry: 'broadcast', bindings: ['write', 'read'], constants: { WG: 256 } },
      buffers: [dx.buffer, dy.buffer],
      params: { n: x.size, scale },
      workgroups: [stridedWorkgroups(x.size, 256)],
      label: `${op}.backward ${shapeStr(x.shape)}`,
    });
    return [dx];
  });
}

/** Sum of all elements -> [1]. */
export function sum(x: Tensor): Tensor {
  return reduceAll('sum', x);
}

/** Mean of all elements -> [1]. */
export function mean(x: Tensor): Tensor {
  return reduceAll('mean', x);
}
