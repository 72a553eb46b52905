// The ONNX protobuf messages, loaded at run time by protobufjs from the official schema shipped next
// to this file (src/onnx/onnx.proto). Field names are protobufjs' camelCase forms of the schema's
// (raw_data -> rawData). The interfaces below type the decoded messages for the fields gpunet uses;
// a decoded message leaves absent optional fields on its prototype (defaults), so presence is tested
// with `has`. int64 fields decode as Long objects (see `Int64`).
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

/** an int64 as protobufjs decodes it: a Long (low/high 32-bit halves), or a plain number when encoding */
export type Int64 = number | { low: number; high: number; unsigned: boolean };

export interface StringStringEntryProto {
  key: string;
  value: string;
}

export interface OperatorSetIdProto {
  domain: string;
  version: Int64;
}

export interface TensorProto {
  dims: Int64[];
  dataType: number;
  floatData: number[];
  int32Data: number[];
  stringData: Uint8Array[];
  int64Data: Int64[];
  name: string;
  rawData: Uint8Array;
  doubleData: number[];
  uint64Data: Int64[];
  externalData: StringStringEntryProto[];
  /** DataLocation: 0 DEFAULT, 1 EXTERNAL */
  dataLocation: number;
}

export interface AttributeProto {
  name: string;
  /** AttributeType (ATTRIBUTE_TYPE below); 0 in models older than IR version 2 */
  type: number;
  f: number;
  i: Int64;
  s: Uint8Array;
  t?: TensorProto;
  floats: number[];
  ints: Int64[];
  strings: Uint8Array[];
}

export interface NodeProto {
  input: string[];
  output: string[];
  name: string;
  opType: string;
  domain: string;
  attribute: AttributeProto[];
}

export interface DimensionProto {
  dimValue?: Int64;
  dimParam?: string;
}

export interface TypeProto {
  tensorType?: { elemType: number; shape?: { dim: DimensionProto[] } };
}

export interface ValueInfoProto {
  name: string;
  type?: TypeProto;
}

export interface GraphProto {
  node: NodeProto[];
  name: string;
  initializer: TensorProto[];
  sparseInitializer: unknown[];
  input: ValueInfoProto[];
  output: ValueInfoProto[];
}

export interface ModelProto {
  irVersion: Int64;
  opsetImport: OperatorSetIdProto[];
  producerName: string;
  producerVersion: string;
  graph?: GraphProto;
  metadataProps: StringStringEntryProto[];
}

/** onnx.proto AttributeProto.AttributeType values */
export const ATTRIBUTE_TYPE = {
  UNDEFINED: 0,
  FLOAT: 1,
  INT: 2,
  STRING: 3,
  TENSOR: 4,
  GRAPH: 5,
  FLOATS: 6,
  INTS: 7,
  STRINGS: 8,
} as const;

/** onnx.proto TensorProto.DataLocation.EXTERNAL */
export const DATA_LOCATION_EXTERNAL = 1;

const root = protobuf.loadSync(fileURLToPath(new URL('./onnx.proto', import.meta.url)));

export const ModelProtoType = root.lookupType('onnx.ModelProto');
export const TensorProtoType = root.lookupType('onnx.TensorProto');

/** Whether a decoded message carries `field` itself (not the prototype's default). */
export function has(message: object, field: string): boolean {
  return Object.prototype.hasOwnProperty.call(message, field);
}
