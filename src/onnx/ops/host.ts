// Host tensors: the values a graph knows before it runs (initializers, Constant nodes, the shapes
// of its activations once the input size is fixed) and the numpy-style loops that fold the shape
// arithmetic exporters write as nodes (Shape -> Gather -> Unsqueeze -> Concat -> Reshape, ...).
// Values are computed as JS numbers: int64 is exact up to 2^53, which every shape is; INT64_MAX
// (Slice's "to the end") rounds, and clamps back when written as int64.
import { OpError, shapeSize, shapeStr } from '../../tensor/index.ts';
import { DataType, type OnnxTensor, type TensorData } from '../ir.ts';

export const DATA_TYPE_NAMES: Record<number, string> = {
  [DataType.FLOAT]: 'float', [DataType.UINT8]: 'uint8', [DataType.INT8]: 'int8', [DataType.INT32]: 'int32',
  [DataType.INT64]: 'int64', [DataType.BOOL]: 'bool', [DataType.FLOAT16]: 'float16', [DataType.DOUBLE]: 'double',
};

export const typeName = (dataType: number): string => DATA_TYPE_NAMES[dataType] ?? `data type ${dataType}`;

/** A host tensor's values as numbers (int64 and bool included). */
export function values(t: OnnxTensor): number[] {
  return Array.from(t.data as ArrayLike<number | bigint>, Number);
}

const INT64_LIMIT = 2 ** 63;

/** A host tensor of `dataType` holding `vals` (rounded toward zero and clamped for integer types). */
export function hostTensor(name: string, dataType: number, dims: readonly number[], vals: ArrayLike<number>): OnnxTensor {
  if (vals.length !== shapeSize(dims)) throw new OpError(name, `${vals.length} values do not fill ${shapeStr(dims)}`);
  let data: TensorData;
  switch (dataType) {
    case DataType.FLOAT:
      data = Float32Array.from(vals);
      break;
    case DataType.DOUBLE:
      data = Float64Array.from(vals);
      break;
    case DataType.INT64:
      data = BigInt64Array.from(vals, (v) => (v >= INT64_LIMIT ? 2n ** 63n - 1n : v < -INT64_LIMIT ? -(2n ** 63n) : BigInt(Math.trunc(v))));
      break;
    case DataType.INT32:
      data = Int32Array.from(vals, Math.trunc);
      break;
    case DataType.INT8:
      data = Int8Array.from(vals, Math.trunc);
      break;
    case DataType.BOOL:
      data = Uint8Array.from(vals, (v) => (v ? 1 : 0));
      break;
    case DataType.UINT8:
      data = Uint8Array.from(vals, Math.trunc);
      break;
    default:
      throw new OpError(name, `cannot compute ${typeName(dataType)} tensors`);
  }
  return { name, dims: [...dims], dataType, data };
}

export const int64Tensor = (name: string, dims: readonly number[], vals: ArrayLike<number>): OnnxTensor => hostTensor(name, DataType.INT64, dims, vals);

/** Row-major strides of a shape. */
function strides(dims: readonly number[]): number[] {
  const s = new Array<number>(dims.length);
  let acc = 1;
  for (let d = dims.length - 1; d >= 0; d--) {
    s[d] = acc;
    acc *= dims[d];
  }
  return s;
}

/** Numpy broadcasting of shapes, or null when they do not broadcast. */
export function broadcastShape(...shapes: (readonly number[])[]): number[] | null {
  const n = Math.max(...shapes.map((s) => s.length));
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    let d = 1;
    for (const s of shapes) {
      const e = s[s.length - n + i] ?? 1;
      if (e === 1) continue;
      if (d !== 1 && d !== e) return null;
      d = e;
    }
    out.push(d);
  }
  return out;
}

/** For every element of shape `to`, the flat index of the element of `from` it broadcasts from. */
export function broadcastIndex(from: readonly number[], to: readonly number[]): Int32Array {
  const n = to.length;
  const full = [...Array(n - from.length).fill(1), ...from];
  const src = strides(full).map((s, d) => (full[d] === 1 ? 0 : s));
  const out = new Int32Array(shapeSize(to));
  const idx = new Array(n).fill(0);
  let offset = 0;
  for (let k = 0; k < out.length; k++) {
    out[k] = offset;
    for (let d = n - 1; d >= 0; d--) {
      offset += src[d];
      if (++idx[d] < to[d]) break;
      offset -= src[d] * to[d];
      idx[d] = 0;
    }
  }
  return out;
}

/** f applied elementwise over numpy-broadcast inputs, as a tensor of `dataType`. */
export function mapBroadcast(op: string, name: string, dataType: number, inputs: readonly OnnxTensor[], f: (...v: number[]) => number): OnnxTensor {
  const shape = broadcastShape(...inputs.map((t) => t.dims));
  if (!shape) throw new OpError(op, `shapes ${inputs.map((t) => shapeStr(t.dims)).join(', ')} do not broadcast`);
  const vals = inputs.map(values);
  const index = inputs.map((t) => broadcastIndex(t.dims, shape));
  const out = new Array<number>(shapeSize(shape));
  const args = new Array<number>(inputs.length);
  for (let k = 0; k < out.length; k++) {
    for (let j = 0; j < inputs.length; j++) args[j] = vals[j][index[j][k]];
    out[k] = f(...args);
  }
  return hostTensor(name, dataType, shape, out);
}

/** The axis in [0, rank) (negative counts from the end). */
export function normAxis(op: string, axis: number, rank: number): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) throw new OpError(op, `axis ${axis} out of range for rank ${rank}`);
  return axis < 0 ? axis + rank : axis;
}

/** The elements at `index` of a tensor (flat indices into its data), as a tensor of shape `dims`. */
function pick(t: OnnxTensor, name: string, dims: readonly number[], index: ArrayLike<number>): OnnxTensor {
  const v = values(t);
  return hostTensor(name, t.dataType, dims, Array.from(index, (i) => v[i]));
}

/** numpy's x.transpose(perm) */
export function transposeHost(t: OnnxTensor, perm: readonly number[], name: string): OnnxTensor {
  const dims = perm.map((p) => t.dims[p]);
  const inStrides = strides(t.dims);
  const index = new Int32Array(shapeSize(dims));
  const idx = new Array(dims.length).fill(0);
  for (let k = 0; k < index.length; k++) {
    let src = 0;
    for (let d = 0; d < dims.length; d++) src += idx[d] * inStrides[perm[d]];
    index[k] = src;
    for (let d = dims.length - 1; d >= 0; d--) {
      if (++idx[d] < dims[d]) break;
      idx[d] = 0;
    }
  }
  return pick(t, name, dims, index);
}

/** numpy's np.take(x, indices, axis): indices may be negative. */
export function gatherHost(t: OnnxTensor, indices: OnnxTensor, axis: number, name: string): OnnxTensor {
  const a = normAxis('Gather', axis, t.dims.length);
  const n = t.dims[a];
  const idx = values(indices).map((i) => {
    if (i < -n || i >= n) throw new OpError('Gather', `index ${i} out of range for axis ${a} of ${shapeStr(t.dims)}`);
    return i < 0 ? i + n : i;
  });
  const outer = shapeSize(t.dims.slice(0, a));
  const inner = shapeSize(t.dims.slice(a + 1));
  const index: number[] = [];
  for (let o = 0; o < outer; o++) for (const i of idx) for (let k = 0; k < inner; k++) index.push((o * n + i) * inner + k);
  return pick(t, name, [...t.dims.slice(0, a), ...indices.dims, ...t.dims.slice(a + 1)], index);
}

/** The elements of `ranges` (a first index, a step and a count per axis: ONNX Slice's, resolved). */
export function sliceHost(t: OnnxTensor, ranges: readonly { start: number; step: number; count: number }[], name: string): OnnxTensor {
  const dims = ranges.map((r) => r.count);
  const s = strides(t.dims);
  const index = new Int32Array(shapeSize(dims));
  const idx = new Array(dims.length).fill(0);
  for (let k = 0; k < index.length; k++) {
    let src = 0;
    for (let d = 0; d < dims.length; d++) src += (ranges[d].start + idx[d] * ranges[d].step) * s[d];
    index[k] = src;
    for (let d = dims.length - 1; d >= 0; d--) {
      if (++idx[d] < dims[d]) break;
      idx[d] = 0;
    }
  }
  return pick(t, name, dims, index);
}

export function concatHost(ts: readonly OnnxTensor[], axis: number, name: string): OnnxTensor {
  const a = normAxis('Concat', axis, ts[0].dims.length);
  for (const t of ts) {
    if (t.dims.length !== ts[0].dims.length || t.dims.some((d, i) => i !== a && d !== ts[0].dims[i])) {
      throw new OpError('Concat', `shapes must agree except along axis ${a}: ${ts.map((x) => shapeStr(x.dims)).join(', ')}`);
    }
  }
  const outer = shapeSize(ts[0].dims.slice(0, a));
  const out: number[] = [];
  const vals = ts.map(values);
  for (let o = 0; o < outer; o++) {
    ts.forEach((t, j) => {
      const block = shapeSize(t.dims.slice(a));
      for (let k = 0; k < block; k++) out.push(vals[j][o * block + k]);
    });
  }
  const dims = [...ts[0].dims];
  dims[a] = ts.reduce((s, t) => s + t.dims[a], 0);
  return hostTensor(name, ts[0].dataType, dims, out);
}

/** ONNX Expand: numpy broadcast of t and `shape` (either may be the larger in a dimension). */
export function expandShape(from: readonly number[], shape: readonly number[]): number[] {
  const out = broadcastShape(from, shape);
  if (!out) throw new OpError('Expand', `${shapeStr(from)} does not broadcast to ${shapeStr(shape)}`);
  return out;
}

export function expandHost(t: OnnxTensor, shape: readonly number[], name: string): OnnxTensor {
  const dims = expandShape(t.dims, shape);
  return pick(t, name, dims, broadcastIndex(t.dims, dims));
}

/** ONNX ScatterND (reduction none): a copy of data with the slices named by indices' last axis replaced by updates. */
export function scatterNDHost(data: OnnxTensor, indices: OnnxTensor, updates: OnnxTensor, name: string): OnnxTensor {
  const out = values(data);
  const idx = values(indices);
  const upd = values(updates);
  const k = indices.dims[indices.dims.length - 1];
  const s = strides(data.dims);
  const slice = shapeSize(data.dims.slice(k));
  const count = idx.length / Math.max(1, k);
  for (let j = 0; j < count; j++) {
    let offset = 0;
    for (let d = 0; d < k; d++) {
      const i = idx[j * k + d];
      const n = data.dims[d];
      if (i < -n || i >= n) throw new OpError('ScatterND', `index ${i} out of range for axis ${d} of ${shapeStr(data.dims)}`);
      offset += (i < 0 ? i + n : i) * s[d];
    }
    for (let e = 0; e < slice; e++) out[offset + e] = upd[j * slice + e];
  }
  return hostTensor(name, data.dataType, data.dims, out);
}
