// ONNX file -> OnnxModel (src/onnx/ir.ts), resolving the format's traps on the way in:
// - raw_data decodes as a view into the file at any byte offset: it is copied before being viewed as
//   a Float32Array etc. (typed arrays need aligned offsets, and the copy frees the file's buffer);
// - int64 fields decode as Long: dims and attributes become numbers, int64 tensors BigInt64Array;
// - tensor values come from raw_data, from the typed fields (float_data, int32_data, int64_data,
//   double_data) or from an external-data file in the model's folder (never outside it);
// - models older than IR version 4 also list the initializers among graph.input: they are dropped
//   from `inputs`.
// Every problem is an OnnxError whose message is one line naming the file and what is wrong.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type FileError, readRegularFile } from '../io/files.ts';
import type { AttrValue, OnnxModel, OnnxNode, OnnxTensor, TensorData, ValueInfo } from './ir.ts';
import { DataType } from './ir.ts';
import {
  ATTRIBUTE_TYPE,
  DATA_LOCATION_EXTERNAL,
  has,
  ModelProtoType,
  TensorProtoType,
  type AttributeProto,
  type Int64,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from './proto.ts';

/** A malformed or unsupported ONNX file: `message` is one line, "<source>: <problem>". */
export class OnnxError extends Error {
  constructor(
    readonly source: string,
    readonly problem: string,
  ) {
    super(`${source}: ${problem}`);
    this.name = 'OnnxError';
  }
}

export interface ParseOptions {
  /** the folder external-data paths are relative to (the model file's folder); without it external data is refused */
  baseDir?: string;
  /** names the file in error messages */
  source?: string;
}

/** Tensors larger than this are refused as corrupt (the engine's buffers are far smaller anyway). */
const MAX_ELEMENTS = 2 ** 31;

/** Bytes per element, and the typed-array constructor viewing them, per supported DataType. */
const ELEMENT_TYPES: Record<number, { bytes: number; view: (buf: ArrayBuffer, n: number) => TensorData; name: string }> = {
  [DataType.FLOAT]: { bytes: 4, view: (b, n) => new Float32Array(b, 0, n), name: 'float' },
  [DataType.UINT8]: { bytes: 1, view: (b, n) => new Uint8Array(b, 0, n), name: 'uint8' },
  [DataType.INT8]: { bytes: 1, view: (b, n) => new Int8Array(b, 0, n), name: 'int8' },
  [DataType.INT32]: { bytes: 4, view: (b, n) => new Int32Array(b, 0, n), name: 'int32' },
  [DataType.INT64]: { bytes: 8, view: (b, n) => new BigInt64Array(b, 0, n), name: 'int64' },
  [DataType.BOOL]: { bytes: 1, view: (b, n) => new Uint8Array(b, 0, n), name: 'bool' },
  // float16 stays as its raw bits
  [DataType.FLOAT16]: { bytes: 2, view: (b, n) => new Uint16Array(b, 0, n), name: 'float16' },
  [DataType.DOUBLE]: { bytes: 8, view: (b, n) => new Float64Array(b, 0, n), name: 'double' },
};

/** A Long (or number) as a number; exact up to 2^53, rounded beyond (e.g. INT64_MAX in Slice ends). */
export function int64ToNumber(v: Int64): number {
  if (typeof v === 'number') return v;
  return (v.unsigned ? v.high >>> 0 : v.high) * 2 ** 32 + (v.low >>> 0);
}

function int64ToBigInt(v: Int64): bigint {
  if (typeof v === 'number') return BigInt(v);
  return BigInt.asIntN(64, (BigInt(v.high >>> 0) << 32n) | BigInt(v.low >>> 0));
}

const utf8 = new TextDecoder();

/** Reads an ONNX model file; external data is looked up next to it. */
export function readOnnx(file: string): OnnxModel {
  let bytes: Uint8Array;
  try {
    bytes = readRegularFile(file);
  } catch (e) {
    throw new OnnxError(file, (e as FileError).reason);
  }
  return parseOnnx(bytes, { baseDir: path.dirname(path.resolve(file)), source: file });
}

/** Decodes an ONNX ModelProto. */
export function parseOnnx(bytes: Uint8Array, opts: ParseOptions = {}): OnnxModel {
  const source = opts.source ?? '<onnx bytes>';
  const proto = decode<ModelProto>(() => ModelProtoType.decode(bytes) as unknown as ModelProto, source);
  const g = proto.graph;
  if (!g) throw new OnnxError(source, 'not an ONNX model (no graph)');
  const defaultOpset = proto.opsetImport.find((o) => o.domain === '' || o.domain === 'ai.onnx');
  if (!defaultOpset) throw new OnnxError(source, 'not an ONNX model (no opset_import for the default domain)');
  if (g.sparseInitializer.length > 0) throw new OnnxError(source, 'sparse initializers are not supported');

  const initializers = new Map<string, OnnxTensor>();
  for (const t of g.initializer) initializers.set(t.name, tensorFromProto(t, source, opts.baseDir));
  return {
    irVersion: int64ToNumber(proto.irVersion),
    opset: int64ToNumber(defaultOpset.version),
    producerName: proto.producerName,
    graph: {
      name: g.name,
      nodes: g.node.map((n) => nodeFromProto(n, source, opts.baseDir)),
      initializers,
      inputs: g.input.filter((v) => !initializers.has(v.name)).map((v) => valueInfoFromProto(v, source)),
      outputs: g.output.map((v) => valueInfoFromProto(v, source)),
    },
    metadata: Object.fromEntries(proto.metadataProps.map((p) => [p.key, p.value])),
  };
}

/** Decodes a serialized TensorProto (the backend test cases' input_*.pb / output_*.pb files). */
export function parseTensor(bytes: Uint8Array, opts: ParseOptions = {}): OnnxTensor {
  const source = opts.source ?? '<tensor bytes>';
  const proto = decode<TensorProto>(() => TensorProtoType.decode(bytes) as unknown as TensorProto, source);
  return tensorFromProto(proto, source, opts.baseDir);
}

/** Runs a protobufjs decode, turning its errors (truncation, bad wire types) into one OnnxError line. */
function decode<T>(run: () => T, source: string): T {
  try {
    return run();
  } catch (e) {
    throw new OnnxError(source, `not an ONNX file or truncated (${(e as Error).message})`);
  }
}

function tensorFromProto(t: TensorProto, source: string, baseDir: string | undefined): OnnxTensor {
  const what = `tensor '${t.name}'`;
  const type = ELEMENT_TYPES[t.dataType];
  if (!type) throw new OnnxError(source, `${what} has unsupported data type ${t.dataType}`);
  const dims = t.dims.map(int64ToNumber);
  let count = 1;
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 0) throw new OnnxError(source, `${what} has an absurd dimension ${d} in [${dims}]`);
    count *= d;
  }
  if (count > MAX_ELEMENTS) throw new OnnxError(source, `${what} has an absurd shape [${dims}] (${count} elements)`);

  const mismatch = (n: number, where: string) =>
    new OnnxError(source, `${what} of shape [${dims}] needs ${count} ${type.name} values, ${where} holds ${n}`);
  const fromBytes = (raw: Uint8Array, where: string): TensorData => {
    if (raw.byteLength !== count * type.bytes) throw mismatch(raw.byteLength / type.bytes, where);
    // copy: the view may sit at an unaligned offset of the file's buffer (little-endian host assumed);
    // Uint8Array's slice, since a Node Buffer's slice() would return a view again
    return type.view(Uint8Array.prototype.slice.call(raw).buffer, count);
  };

  let data: TensorData;
  if (t.dataLocation === DATA_LOCATION_EXTERNAL) {
    data = fromBytes(readExternal(t, source, baseDir), 'its external data');
  } else if (has(t, 'rawData')) {
    data = fromBytes(t.rawData, 'raw_data');
  } else {
    const typed = typedFieldData(t);
    if (typed.length !== count) {
      if (typed.length === 0 && count > 0) throw new OnnxError(source, `${what} of shape [${dims}] has no data`);
      throw mismatch(typed.length, 'its typed data field');
    }
    data = typed;
  }
  return { name: t.name, dims, dataType: t.dataType, data };
}

/** The values of a tensor stored in the type-specific field its data type uses (onnx.proto TensorProto). */
function typedFieldData(t: TensorProto): TensorData {
  switch (t.dataType) {
    case DataType.FLOAT:
      return Float32Array.from(t.floatData);
    case DataType.DOUBLE:
      return Float64Array.from(t.doubleData);
    case DataType.INT64:
      return BigInt64Array.from(t.int64Data, int64ToBigInt);
    case DataType.INT32:
      return Int32Array.from(t.int32Data);
    case DataType.INT8:
      return Int8Array.from(t.int32Data);
    case DataType.FLOAT16: // int32_data holds the 16-bit patterns
      return Uint16Array.from(t.int32Data);
    default: // UINT8, BOOL
      return Uint8Array.from(t.int32Data);
  }
}

/** The bytes of an external-data tensor: keys location (relative to baseDir), offset, length. */
function readExternal(t: TensorProto, source: string, baseDir: string | undefined): Uint8Array {
  const what = `tensor '${t.name}'`;
  const keys = Object.fromEntries(t.externalData.map((e) => [e.key, e.value]));
  const location = keys.location;
  if (!location) throw new OnnxError(source, `${what} is external but names no location`);
  if (baseDir === undefined) throw new OnnxError(source, `${what} is stored in external file '${location}', but the model's folder is unknown`);
  const offset = keys.offset === undefined ? 0 : Number(keys.offset);
  const length = keys.length === undefined ? undefined : Number(keys.length);
  if (!Number.isSafeInteger(offset) || offset < 0 || (length !== undefined && (!Number.isSafeInteger(length) || length < 0))) {
    throw new OnnxError(source, `${what} has a bad external-data offset/length (${keys.offset}/${keys.length})`);
  }
  // the file must resolve (symlinks included) inside the model's folder
  const escapes = (dir: string, file: string) => {
    const rel = path.relative(dir, file);
    return rel === '' || rel.startsWith('..') || path.isAbsolute(rel);
  };
  if (path.isAbsolute(location) || escapes(baseDir, path.resolve(baseDir, location))) {
    throw new OnnxError(source, `${what}: external-data path '${location}' escapes the model's folder`);
  }
  let fd: number;
  let real: string;
  try {
    real = fs.realpathSync(path.resolve(baseDir, location));
    // (opening a FIFO blocks until someone writes to it)
    if (!fs.statSync(real).isFile()) throw Object.assign(new Error('not a regular file'), { code: 'not a regular file' });
    fd = fs.openSync(real, 'r');
  } catch (e) {
    throw new OnnxError(source, `${what}: cannot open external data '${location}' (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    if (escapes(fs.realpathSync(baseDir), real)) {
      throw new OnnxError(source, `${what}: external-data path '${location}' escapes the model's folder`);
    }
    const size = fs.fstatSync(fd).size;
    const n = length ?? size - offset;
    if (offset + n > size) {
      throw new OnnxError(source, `${what}: external data '${location}' is truncated (needs bytes ${offset}..${offset + n}, file has ${size})`);
    }
    const bytes = new Uint8Array(n);
    let done = 0;
    while (done < n) done += fs.readSync(fd, bytes, done, n - done, offset + done);
    return bytes;
  } finally {
    fs.closeSync(fd);
  }
}

function nodeFromProto(n: NodeProto, source: string, baseDir: string | undefined): OnnxNode {
  const attrs: Record<string, AttrValue> = {};
  for (const a of n.attribute) {
    const v = attrValue(a, source, baseDir);
    if (v !== undefined) attrs[a.name] = v;
  }
  return { name: n.name, opType: n.opType, domain: n.domain, inputs: [...n.input], outputs: [...n.output], attrs };
}

/**
 * An attribute's value; undefined for the kinds the IR does not represent (subgraphs, sparse tensors,
 * type protos), which only ops gpunet does not run use. Models before IR version 2 leave `type`
 * unset: then the field that is present says the kind.
 */
function attrValue(a: AttributeProto, source: string, baseDir: string | undefined): AttrValue | undefined {
  const type = a.type || inferAttrType(a);
  switch (type) {
    case ATTRIBUTE_TYPE.FLOAT:
      return a.f;
    case ATTRIBUTE_TYPE.INT:
      return int64ToNumber(a.i);
    case ATTRIBUTE_TYPE.STRING:
      return utf8.decode(a.s);
    case ATTRIBUTE_TYPE.TENSOR:
      if (!a.t) throw new OnnxError(source, `attribute '${a.name}' is a tensor but holds none`);
      return tensorFromProto(a.t, source, baseDir);
    case ATTRIBUTE_TYPE.FLOATS:
      return [...a.floats];
    case ATTRIBUTE_TYPE.INTS:
      return a.ints.map(int64ToNumber);
    case ATTRIBUTE_TYPE.STRINGS:
      return a.strings.map((s) => utf8.decode(s));
    default:
      return undefined;
  }
}

function inferAttrType(a: AttributeProto): number {
  if (has(a, 'f')) return ATTRIBUTE_TYPE.FLOAT;
  if (has(a, 'i')) return ATTRIBUTE_TYPE.INT;
  if (has(a, 's')) return ATTRIBUTE_TYPE.STRING;
  if (has(a, 't')) return ATTRIBUTE_TYPE.TENSOR;
  if (a.floats.length) return ATTRIBUTE_TYPE.FLOATS;
  if (a.ints.length) return ATTRIBUTE_TYPE.INTS;
  if (a.strings.length) return ATTRIBUTE_TYPE.STRINGS;
  return ATTRIBUTE_TYPE.UNDEFINED;
}

function valueInfoFromProto(v: ValueInfoProto, source: string): ValueInfo {
  const tensor = v.type?.tensorType;
  const shape = (tensor?.shape?.dim ?? []).map((d) => {
    if (has(d, 'dimValue')) {
      const n = int64ToNumber(d.dimValue!);
      if (!Number.isSafeInteger(n) || n < 0) throw new OnnxError(source, `value '${v.name}' has an absurd dimension ${n}`);
      return n;
    }
    if (has(d, 'dimParam')) return d.dimParam!;
    return null;
  });
  return { name: v.name, elemType: tensor?.elemType ?? 0, shape };
}
