// The in-memory form of an ONNX model that gpunet reads, runs and writes. It mirrors onnx.proto's
// ModelProto / GraphProto / NodeProto / TensorProto with the format's traps already resolved:
// int64 values are plain numbers, raw_data is copied into a typed array of its own, initializers
// are not listed among the graph inputs, and external data is loaded.

/** onnx.proto TensorProto.DataType values gpunet deals with */
export const DataType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  INT32: 6,
  INT64: 7,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
} as const;

export type TensorData = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Int8Array | Uint16Array;

export interface OnnxTensor {
  name: string;
  dims: number[];
  /** a DataType value */
  dataType: number;
  data: TensorData;
}

export type AttrValue = number | string | number[] | string[] | OnnxTensor;

export interface OnnxNode {
  name: string;
  opType: string;
  /** '' for the default ONNX domain */
  domain: string;
  /** '' marks an omitted optional input */
  inputs: string[];
  outputs: string[];
  attrs: Record<string, AttrValue>;
}

export interface ValueInfo {
  name: string;
  /** a DataType value (0 when unknown) */
  elemType: number;
  /** a number per known dimension, a string for a symbolic one (e.g. 'batch'), null when unknown */
  shape: (number | string | null)[];
}

export interface OnnxGraph {
  name: string;
  nodes: OnnxNode[];
  initializers: Map<string, OnnxTensor>;
  /** the real inputs (initializers excluded) */
  inputs: ValueInfo[];
  outputs: ValueInfo[];
}

export interface OnnxModel {
  irVersion: number;
  /** opset version of the default domain */
  opset: number;
  producerName: string;
  graph: OnnxGraph;
  /** metadata_props */
  metadata: Record<string, string>;
}
