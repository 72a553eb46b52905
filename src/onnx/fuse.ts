// Fusions: node patterns that exporters write for one op, run as that op. PyTorch before opset 17
// spells F.layer_norm out as nine nodes,
//   m = ReduceMean(x)  d = Sub(x, m)  v = ReduceMean(Pow(d, 2))  n = Div(d, Sqrt(Add(v, eps)))
//   y = Add(Mul(n, weight), bias)
// which run here as one LayerNormalization (one fused kernel forward, one backward, instead of
// nine of each and their intermediates). Only the execution order changes: the graph a model
// exports keeps the exporter's nodes.
import type { OnnxNode, OnnxTensor } from './ir.ts';
import { values } from './ops/host.ts';

interface GraphView {
  nodes: readonly OnnxNode[];
  initializers: ReadonlyMap<string, OnnxTensor>;
  /** names the graph outputs (intermediates of a pattern must not be one) */
  outputs: ReadonlySet<string>;
  opset: number;
}

/** The graph's nodes with every decomposed layer norm replaced by a LayerNormalization node. */
export function fuseLayerNorms(g: GraphView): OnnxNode[] {
  const consumers = new Map<string, OnnxNode[]>();
  for (const n of g.nodes) for (const x of new Set(n.inputs)) consumers.set(x, [...(consumers.get(x) ?? []), n]);
  const only = (value: string, opType: string): OnnxNode | null => {
    const cs = consumers.get(value) ?? [];
    return cs.length === 1 && cs[0].opType === opType && cs[0].domain === '' && !g.outputs.has(value) ? cs[0] : null;
  };
  /** a float weight of the normalized shape (as many dims as axes; more than one value) */
  const affineWeight = (name: string | null, rank: number): boolean => {
    const t = name ? g.initializers.get(name) : undefined;
    return t !== undefined && t.dims.length === rank && t.data.length > 1;
  };
  const constant = (name: string): number[] | null => {
    const t = g.initializers.get(name);
    return t ? values(t) : null;
  };
  /** the other input of a binary node, given one */
  const other = (n: OnnxNode, one: string) => (n.inputs[0] === one ? n.inputs[1] : n.inputs[1] === one ? n.inputs[0] : null);
  /** a ReduceMean's axes when they are the last k (negative) and keepdims is on */
  const trailingAxes = (n: OnnxNode): number[] | null => {
    if ((n.attrs.keepdims ?? 1) !== 1) return null;
    const axes = (g.opset < 18 ? (n.attrs.axes as number[] | undefined) : n.inputs[1] ? constant(n.inputs[1]) : null) ?? null;
    if (!axes || axes.length === 0) return null;
    const sorted = [...axes].sort((a, b) => a - b);
    return sorted.every((a, i) => a === i - sorted.length) ? sorted : null;
  };

  const replaced = new Map<OnnxNode, OnnxNode | null>(); // pattern node -> the fused node (at the first), or null
  for (const m1 of g.nodes) {
    if (m1.opType !== 'ReduceMean' || m1.domain !== '' || replaced.has(m1)) continue;
    const axes = trailingAxes(m1);
    const x = m1.inputs[0];
    const sub = only(m1.outputs[0], 'Sub');
    if (!axes || !sub || sub.inputs[0] !== x || sub.inputs[1] !== m1.outputs[0]) continue;
    const d = sub.outputs[0];
    const dUsers = consumers.get(d) ?? [];
    const pow = dUsers.find((n) => n.opType === 'Pow' && n.inputs[0] === d);
    const div = dUsers.find((n) => n.opType === 'Div' && n.inputs[0] === d);
    if (dUsers.length !== 2 || !pow || !div || g.outputs.has(d) || constant(pow.inputs[1])?.join() !== '2') continue;
    const m2 = only(pow.outputs[0], 'ReduceMean');
    if (!m2 || trailingAxes(m2)?.join() !== axes.join()) continue;
    const add = only(m2.outputs[0], 'Add');
    const eps = add && constant(other(add, m2.outputs[0]) ?? '');
    const sqrt = add && only(add.outputs[0], 'Sqrt');
    if (!eps || eps.length !== 1 || !sqrt || only(sqrt.outputs[0], 'Div') !== div || div.inputs[1] !== sqrt.outputs[0]) continue;
    const pattern = [m1, sub, pow, m2, add, sqrt, div];
    // the affine part: a Mul by a weight, then an Add of a bias (each optional, in this order)
    let out = div.outputs[0];
    const inputs = [x, '', ''];
    const mul = only(out, 'Mul');
    const weight = mul && other(mul, out);
    if (mul && weight && affineWeight(weight, axes.length)) {
      pattern.push(mul);
      inputs[1] = weight;
      out = mul.outputs[0];
      const addBias = only(out, 'Add');
      const bias = addBias && other(addBias, out);
      if (addBias && bias && affineWeight(bias, axes.length)) {
        pattern.push(addBias);
        inputs[2] = bias;
        out = addBias.outputs[0];
      }
    }
    const fused: OnnxNode = { name: div.name || out, opType: 'LayerNormalization', domain: '', inputs, outputs: [out], attrs: { axis: axes[0], epsilon: eps[0] } };
    pattern.forEach((n, i) => replaced.set(n, i === 0 ? fused : null));
  }
  return g.nodes.flatMap((n) => (replaced.has(n) ? (replaced.get(n) ? [replaced.get(n)!] : []) : [n]));
}
