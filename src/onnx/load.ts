// Classifier checkpoints: an ONNX file is both what users bring (a torchvision export, any graph of
// supported ops) and what gpunet writes back (with class names and preprocessing in metadata_props).
// A graph that is a torchvision ResNet18/34 loads into the ResNet module (trainable like one built
// here); anything else runs as a generic GraphModule.
import { ResNet } from '../nn/resnet.ts';
import { META, type Classifier, type Preprocessing, type ResizeMode } from './classifier.ts';
import { GraphModule } from './graph.ts';
import type { OnnxModel } from './ir.ts';
import { OnnxError, readOnnx } from './read.ts';
import { exportResNet, importResNet } from './resnet.ts';
import { saveOnnx } from './write.ts';

export interface LoadOptions {
  /** the number of classes the caller needs (e.g. the data set's): another count is an error */
  expectClasses?: number;
}

/** Reads a checkpoint: the network (in eval mode), its class names and preprocessing. */
export async function loadClassifier(path: string, opts: LoadOptions = {}): Promise<Classifier> {
  const onnx = readOnnx(path);
  const meta = onnx.metadata;
  const classNames = parseClasses(meta, path);
  const preprocessing = parsePreprocessing(meta, path);
  const model = importResNet(onnx) ?? new GraphModule(onnx, { source: path });
  try {
    const count = model instanceof ResNet ? model.numClasses : graphClasses(onnx) ?? classNames?.length;
    if (count === undefined) {
      throw new OnnxError(path, `cannot tell the number of classes (output '${onnx.graph.outputs[0]?.name}' has no fixed last dimension and no '${META.classes}' metadata)`);
    }
    if (classNames && classNames.length !== count) {
      throw new OnnxError(path, `metadata '${META.classes}' names ${classNames.length} classes, the network outputs ${count}`);
    }
    if (opts.expectClasses !== undefined && opts.expectClasses !== count) {
      throw new OnnxError(path, `the checkpoint has ${count} classes, ${opts.expectClasses} expected`);
    }
    return { model, classes: classNames ?? Array.from({ length: count }, (_, i) => String(i)), preprocessing, source: path };
  } catch (e) {
    model.release();
    throw e;
  }
}

/**
 * Writes a checkpoint (atomically): a ResNet as a fresh opset-13 graph with BatchNormalization kept,
 * a GraphModule as its own graph with the current weights; class names and preprocessing in
 * metadata_props.
 */
export async function saveClassifier(c: Classifier, path: string): Promise<void> {
  const metadata = classifierMetadata(c);
  let model: OnnxModel;
  if (c.model instanceof ResNet) {
    model = await exportResNet(c.model, { metadata, size: c.preprocessing?.size });
  } else if (c.model instanceof GraphModule) {
    const opset = c.model.opset;
    model = { irVersion: irVersionFor(opset), opset, producerName: 'gpunet', graph: await c.model.exportGraph(), metadata: { ...metadata, [META.arch]: 'graph' } };
  } else {
    throw new Error(`saveClassifier: a ${c.model.constructor.name} has no ONNX export (ResNet or GraphModule only)`);
  }
  saveOnnx(model, path);
}

/** The metadata_props entries of a classifier (META keys). */
export function classifierMetadata(c: Classifier): Record<string, string> {
  const m: Record<string, string> = { [META.classes]: JSON.stringify(c.classes) };
  const p = c.preprocessing;
  if (p) {
    m[META.size] = String(p.size);
    m[META.mean] = JSON.stringify(p.mean);
    m[META.std] = JSON.stringify(p.std);
    m[META.resize] = p.resize;
  }
  return m;
}

/** The lowest IR version that can carry an opset (onnx/helper.py's VERSION_TABLE). */
function irVersionFor(opset: number): number {
  const table: [number, number][] = [[21, 10], [19, 9], [15, 8], [12, 7], [11, 6], [10, 5], [9, 4]];
  return table.find(([o]) => opset >= o)?.[1] ?? 3;
}

/** The last dimension of the graph's first output, when fixed. */
function graphClasses(onnx: OnnxModel): number | undefined {
  const d = onnx.graph.outputs[0]?.shape.at(-1);
  return typeof d === 'number' && d > 0 ? d : undefined;
}

function parseJson(meta: Record<string, string>, key: string, path: string, valid: (v: unknown) => boolean, what: string): unknown {
  let v: unknown;
  try {
    v = JSON.parse(meta[key]);
  } catch {
    v = undefined;
  }
  if (!valid(v)) throw new OnnxError(path, `metadata '${key}' is not ${what}: ${meta[key].slice(0, 60)}`);
  return v;
}

function parseClasses(meta: Record<string, string>, path: string): string[] | null {
  if (meta[META.classes] === undefined) return null;
  const isNames = (v: unknown) => Array.isArray(v) && v.length > 0 && v.every((s) => typeof s === 'string');
  return parseJson(meta, META.classes, path, isNames, 'a JSON array of class names') as string[];
}

/** Preprocessing from metadata: null when the file says nothing (a foreign ONNX file). */
function parsePreprocessing(meta: Record<string, string>, path: string): Preprocessing | null {
  const keys = [META.size, META.mean, META.std] as const;
  const missing = keys.filter((k) => meta[k] === undefined);
  if (missing.length === keys.length) return null;
  if (missing.length > 0) throw new OnnxError(path, `incomplete preprocessing metadata: '${missing.join("', '")}' missing`);
  const size = Number(meta[META.size]);
  if (!Number.isInteger(size) || size <= 0) throw new OnnxError(path, `metadata '${META.size}' is not a positive integer: ${meta[META.size]}`);
  const isTriple = (v: unknown) => Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number' && Number.isFinite(x));
  const mean = parseJson(meta, META.mean, path, isTriple, 'a JSON array of 3 numbers') as [number, number, number];
  const std = parseJson(meta, META.std, path, (v) => isTriple(v) && (v as number[]).every((x) => x > 0), 'a JSON array of 3 positive numbers') as [number, number, number];
  const resize = (meta[META.resize] ?? 'crop') as ResizeMode;
  if (resize !== 'crop' && resize !== 'fill') throw new OnnxError(path, `metadata '${META.resize}' is '${resize}', not 'crop' or 'fill'`);
  return { size, mean, std, resize };
}
