// The training loader's throughput on the hymenoptera images (245 train JPEGs, ~500x375) at 224 px
// with the default augmentation (presize to 336, random-resized crop, flip, rotation, zoom, colour
// jitter, normalisation): images per second for 0 (calling thread), 1 and 2 worker threads, after
// a warm-up epoch (worker start-up and the file cache are timed separately). With --train-step it
// also times ResNet18 training steps (batch 16 at 224 px, on the GPU) alone and fed by the loader,
// the rate the loader must beat by 2x and whether the GPU waits for images.
//   npx tsx bench/loader.ts [--train-step] [--epochs 2]
import { join } from 'node:path';
import { DEFAULT_AUGMENT } from '../src/data/augment.ts';
import { scanDataset } from '../src/data/folder.ts';
import { ImageLoader, type LoaderOptions } from '../src/data/loader.ts';

const DATA = join(import.meta.dirname, '..', '..', 'shared', 'data', 'hymenoptera_data');
const SIZE = 224;
const BATCH = 16;
const args = process.argv.slice(2);
const epochs = Number(args[args.indexOf('--epochs') + 1] ?? 2) || 2;

const data = await scanDataset(DATA);
const samples = data.train;
const opts = (workers: number): LoaderOptions => ({
  size: SIZE,
  batchSize: BATCH,
  augment: DEFAULT_AUGMENT,
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
  shuffle: true,
  seed: 42,
  workers,
});

/** Seconds to run `epoch` of `loader` to the end; checks every sample came. */
async function timeEpoch(loader: ImageLoader, epoch: number): Promise<number> {
  const t0 = performance.now();
  let n = 0;
  for await (const b of loader.epoch(epoch)) n += b.labels.length;
  if (n !== samples.length) throw new Error(`epoch ${epoch} served ${n} of ${samples.length} images`);
  return (performance.now() - t0) / 1000;
}

// validate: the same first batch whatever the worker count
const first = async (workers: number) => {
  const l = new ImageLoader(samples, opts(workers));
  for await (const b of l.epoch(0)) {
    await l.close();
    return b;
  }
  throw new Error('no batch');
};
const [a, b] = [await first(0), await first(2)];
if (a.paths.join() !== b.paths.join() || a.images.some((v, i) => v !== b.images[i])) throw new Error('0 and 2 workers disagree');
console.log(`validated: 0 and 2 workers give identical batches`);

console.log(`\nloader alone: ${samples.length} images at ${SIZE} px, batch ${BATCH}, default augmentation`);
console.log('workers | first epoch (start-up) s | epoch s | images/s');
for (const workers of [0, 1, 2]) {
  const loader = new ImageLoader(samples, opts(workers));
  const warm = await timeEpoch(loader, 0);
  let best = Infinity;
  for (let e = 1; e <= epochs; e++) best = Math.min(best, await timeEpoch(loader, e));
  await loader.close();
  console.log(`${String(workers).padStart(7)} | ${warm.toFixed(2).padStart(24)} | ${best.toFixed(2).padStart(7)} | ${(samples.length / best).toFixed(1).padStart(8)}`);
}

if (args.includes('--train-step')) {
  const { initGpu, getGpu } = await import('../src/gpu/index.ts');
  const { resnet18 } = await import('../src/nn/resnet.ts');
  const { SGD } = await import('../src/optim/sgd.ts');
  const { softmaxCrossEntropy } = await import('../src/ops/softmax.ts');
  const { Tensor, tidy } = await import('../src/tensor/index.ts');
  await initGpu();
  const model = resnet18({ numClasses: data.classes.length }).train(true);
  const opt = new SGD(model.parameters(), { lr: 1e-3, momentum: 0.9, weightDecay: 1e-4 });
  const step = async (images: Float32Array, labels: number[]) => {
    await tidy(async () => {
      const x = Tensor.from(images, [labels.length, 3, SIZE, SIZE]);
      softmaxCrossEntropy(model.forward(x), labels).backward();
      opt.step();
      await getGpu().sync();
    });
    opt.zeroGrad();
  };
  const STEPS = 3;
  const loader = new ImageLoader(samples, opts(2));
  let batch = a;
  await step(batch.images, batch.labels); // warm-up: pipelines compiled
  let t0 = performance.now();
  for (let s = 0; s < STEPS; s++) await step(batch.images, batch.labels);
  const alone = (performance.now() - t0) / 1000 / STEPS;
  await timeEpoch(loader, 0); // workers started
  // the time the training loop waits for the loader's next batch: what the GPU loses to data
  let wait = 0;
  let s = 0;
  t0 = performance.now();
  const it = loader.epoch(1)[Symbol.asyncIterator]();
  for (;;) {
    const w0 = performance.now();
    const next = await it.next();
    wait += performance.now() - w0;
    if (next.done) break;
    await step(next.value.images, next.value.labels);
    if (++s === STEPS) break;
  }
  await it.return?.(undefined);
  const fed = (performance.now() - t0) / 1000 / STEPS;
  await loader.close();
  console.log(`\nResNet18 training step, batch ${BATCH} at ${SIZE} px:`);
  console.log(`  one fixed batch: ${alone.toFixed(2)} s/step = ${(BATCH / alone).toFixed(2)} images/s (the loader must deliver >= ${((2 * BATCH) / alone).toFixed(1)} images/s)`);
  console.log(`  fed by the loader (2 workers): ${fed.toFixed(2)} s/step = ${(BATCH / fed).toFixed(2)} images/s, waiting ${(wait / 1000 / STEPS).toFixed(3)} s/step for images (the first batch included)`);
}
