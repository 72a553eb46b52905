// OnnxModel (src/onnx/ir.ts) -> ONNX file. Initializers are written as little-endian raw_data, the
// default domain's opset as opset_import, graph inputs/outputs as value_info with element type and
// shape (symbolic dimensions as dim_param), metadata as metadata_props. saveOnnx never leaves a
// half-written file (src/io/files.ts).
import { writeFileAtomic } from '../io/files.ts';
import type { AttrValue, OnnxModel, OnnxNode, OnnxTensor, ValueInfo } from './ir.ts';
import { ATTRIBUTE_TYPE, ModelProtoType, type AttributeProto, type Int64, type TensorProto, type ValueInfoProto } from './proto.ts';

/** the IR version written when the model does not carry one (onnx 1.12; onnxruntime reads it) */
const DEFAULT_IR_VERSION = 8;

/**
 * Attributes whose ONNX type is float although their value may be a whole number (LeakyRelu alpha=1,
 * Clip-6 min=0): the IR keeps attributes as plain numbers, so the type comes from the operator
 * schemas. Names are float in every ONNX operator that has them, except `seed` (float in the Random*
 * ops, int in Dropout), listed per op.
 */
const FLOAT_ATTRS = new Set([
  'alpha', 'beta', 'gamma', 'epsilon', 'momentum', 'ratio', 'lambd', 'bias', 'min', 'max', 'scale',
  'scales', 'spatial_scale', 'threshold', 'cubic_coeff_a', 'extrapolation_value', 'mean', 'high', 'low',
  'value_float', 'value_floats', 'activation_alpha', 'activation_beta', 'clip',
]);
const FLOAT_SEED_OPS = new Set(['RandomNormal', 'RandomUniform', 'RandomNormalLike', 'RandomUniformLike', 'Bernoulli', 'Multinomial']);

function isFloatAttr(opType: string, name: string): boolean {
  return FLOAT_ATTRS.has(name) || (name === 'seed' && FLOAT_SEED_OPS.has(opType));
}

/** The lowest IR version that can carry an opset (onnx/helper.py's VERSION_TABLE). */
export function irVersionFor(opset: number): number {
  const table: [number, number][] = [[21, 10], [19, 9], [15, 8], [12, 7], [11, 6], [10, 5], [9, 4]];
  return table.find(([o]) => opset >= o)?.[1] ?? 3;
}

/** Serializes a model to ONNX protobuf bytes. */
export function encodeOnnx(model: OnnxModel): Uint8Array {
  const g = model.graph;
  // plain objects in protobufjs' camelCase field names (the writer takes them as they are)
  const proto = {
    irVersion: model.irVersion || DEFAULT_IR_VERSION,
    producerName: model.producerName,
    opsetImport: [{ domain: '', version: model.opset }],
    graph: {
      name: g.name,
      node: g.nodes.map(nodeToProto),
      initializer: [...g.initializers.values()].map(tensorToProto),
      sparseInitializer: [],
      input: g.inputs.map(valueInfoToProto),
      output: g.outputs.map(valueInfoToProto),
    },
    metadataProps: Object.entries(model.metadata).map(([key, value]) => ({ key, value })),
  };
  return ModelProtoType.encode(proto).finish();
}

/** Writes the model to `file` atomically (temporary file in the same folder, then rename). */
export function saveOnnx(model: OnnxModel, file: string): void {
  writeFileAtomic(file, encodeOnnx(model));
}

/** A tensor's values as raw_data (the host is little-endian, as ONNX's raw_data is). */
function tensorToProto(t: OnnxTensor): Partial<TensorProto> {
  return {
    name: t.name,
    dims: t.dims,
    dataType: t.dataType,
    rawData: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
  };
}

function nodeToProto(n: OnnxNode) {
  return {
    name: n.name,
    opType: n.opType,
    domain: n.domain,
    input: n.inputs,
    output: n.outputs,
    attribute: Object.entries(n.attrs).map(([name, v]) => attrToProto(n.opType, name, v)),
  };
}

function attrToProto(opType: string, name: string, v: AttrValue): Partial<AttributeProto> {
  if (typeof v === 'string') return { name, type: ATTRIBUTE_TYPE.STRING, s: new TextEncoder().encode(v) };
  if (typeof v === 'number') {
    return isFloatAttr(opType, name) || !Number.isInteger(v) ? { name, type: ATTRIBUTE_TYPE.FLOAT, f: v } : { name, type: ATTRIBUTE_TYPE.INT, i: int64Value(v) };
  }
  if (Array.isArray(v)) {
    if (v.length > 0 && typeof v[0] === 'string') {
      return { name, type: ATTRIBUTE_TYPE.STRINGS, strings: (v as string[]).map((s) => new TextEncoder().encode(s)) };
    }
    const nums = v as number[];
    return isFloatAttr(opType, name) || nums.some((x) => !Number.isInteger(x))
      ? { name, type: ATTRIBUTE_TYPE.FLOATS, floats: nums }
      : { name, type: ATTRIBUTE_TYPE.INTS, ints: nums.map(int64Value) };
  }
  return { name, type: ATTRIBUTE_TYPE.TENSOR, t: tensorToProto(v) as TensorProto };
}

/**
 * An int64 for protobufjs: numbers beyond 2^53 (read from INT64_MAX-style sentinels such as Slice's
 * ends) are clamped to the int64 range and passed as decimal strings, which the writer parses
 * exactly; a plain 2^63 would wrap to INT64_MIN.
 */
function int64Value(v: number): Int64 {
  if (Number.isSafeInteger(v)) return v;
  const max = 2n ** 63n - 1n;
  const b = BigInt(v);
  return (b > max ? max : b < -max - 1n ? -max - 1n : b).toString() as unknown as Int64;
}

function valueInfoToProto(v: ValueInfo): ValueInfoProto {
  const dim = v.shape.map((d) => (d === null ? {} : typeof d === 'string' ? { dimParam: d } : { dimValue: d }));
  return { name: v.name, type: { tensorType: { elemType: v.elemType, shape: { dim } } } };
}
