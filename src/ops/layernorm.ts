// Layer normalization over the last dims, torch.nn.functional.layer_norm(x, normalizedShape,
// weight, bias, eps): each row of C = prod(normalizedShape) elements is normalized by its own mean
// and biased variance, then scaled and shifted per element. One fused forward kernel (mean and
// rstd per row, saved for the backward) and a fused backward (dx per row; dweight, dbias as column
// sums over the rows), as llm.c's layernorm. The math is in shaders/layernorm.wgsl.
// Read first: the plain float64 loops in src/reference/layernorm.ts.
import { getGpu, grid } from '../gpu/index.ts';
import { OpError, recordOp, shapeSize, shapeStr, Tensor } from '../tensor/index.ts';
import { layerNormRef } from '../reference/layernorm.ts';
import { registerGradcheck } from './gradcheck.ts';
import { reduceSumTo } from './reduce.ts';
import { rowLayout } from './softmax.ts';

/** the fewest rows a slice of the parameter-gradient column sums takes (a slice is one workgroup row) */
const ROWS_PER_SLICE = 64;

export function layerNorm(x: Tensor, normalizedShape: number | readonly number[], weight: Tensor | null = null, bias: Tensor | null = null, eps = 1e-5): Tensor {
  const op = 'layerNorm';
  if (!(x instanceof Tensor)) throw new OpError(op, `expected a tensor, got ${typeof x}`);
  const norm = typeof normalizedShape === 'number' ? [normalizedShape] : [...normalizedShape];
  const lead = x.ndim - norm.length;
  if (norm.length === 0 || lead < 0 || norm.some((d, i) => d !== x.shape[lead + i]) || shapeSize(norm) === 0) {
    throw new OpError(op, `normalizedShape ${shapeStr(norm)} must be the last, non-empty dims of x ${shapeStr(x.shape)}`);
  }
  for (const [name, t] of [['weight', weight], ['bias', bias]] as const) {
    if (t !== null && (t.ndim !== norm.length || t.shape.some((d, i) => d !== norm[i]))) {
      throw new OpError(op, `${name} must be ${shapeStr(norm)} for normalizedShape ${shapeStr(norm)}, got ${shapeStr(t.shape)}`);
    }
  }
  if (!(eps >= 0)) throw new OpError(op, `eps must be >= 0, got ${eps}`);
  const C = shapeSize(norm);
  const rows = x.size / C;
  const out = Tensor.empty(x.shape);
  if (rows === 0) return out;
  const gpu = getGpu();
  const vec = C % 4 === 0 ? 4 : 1;
  const cols = C / vec;
  const layout = rowLayout(cols);
  const defines = { T: vec === 4 ? 'vec4<f32>' : 'f32', W: String(vec) };
  const params = { rows, cols, span: rows, hasWeight: weight !== null, hasBias: bias !== null, eps, invC: 1 / C };
  const label = `${op} x${shapeStr(x.shape)} over ${shapeStr(norm)}`;
  const rowGroups = grid(rows, layout.WG / layout.ROW_THREADS);
  // unused read-only bindings are given x, never read
  const stats = Tensor.empty([rows, 2], 'layernorm mean, rstd');
  gpu.dispatch({
    kernel: { shader: 'layernorm', entry: 'forward', bindings: ['write', 'write', 'read', 'read', 'read'], constants: layout, defines },
    buffers: [out.buffer, stats.buffer, x.buffer, (weight ?? x).buffer, (bias ?? x).buffer],
    params,
    workgroups: rowGroups,
    label,
    work: { bytes: 4 * (3 * x.size + 2 * C + 2 * rows) },
  });

  const y = recordOp(op, [x, weight, bias], out, (dy, needs) => {
    const [needX, needWeight, needBias] = needs;
    let dx: Tensor | null = null;
    if (needX) {
      dx = Tensor.empty(x.shape);
      gpu.dispatch({
        kernel: { shader: 'layernorm', entry: 'backwardInput', bindings: ['write', 'read', 'read', 'read', 'read'], constants: layout, defines },
        buffers: [dx.buffer, stats.buffer, x.buffer, (weight ?? x).buffer, dy.buffer],
        params,
        workgroups: rowGroups,
        label: `${label}.backwardInput`,
        work: { bytes: 4 * (3 * x.size + C + 2 * rows) },
      });
    }
    let dweight: Tensor | null = null;
    let dbias: Tensor | null = null;
    if (needWeight || needBias) {
      // column sums over slices of rows: enough slices to fill the adapter, then summed by reduce
      const wg = layout.WG;
      const columnGroups = Math.ceil(cols / wg);
      const busy = gpu.isCpu ? 16 : 4 * 256;
      const span = Math.ceil(rows / Math.max(1, Math.min(Math.ceil(rows / ROWS_PER_SLICE), Math.ceil(busy / columnGroups))));
      const slices = Math.ceil(rows / span);
      // a sum nobody asked for is bound to a scratch buffer, which the kernel does not write
      const pw = Tensor.empty(needWeight ? [slices, C] : [1], 'layernorm dweight partials');
      const pb = Tensor.empty(needBias ? [slices, C] : [1], 'layernorm dbias partials');
      gpu.dispatch({
        kernel: { shader: 'layernorm', entry: 'backwardParams', bindings: ['write', 'read', 'read', 'write', 'read'], constants: { WG: wg }, defines },
        buffers: [pw.buffer, stats.buffer, x.buffer, pb.buffer, dy.buffer],
        params: { ...params, span, hasWeight: needWeight, hasBias: needBias },
        workgroups: [columnGroups, slices],
        label: `${label}.backwardParams`,
        work: { bytes: 4 * (2 * x.size + 2 * rows + 2 * slices * C) },
      });
      const finish = (partials: Tensor, what: string) => {
        const summed = slices === 1 ? partials.view(norm) : reduceSumTo(partials, [0], norm, 1, `${label}.${what}`);
        partials.release();
        return summed;
      };
      dweight = needWeight ? finish(pw, 'dweight') : (pw.release(), null);
      dbias = needBias ? finish(pb, 'dbias') : (pb.release(), null);
    }
    return [dx, dweight, dbias];
  });
  if (!y.node) stats.release(); // no backward will read it
  return y;
}

// ---- gradcheck (over the last dimension; weight and bias of its size) ------------------------

registerGradcheck({
  name: 'layernorm',
  inputs: ['x', 'weight', 'bias'],
  shapes: ([x = [3, 4, 6], w = [x[x.length - 1]], b = w]) => [x, w, b],
  options: { eps: 1e-5 },
  run: ([x, w, b], o) => layerNorm(x, w.shape, w, b, o.eps),
  reference: ([x, w, b], [, ws], o) => layerNormRef(x, shapeSize(ws), w, b, o.eps),
});
