// Reductions: ReduceSum, ReduceMean, ReduceMax on the GPU (over any axes, keepdims); these and
// ReduceMin, ReduceProd fold on the host (shape arithmetic: the product of some dimensions).
import { max, mean, sum } from '../../ops/reduce.ts';
import { shapeSize, type Tensor } from '../../tensor/index.ts';
import { hostTensor, normAxis, values } from './host.ts';
import type { NodeContext, OnnxOp } from './op.ts';

/** The axes reduced (sorted, non-negative), or null for none (noop_with_empty_axes). Axes are an
 *  attribute until ReduceSum-13 and the others' opset 18, then the optional input 1. */
function reducedAxes(c: NodeContext, inputFrom: number): number[] | null {
  const rank = c.shape(0).length;
  const given = c.opset < inputFrom ? (c.attr('axes') === undefined ? [] : c.ints('axes')) : c.has(1) ? c.numbers(1) : [];
  if (given.length === 0) return c.opset >= inputFrom && c.int('noop_with_empty_axes', 0) === 1 ? null : [...Array(rank).keys()];
  return [...new Set(given.map((a) => normAxis(c.op, a, rank)))].sort((a, b) => a - b);
}

interface Reduction {
  /** the opset from which the axes are an input */
  axesInputFrom: number;
  /** the host reduction of one group of values */
  host: (v: number[]) => number;
  gpu?: (x: Tensor, opts: { axes: number[]; keepdim: boolean }) => Tensor;
}

const REDUCTIONS: Record<string, Reduction> = {
  ReduceSum: { axesInputFrom: 13, host: (v) => v.reduce((a, b) => a + b, 0), gpu: sum },
  ReduceMean: { axesInputFrom: 18, host: (v) => v.reduce((a, b) => a + b, 0) / v.length, gpu: mean },
  ReduceMax: { axesInputFrom: 18, host: (v) => Math.max(...v), gpu: max },
  ReduceMin: { axesInputFrom: 18, host: (v) => Math.min(...v) },
  ReduceProd: { axesInputFrom: 18, host: (v) => v.reduce((a, b) => a * b, 1) },
};

function reduction(r: Reduction): OnnxOp {
  return {
    fold: (c) => {
      const x = c.host(0);
      const axes = reducedAxes(c, r.axesInputFrom);
      if (!axes) return [{ ...x, name: c.output() }];
      const keep = c.int('keepdims', 1) === 1;
      const dims = x.dims;
      const outDims = dims.map((d, i) => (axes.includes(i) ? 1 : d));
      const groups: number[][] = Array.from({ length: shapeSize(outDims) }, () => []);
      const v = values(x);
      const idx = new Array(dims.length).fill(0);
      for (let k = 0; k < v.length; k++) {
        let o = 0;
        for (let d = 0; d < dims.length; d++) o = o * outDims[d] + (axes.includes(d) ? 0 : idx[d]);
        groups[o].push(v[k]);
        for (let d = dims.length - 1; d >= 0; d--) {
          if (++idx[d] < dims[d]) break;
          idx[d] = 0;
        }
      }
      return [hostTensor(c.output(), x.dataType, keep ? outDims : dims.filter((_, i) => !axes.includes(i)), groups.map(r.host))];
    },
    run: r.gpu && ((c) => {
      const axes = reducedAxes(c, r.axesInputFrom);
      const x = c.gpu(0);
      return [axes ? r.gpu!(x, { axes, keepdim: c.int('keepdims', 1) === 1 }) : x.reshape(x.shape)];
    }),
  };
}

export const REDUCE_OPS: Record<string, OnnxOp> = Object.fromEntries(Object.entries(REDUCTIONS).map(([name, r]) => [name, reduction(r)]));
