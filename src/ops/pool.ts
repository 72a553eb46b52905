// 2-D pooling over [N,C,H,W]: max and average pooling with torch's window semantics (padding,
// ceil mode, count_include_pad, dilation for max) and global average pooling ([N,C,H,W] ->
// [N,C,1,1], torch adaptive_avg_pool2d(x, 1) / ONNX GlobalAveragePool). Kernels in
// shaders/pool.wgsl; the backward passes are gathers over the windows covering each input (max
// pooling routes dy through the argmax the forward saves), so they need no atomics.
// The rest are views onto these: global max pooling is max pooling with the whole image as its
// window, and 1-D pooling over [N,C,L] is 2-D pooling of [N,C,1,L].
// Read first: the plain float64 loops in src/reference/pool.ts; the kernels are in shaders/pool.wgsl.
import { getGpu, grid, type Access } from '../gpu/index.ts';
import { avgPool1dRef, avgPool2dRef, globalAvgPool2dRef, globalMaxPool2dRef, maxPool1dRef, maxPool2dRef, type PoolRefOptions } from '../reference/pool.ts';
import { isGradEnabled, OpError, recordOp, shapeStr, Tensor } from '../tensor/index.ts';
import { registerGradcheck } from './gradcheck.ts';

export interface Pool2dOptions {
  kernel: number | [number, number];
  /** defaults to the kernel size */
  stride?: number | [number, number];
  padding?: number | [number, number];
  /** round the output size up instead of down (the last window may hang over the padding) */
  ceilMode?: boolean;
}

export interface MaxPool2dOptions extends Pool2dOptions {
  /** distance between a window's taps (torch's dilation); 1 by default */
  dilation?: number | [number, number];
}

export interface AvgPool2dOptions extends Pool2dOptions {
  /** count padded positions in the divisor; true as torch */
  countIncludePad?: boolean;
}

function pair(op: string, name: string, v: number | [number, number]): [number, number] {
  const p: [number, number] = typeof v === 'number' ? [v, v] : v;
  if (!Array.isArray(p) || p.length !== 2 || !p.every(Number.isInteger)) {
    throw new OpError(op, `${name} must be an integer or a pair of integers, got ${JSON.stringify(v)}`);
  }
  return p;
}

/** Output size along one dimension, as torch: floor or ceil of (size + 2*pad - span)/stride, plus
 *  1, where span = (k - 1) * dilation + 1 and in ceil mode the last window must start inside the
 *  image or its left padding. */
function outSize(size: number, span: number, stride: number, pad: number, ceilMode: boolean): number {
  const steps = (size + 2 * pad - span) / stride;
  let out = (ceilMode ? Math.ceil(steps) : Math.floor(steps)) + 1;
  if (ceilMode && (out - 1) * stride >= size + pad) out--;
  return out;
}

/** The first of `out` windows along one dimension with no tap inside the image, or -1. A dilated
 *  window can fall between the image's pixels and its padding, which torch answers with -inf. */
function emptyWindow(size: number, k: number, stride: number, pad: number, dilation: number, out: number): number {
  for (let o = 0; o < out; o++) {
    const start = o * stride - pad;
    const first = start >= 0 ? start : start + Math.ceil(-start / dilation) * dilation;
    if (first >= size || first >= start + (k - 1) * dilation + 1) return o;
  }
  return -1;
}

/** The window geometry in shaders/pool.wgsl's Params; `planes` = N*C images. */
interface PoolDims {
  H: number; W: number; OH: number; OW: number;
  KH: number; KW: number; SH: number; SW: number; PH: number; PW: number;
  planes: number;
}

/** What the kernels are told besides the geometry. */
interface PoolFlags {
  /** avg: padding counts in the divisor */
  countIncludePad: boolean;
  /** max: the backward will need the argmax */
  saveArgmax: boolean;
}

const NO_FLAGS: PoolFlags = { countIncludePad: false, saveArgmax: false };

interface PoolGeometry {
  outShape: number[];
  dims: PoolDims;
  /** workgroups of the forward (over output tiles) and backward (over input tiles) kernels */
  forward: ReturnType<typeof tiling>;
  backward: ReturnType<typeof tiling>;
  label: string;
}

function geometry(op: string, x: Tensor, opts: Pool2dOptions, dilation: [number, number] = [1, 1]): PoolGeometry {
  if (x.ndim !== 4 || x.size === 0) throw new OpError(op, `x must be a non-empty [N,C,H,W] tensor, got ${shapeStr(x.shape)}`);
  const [N, C, H, W] = x.shape;
  const k = pair(op, 'kernel', opts.kernel);
  const s = pair(op, 'stride', opts.stride ?? opts.kernel);
  const pad = pair(op, 'padding', opts.padding ?? 0);
  if (k.some((v) => v < 1) || s.some((v) => v < 1) || pad.some((v) => v < 0)) {
    throw new OpError(op, `kernel ${k} and stride ${s} must be positive, padding ${pad} non-negative`);
  }
  if (pad[0] > k[0] / 2 || pad[1] > k[1] / 2) {
    throw new OpError(op, `padding ${pad} must be at most half the kernel ${k}`);
  }
  if (dilation.some((v) => v < 1)) throw new OpError(op, `dilation ${dilation} must be positive`);
  const ceil = opts.ceilMode ?? false;
  const OH = outSize(H, (k[0] - 1) * dilation[0] + 1, s[0], pad[0], ceil);
  const OW = outSize(W, (k[1] - 1) * dilation[1] + 1, s[1], pad[1], ceil);
  const dil = dilation.some((v) => v > 1) ? ` dilation ${dilation}` : '';
  if (OH < 1 || OW < 1) {
    throw new OpError(op, `kernel ${k}${dil} with padding ${pad} does not fit x ${shapeStr(x.shape)}`);
  }
  const empty = [emptyWindow(H, k[0], s[0], pad[0], dilation[0], OH), emptyWindow(W, k[1], s[1], pad[1], dilation[1], OW)];
  if (empty.some((o) => o >= 0)) {
    throw new OpError(op, `kernel ${k}${dil} with padding ${pad}: window ${empty[0] >= 0 ? `row ${empty[0]}` : `column ${empty[1]}`} of x ${shapeStr(x.shape)} has no tap inside the image`);
  }
  return {
    outShape: [N, C, OH, OW],
    dims: { H, W, OH, OW, KH: k[0], KW: k[1], SH: s[0], SW: s[1], PH: pad[0], PW: pad[1], planes: N * C },
    forward: tiling(N * C, OH, OW),
    backward: tiling(N * C, H, W),
    label: `${op} x${shapeStr(x.shape)} k${k} s${s} p${pad}${dil ? ` d${dilation}` : ''}${ceil ? ' ceil' : ''}`,
  };
}

const TILE_ROWS = 2; // ROWS in shaders/pool.wgsl; a tile's columns: 4

const pow2ceil = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/** Workgroups covering `planes` images of rows x cols with tiles of TILE_ROWS x 4 elements: TX by
 *  TY tiles per workgroup, at most 256 invocations and no more than the image needs. */
function tiling(planes: number, rows: number, cols: number) {
  const colTiles = Math.ceil(cols / 4);
  const TX = Math.min(64, pow2ceil(colTiles));
  const TY = Math.min(256 / TX, pow2ceil(Math.ceil(rows / TILE_ROWS)));
  const rowBlocks = Math.ceil(rows / (TILE_ROWS * TY));
  return { constants: { TX, TY }, workgroups: [Math.ceil(colTiles / TX), ...grid(planes * rowBlocks, 1)] as [number, number, number] };
}

/** Launches kernel `entry` of shaders/pool.wgsl on `buffers` (the first written, unless `access`
 *  says otherwise). */
function launch(
  entry: string,
  buffers: GPUBuffer[],
  dims: PoolDims,
  flags: PoolFlags,
  work: { constants: Record<string, number>; workgroups: [number, number?, number?] },
  label: string,
  access: Access[] = ['write', ...buffers.slice(1).map((): Access => 'read')],
  code: { MAX4_TAPS?: string; MAX4_GRADS?: string } = {},
): void {
  getGpu().dispatch({
    kernel: { shader: 'pool', entry, bindings: access, constants: work.constants, defines: { MAX4_TAPS: '', MAX4_GRADS: '', ...code } },
    buffers,
    params: { ...dims, ...flags },
    workgroups: work.workgroups,
    label,
  });
}

/** Bounds on the windows max_forward_vec4 is written out for (its code grows with their taps). */
const VEC4_MAX_TAPS = 49;
const VEC4_MAX_LOADS = 8;

/**
 * The body of shaders/pool.wgsl's max_forward_vec4 for this geometry, or null where it does not
 * apply (W or OW not a multiple of 4, windows too large). A tile is TILE_ROWS output rows by 4
 * output columns j; input row offset d = r*SH + kh*DIL_H (from the tile's first window row) holds
 * tap kh of tile row r, and the taps kw of the 4 windows of that row sit at columns
 * rel = j*SW + kw*DIL_W - PW from the tile's column base t.z*SW, a multiple of 4: in the aligned
 * vec4 floor(rel/4), lane rel mod 4, constants here. Each input row is loaded once (only the vec4s
 * some tap reads) and the taps of every window are visited in row-major order (d, then kw), so the
 * first maximum wins as in torch.
 */
function maxPoolVec4Taps(d: PoolDims, [DH, DW]: [number, number]): string | null {
  if (d.W % 4 !== 0 || d.OW % 4 !== 0 || d.KH * d.KW > VEC4_MAX_TAPS) return null;
  const rel = (j: number, kw: number) => j * d.SW + kw * DW - d.PW;
  const vec = (r: number) => Math.floor(r / 4);
  const lane = (r: number) => 'xyzw'[r - 4 * vec(r)];
  const loads = new Set<number>();
  for (let kw = 0; kw < d.KW; kw++) for (let j = 0; j < 4; j++) loads.add(vec(rel(j, kw)));
  if (loads.size > VEC4_MAX_LOADS) return null;
  const name = (q: number) => `c${q < 0 ? `m${-q}` : q}`;
  const rows = Array.from({ length: TILE_ROWS }, (_, r) => r);
  const lines: string[] = [];
  for (const r of rows) {
    lines.push(`var best${r} = vec4f(neg_inf());`);
    lines.push(`var arg${r} = u32(clamp(first_tap(vec4i(rowStart + ${r * d.SH}), DIL_H).x, 0, i32(p.H) - 1)) * p.W + firstCol;`);
  }
  const depth = (TILE_ROWS - 1) * d.SH + (d.KH - 1) * DH;
  for (let off = 0; off <= depth; off++) {
    const taps = rows.flatMap((r) => {
      const kh = (off - r * d.SH) / DH;
      return Number.isInteger(kh) && kh >= 0 && kh < d.KH ? [r] : [];
    });
    if (!taps.length) continue;
    lines.push(`{`, `  let h = rowStart + ${off};`, `  if (h >= 0 && h < i32(p.H)) {`);
    lines.push(`    let row4 = plane4 + u32(h) * (p.W / 4u);`, `    let at = i32(u32(h) * p.W + colBase);`);
    for (const q of [...loads].sort((a, b) => a - b)) lines.push(`    let ${name(q)} = max4_chunk(row4, q0 ${q < 0 ? '-' : '+'} ${Math.abs(q)});`);
    for (const r of taps) {
      for (let kw = 0; kw < d.KW; kw++) {
        const js = [0, 1, 2, 3];
        const v = js.map((j) => `${name(vec(rel(j, kw)))}.${lane(rel(j, kw))}`).join(', ');
        lines.push(`    max4_tap(&best${r}, &arg${r}, vec4f(${v}), at + vec4i(${js.map((j) => rel(j, kw)).join(', ')}));`);
      }
    }
    lines.push(`  }`, `}`);
  }
  for (const r of rows) {
    lines.push(`if (t.y + ${r}u < p.OH) {`, `  let o = ((t.x * p.OH + t.y + ${r}u) * p.OW + t.z) / 4u;`);
    lines.push(`  max4_out[o] = best${r};`, `  if (p.saveArgmax != 0u) { max4_argmax[o] = arg${r}; }`, `}`);
  }
  return lines.join('\n  ');
}

/**
 * The body of shaders/pool.wgsl's max_backward_vec4 for this geometry, or null where it does not
 * apply (W not a multiple of 4, a tile's TILE_ROWS x 4 not multiples of the strides, windows too
 * large). Window (oh0 + dr, ow0 + dc), oh0 = t.y / SH and ow0 = t.z / SW, covers tile row r when
 * some tap kh has r = dr*SH + kh*DIL_H - PH (columns alike); each such window's dy and argmax are
 * loaded once (guarded: it may lie outside the output) and added to the rows it covers where its
 * argmax is the element, in the order max_backward sums them (oh, then ow).
 */
function maxPoolVec4Grads(d: PoolDims, [DH, DW]: [number, number]): string | null {
  if (d.W % 4 !== 0 || TILE_ROWS % d.SH !== 0 || 4 % d.SW !== 0 || d.KH * d.KW > VEC4_MAX_TAPS) return null;
  // the tile rows (or columns) window offset `w` covers along one dimension
  const covers = (w: number, stride: number, k: number, dil: number, pad: number, size: number) =>
    Array.from({ length: size }, (_, r) => r).filter((r) => {
      const tap = r - w * stride + pad;
      return tap >= 0 && tap <= (k - 1) * dil && tap % dil === 0;
    });
  const offsets = (stride: number, k: number, dil: number, pad: number, size: number) => {
    const out: number[] = [];
    for (let w = -Math.ceil(((k - 1) * dil) / stride) - 1; w * stride - pad <= size - 1; w++) if (covers(w, stride, k, dil, pad, size).length) out.push(w);
    return out;
  };
  const rows = Array.from({ length: TILE_ROWS }, (_, r) => r);
  const lines: string[] = [];
  for (const r of rows) lines.push(`var sum${r} = vec4f(0.0);`, `let at${r} = (t.y + ${r}u) * p.W + t.z + vec4u(0u, 1u, 2u, 3u);`);
  lines.push(`let oh0 = i32(t.y / ${d.SH}u);`, `let ow0 = i32(t.z / ${d.SW}u);`);
  const colOffsets = offsets(d.SW, d.KW, DW, d.PW, 4);
  for (const dr of offsets(d.SH, d.KH, DH, d.PH, TILE_ROWS)) {
    const covered = covers(dr, d.SH, d.KH, DH, d.PH, TILE_ROWS);
    for (const dc of colOffsets) {
      lines.push(`{`, `  let oh = oh0 ${dr < 0 ? '-' : '+'} ${Math.abs(dr)};`, `  let ow = ow0 ${dc < 0 ? '-' : '+'} ${Math.abs(dc)};`);
      lines.push(`  if (oh >= 0 && oh < i32(p.OH) && ow >= 0 && ow < i32(p.OW)) {`);
      lines.push(`    let o = (planeOut + u32(oh)) * p.OW + u32(ow);`, `    let a = vec4u(maxgrad_argmax[o]);`, `    let g = vec4f(maxgrad_dy[o]);`);
      for (const r of covered) lines.push(`    sum${r} += select(vec4f(0.0), g, at${r} == a);`);
      lines.push(`  }`, `}`);
    }
  }
  for (const r of rows) lines.push(`if (t.y + ${r}u < p.H) { maxgrad4_dx[((t.x * p.H + t.y + ${r}u) * p.W + t.z) / 4u] = sum${r}; }`);
  return lines.join('\n  ');
}

/** torch.nn.functional.max_pool2d: padding is -inf; dy flows to each window's first maximum. */
export function maxPool2d(x: Tensor, opts: MaxPool2dOptions): Tensor {
  const op = 'maxPool2d';
  const [DIL_H, DIL_W] = pair(op, 'dilation', opts.dilation ?? 1);
  const g = geometry(op, x, opts, [DIL_H, DIL_W]);
  const dilated = (work: PoolGeometry['forward']) => ({ ...work, constants: { ...work.constants, DIL_H, DIL_W } });
  const out = Tensor.empty(g.outShape);
  // argmax as u32 h*W + w per output; only kept when a backward can follow
  const saveArgmax = isGradEnabled() && x.requiresGrad;
  const argmax = Tensor.empty(saveArgmax ? g.outShape : [1], 'maxpool argmax');
  const taps = maxPoolVec4Taps(g.dims, [DIL_H, DIL_W]);
  launch(taps ? 'max_forward_vec4' : 'max_forward', [out.buffer, argmax.buffer, x.buffer], g.dims, { ...NO_FLAGS, saveArgmax }, dilated(g.forward), g.label, ['write', 'write', 'read'], { MAX4_TAPS: taps ?? '' });
  if (!saveArgmax) {
    argmax.release();
    return out;
  }
  return recordOp(op, [x], out, (dy) => {
    const dx = Tensor.empty(x.shape);
    const grads = maxPoolVec4Grads(g.dims, [DIL_H, DIL_W]);
    launch(grads ? 'max_backward_vec4' : 'max_backward', [dx.buffer, dy.buffer, argmax.buffer], g.dims, NO_FLAGS, dilated(g.backward), `${g.label}.backward`, undefined, { MAX4_GRADS: grads ?? '' });
    return [dx];
  });
}

/** Max over H and W: [N,C,H,W] -> [N,C,1,1] (ONNX GlobalMaxPool, torch adaptive_max_pool2d(x, 1)). */
export function globalMaxPool2d(x: Tensor): Tensor {
  if (x.ndim !== 4 || x.size === 0) throw new OpError('globalMaxPool2d', `x must be a non-empty [N,C,H,W] tensor, got ${shapeStr(x.shape)}`);
  return maxPool2d(x, { kernel: [x.shape[2], x.shape[3]] });
}

/** torch.nn.functional.avg_pool2d (count_include_pad defaults to true, as torch). */
export function avgPool2d(x: Tensor, opts: AvgPool2dOptions): Tensor {
  const op = 'avgPool2d';
  const g = geometry(op, x, opts);
  const flags = { ...NO_FLAGS, countIncludePad: opts.countIncludePad ?? true };
  const out = Tensor.empty(g.outShape);
  launch('avg_forward', [out.buffer, x.buffer], g.dims, flags, g.forward, g.label);
  return recordOp(op, [x], out, (dy) => {
    const dx = Tensor.empty(x.shape);
    launch('avg_backward', [dx.buffer, dy.buffer], g.dims, flags, g.backward, `${g.label}.backward`);
    return [dx];
  });
}

/** Invocations per plane in the global average kernels: about 32 elements each, at most 256. */
function lanesPerPlane(planeSize: number): number {
  return Math.min(256, pow2ceil(planeSize / 32));
}

/** Mean over H and W: [N,C,H,W] -> [N,C,1,1] (torch adaptive_avg_pool2d(x, 1), ONNX GlobalAveragePool). */
export function globalAvgPool2d(x: Tensor): Tensor {
  const op = 'globalAvgPool2d';
  if (x.ndim !== 4 || x.size === 0) throw new OpError(op, `x must be a non-empty [N,C,H,W] tensor, got ${shapeStr(x.shape)}`);
  const [N, C, H, W] = x.shape;
  const dims: PoolDims = { H, W, OH: 1, OW: 1, KH: H, KW: W, SH: 1, SW: 1, PH: 0, PW: 0, planes: N * C };
  const label = `${op} x${shapeStr(x.shape)}`;
  const out = Tensor.empty([N, C, 1, 1]);
  const LANES = lanesPerPlane(H * W);
  const work = { constants: { LANES }, workgroups: grid(N * C * LANES, 256) };
  launch('global_avg_forward', [out.buffer, x.buffer], dims, NO_FLAGS, work, label);
  return recordOp(op, [x], out, (dy) => {
    const dx = Tensor.empty(x.shape);
    launch('global_avg_backward', [dx.buffer, dy.buffer], dims, NO_FLAGS, work, `${label}.backward`);
    return [dx];
  });
}

// ---- 1-D pooling: [N,C,L] as [N,C,1,L] -------------------------------------------------------

export interface Pool1dOptions {
  kernel: number;
  /** defaults to the kernel size */
  stride?: number;
  padding?: number;
  ceilMode?: boolean;
}

/** x: [N,C,L] viewed as [N,C,1,L], and the 1-D options as the 2-D ones of that view. */
function view1d(op: string, x: Tensor, opts: Pool1dOptions): [Tensor, Pool2dOptions] {
  if (!(x instanceof Tensor) || x.ndim !== 3 || x.size === 0) throw new OpError(op, `x must be a non-empty [N,C,L] tensor, got ${x instanceof Tensor ? shapeStr(x.shape) : typeof x}`);
  const [N, C, L] = x.shape;
  const { kernel, stride, padding = 0, ceilMode } = opts;
  return [x.reshape([N, C, 1, L]), { kernel: [1, kernel], stride: stride === undefined ? undefined : [1, stride], padding: [0, padding], ceilMode }];
}

/** [N,C,1,OL] -> [N,C,OL] */
const squeeze1d = (y: Tensor): Tensor => y.reshape([y.shape[0], y.shape[1], y.shape[3]]);

/** torch.nn.functional.max_pool1d over x: [N,C,L] -> [N,C,OL]. */
export function maxPool1d(x: Tensor, opts: Pool1dOptions & { dilation?: number }): Tensor {
  const [x2d, o] = view1d('maxPool1d', x, opts);
  return squeeze1d(maxPool2d(x2d, { ...o, dilation: [1, opts.dilation ?? 1] }));
}

/** torch.nn.functional.avg_pool1d over x: [N,C,L] -> [N,C,OL] (count_include_pad true by default). */
export function avgPool1d(x: Tensor, opts: Pool1dOptions & { countIncludePad?: boolean }): Tensor {
  const [x2d, o] = view1d('avgPool1d', x, opts);
  return squeeze1d(avgPool2d(x2d, { ...o, countIncludePad: opts.countIncludePad }));
}

// ---- gradcheck ------------------------------------------------------------------------------

/** The reference's form of a 2-D pooling's options (pairs, defaults filled in). */
function refOptions(op: string, o: MaxPool2dOptions & AvgPool2dOptions): PoolRefOptions {
  return {
    kernel: pair(op, 'kernel', o.kernel),
    stride: pair(op, 'stride', o.stride ?? o.kernel),
    padding: pair(op, 'padding', o.padding ?? 0),
    dilation: pair(op, 'dilation', o.dilation ?? 1),
    ceilMode: o.ceilMode ?? false,
    countIncludePad: o.countIncludePad ?? true,
  };
}

const image = ([x = [2, 3, 7, 5]]: readonly (readonly number[])[]) => [x];
const signal = ([x = [2, 3, 11]]: readonly (readonly number[])[]) => [x];

registerGradcheck({
  name: 'maxpool2d',
  inputs: ['x'],
  shapes: image,
  options: { kernel: 3, stride: 2, padding: 1, dilation: 1, ceilMode: false } as MaxPool2dOptions,
  run: ([x], o) => maxPool2d(x, o),
  reference: ([x], [shape], o) => maxPool2dRef(x, shape, refOptions('maxPool2d', o)).y,
});

registerGradcheck({
  name: 'avgpool2d',
  inputs: ['x'],
  shapes: image,
  options: { kernel: 3, stride: 2, padding: 1, ceilMode: false, countIncludePad: true } as AvgPool2dOptions,
  run: ([x], o) => avgPool2d(x, o),
  reference: ([x], [shape], o) => avgPool2dRef(x, shape, refOptions('avgPool2d', o)).y,
});

registerGradcheck({ name: 'globalavgpool2d', inputs: ['x'], shapes: image, options: {}, run: ([x]) => globalAvgPool2d(x), reference: ([x], [shape]) => globalAvgPool2dRef(x, shape) });

registerGradcheck({ name: 'globalmaxpool2d', inputs: ['x'], shapes: image, options: {}, run: ([x]) => globalMaxPool2d(x), reference: ([x], [shape]) => globalMaxPool2dRef(x, shape) });

registerGradcheck({
  name: 'maxpool1d',
  inputs: ['x'],
  shapes: signal,
  options: { kernel: 3, stride: 2, padding: 1, dilation: 1, ceilMode: false },
  run: ([x], o) => maxPool1d(x, o),
  reference: ([x], [shape], o) => maxPool1dRef(x, shape, o).y,
});

registerGradcheck({
  name: 'avgpool1d',
  inputs: ['x'],
  shapes: signal,
  options: { kernel: 3, stride: 2, padding: 1, ceilMode: false, countIncludePad: true },
  run: ([x], o) => avgPool1d(x, o),
  reference: ([x], [shape], o) => avgPool1dRef(x, shape, o).y,
});
