// Classifier checkpoints: an ONNX file is both what users bring (a torchvision export, any graph of
// supported ops) and what gpunet writes back (with class names and preprocessing in metadata_props).
// A graph that is a torchvision ResNet18/34 loads into the ResNet module (trainable like one built
// here); anything else runs as a generic GraphModule. Either is a Network (src/onnx/network.ts).
import type { Preprocessing, ResizeMode } from '../data/image.ts';
import { META, type Classifier } from './classifier.ts';
import { checkFinite, GraphModule, UnsupportedError } from './graph.ts';
import { DataType, type OnnxModel } from './ir.ts';
import { typeName } from './ops/host.ts';
import { OnnxError, readOnnx } from './read.ts';
import { importResNet } from './resnet.ts';
import { saveOnnx } from './write.ts';

/** Metadata a checkpoint may carry, within reason (an input_size of 100000 would make the image
 *  decoder allocate tens of GB before anything else could refuse it). */
const LIMITS = { size: 4096, classes: 1_000_000, normalization: 1e3, minStd: 1e-6 };

export interface LoadOptions {
  /** the number of classes the caller needs (e.g. the data set's): another count is an error */
  expectClasses?: number;
  /** the input side the caller will run at (its --size); default: defaultSize(). A side other
   *  than the fixed one the graph input declares is taken if the graph runs at it (a convolutional
   *  network does), else refused in one line naming the declared side */
  size?: number;
}

/** ImageNet's side: the input size of a file that neither records nor declares one. */
export const DEFAULT_SIZE = 224;

/** The input side a checkpoint runs at unless told: the one it records, else the fixed side its
 *  graph input declares (a foreign export), else 224. */
export function defaultSize(c: Pick<Classifier, 'preprocessing' | 'declaredSize'>): number {
  return c.preprocessing?.size ?? c.declaredSize ?? DEFAULT_SIZE;
}

/** Reads a checkpoint: the network (in eval mode, planned for its input size), its class names and preprocessing. */
export async function loadClassifier(path: string, opts: LoadOptions = {}): Promise<Classifier> {
  const onnx = readOnnx(path);
  const meta = onnx.metadata;
  const classNames = parseClasses(meta, path);
  const preprocessing = parsePreprocessing(meta, path);
  const declared = declaredInput(onnx, path);
  const declaredSize = declared.images ? declaredSide(onnx) : undefined;
  const size = opts.size ?? defaultSize({ preprocessing, declaredSize });
  const input = onnx.graph.inputs[0].name;
  // images are planned for at their size now, so that refusals come before anything runs
  const inputShapes = declared.images ? { [input]: [1, 3, size, size] } : undefined;
  const resnet = importResNet(onnx);
  const model = resnet ?? planGraph(onnx, path, inputShapes, declaredSize);
  try {
    if (resnet) checkFinite(onnx.graph, path); // (GraphModule checks its own)
    const planned = model instanceof GraphModule && inputShapes ? model.describe(inputShapes).shapes.get(onnx.graph.outputs[0].name)?.at(-1) : undefined;
    const count = model.numClasses ?? planned ?? classNames?.length;
    if (count === undefined) {
      throw new OnnxError(path, `cannot tell the number of classes (output '${onnx.graph.outputs[0]?.name}' has no fixed last dimension and no '${META.classes}' metadata)`);
    }
    if (classNames && classNames.length !== count) {
      throw new OnnxError(path, `metadata '${META.classes}' names ${classNames.length} classes, the network outputs ${count}`);
    }
    if (opts.expectClasses !== undefined && opts.expectClasses !== count) {
      throw new OnnxError(path, `the checkpoint has ${count} classes, ${opts.expectClasses} expected`);
    }
    return { model, classes: classNames ?? Array.from({ length: count }, (_, i) => String(i)), preprocessing, source: path, declaredSize };
  } catch (e) {
    model.release();
    throw e;
  }
}

/** A generic graph planned for `inputShapes`; a graph that does not run at a side other than the
 *  one its input declares (a Flatten into a fixed Gemm, a ViT's position embeddings) is refused
 *  naming both sides. */
function planGraph(onnx: OnnxModel, path: string, inputShapes: Record<string, number[]> | undefined, declaredSize: number | undefined): GraphModule {
  try {
    return new GraphModule(onnx, { source: path, inputShapes });
  } catch (e) {
    const side = inputShapes ? Object.values(inputShapes)[0][2] : undefined;
    if (!(e instanceof OnnxError) || declaredSize === undefined || side === undefined || side === declaredSize) throw e;
    const input = onnx.graph.inputs[0].name;
    const err = new OnnxError(path, `its input '${input}' is declared [N, 3, ${declaredSize}, ${declaredSize}] and the graph does not run at ${side} px (${e.problem}): use --size ${declaredSize}`);
    err.cause = e;
    throw err;
  }
}

/**
 * What a classifier graph's one input declares: float images [N, 3, H, W] (`images`), or feature
 * vectors [N, F]; anything else is refused.
 */
function declaredInput(onnx: OnnxModel, path: string): { images: boolean } {
  const inputs = onnx.graph.inputs;
  if (inputs.length !== 1) throw new OnnxError(path, `a classifier takes one input (images), this graph has ${inputs.length}: ${inputs.map((v) => `'${v.name}'`).join(', ') || 'none'}`);
  const v = inputs[0];
  if (v.elemType !== DataType.FLOAT && v.elemType !== 0) throw new UnsupportedError(path, `input '${v.name}' is ${typeName(v.elemType)}: a classifier takes float images [N, 3, H, W]`);
  if (v.shape.length === 2) return { images: false };
  if (v.shape.length !== 0 && v.shape.length !== 4) throw new OnnxError(path, `input '${v.name}' has rank ${v.shape.length} (${JSON.stringify(v.shape)}): a classifier takes images [N, 3, H, W]`);
  const c = v.shape[1];
  if (typeof c === 'number' && c !== 3) throw new OnnxError(path, `input '${v.name}' has ${c} channels: a classifier takes RGB images [N, 3, H, W]`);
  return { images: true };
}

/** The side of the square images [N, C, S, S] a graph's first input declares, when fixed. */
export function declaredSide(onnx: OnnxModel): number | undefined {
  const shape = onnx.graph.inputs[0]?.shape ?? [];
  const [h, w] = [shape[2], shape[3]];
  return shape.length === 4 && typeof h === 'number' && h > 0 && h === w ? h : undefined;
}

/**
 * Writes a checkpoint (atomically): the network as ONNX (a ResNet as a fresh opset-13 graph with
 * BatchNormalization kept, a graph with its current weights) for inputs of the preprocessing's
 * size; class names and preprocessing in metadata_props.
 */
export async function saveClassifier(c: Classifier, path: string): Promise<void> {
  saveOnnx(await c.model.toOnnx({ size: c.preprocessing?.size, metadata: classifierMetadata(c) }), path);
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
  const isNames = (v: unknown) => Array.isArray(v) && v.length > 0 && v.length <= LIMITS.classes && v.every((s) => typeof s === 'string');
  return parseJson(meta, META.classes, path, isNames, `a JSON array of 1 to ${LIMITS.classes} class names`) as string[];
}

/** Preprocessing from metadata: null when the file says nothing (a foreign ONNX file). */
function parsePreprocessing(meta: Record<string, string>, path: string): Preprocessing | null {
  const keys = [META.size, META.mean, META.std] as const;
  const missing = keys.filter((k) => meta[k] === undefined);
  if (missing.length === keys.length) return null;
  if (missing.length > 0) throw new OnnxError(path, `incomplete preprocessing metadata: '${missing.join("', '")}' missing`);
  const size = Number(meta[META.size]);
  if (!Number.isInteger(size) || size <= 0 || size > LIMITS.size) throw new OnnxError(path, `metadata '${META.size}' is not an image side from 1 to ${LIMITS.size}: ${meta[META.size].slice(0, 60)}`);
  const { normalization: n, minStd } = LIMITS;
  const isTriple = (v: unknown) => Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number' && Number.isFinite(x) && Math.abs(x) <= n);
  const mean = parseJson(meta, META.mean, path, isTriple, `a JSON array of 3 numbers in [-${n}, ${n}]`) as [number, number, number];
  const std = parseJson(meta, META.std, path, (v) => isTriple(v) && (v as number[]).every((x) => x > minStd), `a JSON array of 3 numbers in (${minStd}, ${n}]`) as [number, number, number];
  const resize = (meta[META.resize] ?? 'crop') as ResizeMode;
  if (resize !== 'crop' && resize !== 'fill') throw new OnnxError(path, `metadata '${META.resize}' is '${resize}', not 'crop' or 'fill'`);
  return { size, mean, std, resize };
}
