// Transfer learning's view of a network: a backbone (images -> features [N, F]) and a head
// (features -> logits), with the layer groups that discriminative learning rates and freezing work
// on, and the normalization layers' parameters (they train in fastai's frozen phase). Every model
// gpunet trains says how it splits (split()); this file holds the shape of the answer and the
// helpers the answers share. A layer summary (layers()) sees a module the same way, layer by layer.
import { getGpu } from '../gpu/index.ts';
import { noGrad, Tensor, tidy } from '../tensor/index.ts';
import { type Module, runLayers } from './module.ts';

export interface ModelSplit {
  model: Module;
  head: Module;
  /** the network without its head: images -> features [N, F] */
  features(x: Tensor): Tensor;
  /** parameter names of each layer group, stem first, the head's last */
  groups: string[][];
  /** parameter names of normalization scales and shifts (batchnorm, layer norm) */
  batchNormParams: Set<string>;
  /** what each group is, for the log (default: its first and last top-level modules, e.g.
   *  'conv1…layer2'); a graph's groups name the nodes that read them */
  groupLabels?: string[];
}

/**
 * A classifier cut at its last feature map, the input of its global pool: images -> feature maps
 * [N, C, H, W], and feature maps -> logits (Grad-CAM's two halves; both share the model's weights).
 */
export interface FeatureMapSplit {
  /** where the cut is: the layer or graph value whose output the feature maps are */
  layer: string;
  body(x: Tensor): Tensor;
  tail(maps: Tensor): Tensor;
}

/** A parameter name under one of the child prefixes. */
export const underPrefix = (name: string, prefixes: readonly string[]): boolean => prefixes.some((p) => name === p || name.startsWith(`${p}.`));

/** Splits a parameter list in two halves (by position): the backbone groups of a generic model.
 *  With `layerOf` (the layer a parameter belongs to), a layer's weight and bias stay in one half. */
export function halves(names: string[], layerOf?: (name: string) => unknown): string[][] {
  let mid = Math.ceil(names.length / 2);
  while (layerOf && mid < names.length && layerOf(names[mid]) === layerOf(names[mid - 1])) mid++;
  return [names.slice(0, mid), names.slice(mid)].filter((g) => g.length > 0);
}

/**
 * The split of a model whose children run in order and whose last child (or `headName`) is the
 * head: the backbone is the other children; `groups` splits the backbone's parameter names.
 */
export function childrenSplit(model: Module, headName: string, groups: (backbone: string[]) => string[][], normParams: Set<string>): ModelSplit {
  const names = model.namedParameters().map(([n]) => n);
  const head = model.getChild(headName)!;
  const body = model.children().filter(([n]) => n !== headName).map(([, m]) => m);
  const backbone = names.filter((n) => !underPrefix(n, [headName]));
  return {
    model,
    head,
    features: (x) => runLayers(body, x),
    groups: [...groups(backbone).filter((g) => g.length > 0), names.filter((n) => underPrefix(n, [headName]))],
    batchNormParams: normParams,
  };
}

export interface LayerRow {
  name: string;
  type: string;
  /** without the batch dimension */
  outputShape: number[];
  params: number;
}

/**
 * The layers of a module tree for a summary: leaf modules (and any module owning parameters
 * itself) in the order the forward pass calls them, with their output shapes and parameter counts.
 * The pass runs dry at batch 1 (Gpu.dryRun: shapes only, nothing reaches the device).
 */
export function moduleLayers(model: Module, inputShape: readonly number[]): LayerRow[] {
  const rows: LayerRow[] = [];
  const counted = new Set<Module>();
  const wrapped: Module[] = [];
  for (const [name, m] of model.namedModules()) {
    const own = m.namedParameters().filter(([n]) => !n.includes('.'));
    if (name === '' || (m.children().length > 0 && own.length === 0)) continue;
    const forward = m.forward;
    m.forward = (x: Tensor) => {
      const y = forward.call(m, x);
      rows.push({ name, type: m.constructor.name, outputShape: y.shape.slice(1), params: counted.has(m) ? 0 : own.reduce((s, [, t]) => s + t.size, 0) });
      counted.add(m);
      return y;
    };
    wrapped.push(m);
  }
  try {
    model.eval();
    getGpu().dryRun(() => noGrad(() => tidy(() => void model.forward(Tensor.empty(inputShape)))));
  } finally {
    // drop the instance wrappers: the prototype's forward shows through again
    for (const m of wrapped) delete (m as { forward?: unknown }).forward;
  }
  return rows;
}
