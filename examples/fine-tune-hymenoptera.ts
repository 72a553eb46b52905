// Transfer learning through the library, the steps `gpunet train` takes: an ImageNet classifier
// (../shared's Darknet-tiny) is cut before its last layer and given a new 2-class head, its
// backbone frozen, and the head trained on PyTorch's ants/bees photos; the fine-tuned model is
// written as an ONNX checkpoint that gpunet predict (or any ONNX runtime) runs.
//
//   npx tsx examples/fine-tune-hymenoptera.ts [--epochs 3] [--size 224] [--per-class N] [--out runs/hymenoptera.onnx]
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as gpunet from 'gpunet';

const shared = fileURLToPath(new URL('../../shared/', import.meta.url));
const { values: args } = parseArgs({
  options: {
    data: { type: 'string', default: `${shared}data/hymenoptera_data` },
    weights: { type: 'string', default: `${shared}weights/darknet-tiny-imagenet.onnx` },
    epochs: { type: 'string', default: '3' },
    size: { type: 'string', default: '224' },
    'per-class': { type: 'string' }, // only the first N images of each class and split (a quick run)
    out: { type: 'string' },
  },
});
if (!existsSync(args.weights)) throw new Error(`${args.weights}: no such file (pass --weights, an ONNX ImageNet classifier)`);
await gpunet.init();

// the images: hymenoptera_data/train/{ants,bees}, hymenoptera_data/val/{ants,bees}
const split = await gpunet.data.scanDataset(args.data);
const perClass = args['per-class'] === undefined ? Infinity : Number(args['per-class']);
const fewer = (samples: gpunet.data.Sample[]) => split.classes.flatMap((_, c) => samples.filter((s) => s.label === c).slice(0, perClass));
const [trainSet, validSet] = [fewer(split.train), fewer(split.valid)];
console.log(`${split.classes.join(', ')}: ${trainSet.length} training and ${validSet.length} validation photos`);

// the model: Darknet-tiny cut before its last weighted layer, with a fresh 2-class head
const size = Number(args.size);
const { model } = await gpunet.train.buildModel({ classes: split.classes.length, weights: args.weights, arch: 'resnet18', size, seed: 0 });
// Darknet-tiny takes RGB in [0, 1]: no normalisation
const preprocessing = { size, mean: [0, 0, 0] as [number, number, number], std: [1, 1, 1] as [number, number, number], resize: 'fill' as const };
const { data, close } = gpunet.train.imageData(trainSet, validSet, { classes: split.classes, size, batchSize: 16, augment: null, mean: preprocessing.mean, std: preprocessing.std, seed: 0, workers: 2 });

// the backbone frozen for the whole run (freezeEpochs >= epochs): its features are computed once,
// and each epoch trains only the head
const epochs = Number(args.epochs);
const result = await gpunet.train.fit(model.split(), data, {
  epochs, freezeEpochs: epochs, lr: 0.01, lrMult: 1, schedule: 'constant', momentum: 0.9, weightDecay: 1e-4, labelSmoothing: 0, seed: 0,
});
await close();
console.log(`best validation accuracy: ${(100 * result.bestAccuracy).toFixed(1)}%`);
if (args.out) {
  await gpunet.onnx.save({ model, classes: split.classes, preprocessing, source: args.weights }, args.out);
  console.log(`wrote ${args.out}: try gpunet predict --checkpoint ${args.out} --input some-bee.jpg`);
}
