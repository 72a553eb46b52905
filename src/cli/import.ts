// `gpunet import`: turns a foreign ONNX classifier into a gpunet checkpoint by recording what the
// file itself does not say (class names, input size, normalisation, resize mode) in its
// metadata_props, so predict and eval need no preprocessing flags afterwards.
import { META } from '../onnx/classifier.ts';
import { declaredSide } from '../onnx/load.ts';
import { readOnnx } from '../onnx/read.ts';
import { saveOnnx } from '../onnx/write.ts';
import { defineCommand } from './command.ts';
import { UsageError } from './errors.ts';
import { grouped, str } from './options.ts';
import { className, readNamesFile, resolvePreprocessing } from './predict.ts';
import { PREPROCESSING } from './shared-options.ts';

export const importCommand = defineCommand({
  name: 'import',
  summary: 'record preprocessing and class names into a foreign ONNX classifier, making a checkpoint',
  synopsis: '--model foreign.onnx --out checkpoint.onnx --means a,b,c --stds a,b,c --size N --resize crop|fill [--classes FILE]',
  description: `Records the preprocessing an ONNX classifier expects and its class names in the file's metadata,
making it a checkpoint that predict and eval use without flags. The network is copied unchanged.`,
  options: {
    model: str({ metavar: 'FILE', required: true, help: 'the ONNX classifier (input [N,3,size,size], output [N,classes])' }),
    out: str({ metavar: 'FILE', required: true, help: 'the checkpoint to write (written whole or not at all)' }),
    classes: str({ metavar: 'FILE', help: "class names in output order: one per line, a JSON list, or a JSON object keyed by output index (Keras' imagenet_class_index.json too)" }),
    ...grouped('preprocessing (needed unless the file records it; ImageNet: 0.485,0.456,0.406 and 0.229,0.224,0.225)', PREPROCESSING),
  },
  async run(v) {
    const model = readOnnx(v.model);
    const prior = model.metadata;
    const base =
      prior[META.size] && prior[META.mean] && prior[META.std] && prior[META.resize]
        ? { size: Number(prior[META.size]), mean: JSON.parse(prior[META.mean]), std: JSON.parse(prior[META.std]), resize: prior[META.resize] as 'crop' | 'fill' }
        : null;
    const p = resolvePreprocessing(v, base, v.model, declaredSide(model));

    // the output's class dimension, when the graph declares it
    const outShape = model.graph.outputs[0]?.shape ?? [];
    const declared = typeof outShape[outShape.length - 1] === 'number' ? (outShape[outShape.length - 1] as number) : null;
    let classes: string[] | null = null;
    if (v.classes) {
      const data = readNamesFile('--classes', v.classes);
      if (Array.isArray(data)) classes = data.map((x, i) => className('--classes', v.classes!, i, x));
      else {
        // {"0": "tench", "1": "goldfish", ...}, or Keras' {"0": ["n01440764", "tench"], ...}: keyed by output index
        classes = Object.keys(data).map((_, i) => {
          if (!(String(i) in data)) throw new UsageError(`--classes ${v.classes}: a JSON object must be keyed by output index 0, 1, ...; '${i}' is missing`);
          return className('--classes', v.classes!, String(i), data[String(i)]);
        });
      }
    }
    if (classes && declared !== null && classes.length !== declared) {
      throw new UsageError(`--classes ${v.classes}: ${classes.length} names for a model with ${declared} outputs`);
    }
    model.metadata = {
      ...prior,
      [META.size]: String(p.size),
      [META.mean]: JSON.stringify(p.mean),
      [META.std]: JSON.stringify(p.std),
      [META.resize]: p.resize,
      ...(classes ? { [META.classes]: JSON.stringify(classes) } : {}),
    };
    saveOnnx(model, v.out);
    console.log(
      `${v.out}: ${v.model} with size ${p.size}, resize ${p.resize}, mean ${p.mean.join(',')}, std ${p.std.join(',')}` +
        (classes ? `, ${classes.length} classes (${classes.slice(0, 3).join(', ')}${classes.length > 3 ? ', ...' : ''})` : ''),
    );
    return 0;
  },
});
