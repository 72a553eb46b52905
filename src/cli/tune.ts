// `gpunet tune`: times each kernel configuration candidate at every shape a model runs (one step of
// it finds them) and caches the fastest per adapter (src/gpu/tuning.ts); later runs use them.
import { getGpu, initGpu, tuneCache } from '../gpu/index.ts';
import { benchmarkModel } from '../train/benchmark.ts';
import { defineCommand } from './command.ts';
import { flag } from './options.ts';
import { MODEL_OPTIONS, openModel } from './bench.ts';

export const tuneCommand = defineCommand({
  name: 'tune',
  summary: "choose kernel tile shapes for this adapter at a model's shapes, cached on disk",
  synopsis: '[--checkpoint model.onnx | --arch resnet18|resnet34] [--batch N] [--size N] [--train] [options]',
  description: `Runs one step of the model to find the shapes its kernels run at, times every candidate
configuration of each (tile shapes; all of them in each of five rounds, each one's median: on a
CPU adapter by the CPU time of its worker threads, elsewhere by timestamp queries) and caches the
fastest per adapter and shape, in $GPUNET_CACHE_DIR (default ~/.cache/gpunet). Every later run
on this adapter uses them; without a cache the kernels run their defaults. With --train the
training step's backward kernels are tuned too.`,
  options: {
    ...MODEL_OPTIONS,
    train: flag({ help: 'tune the kernels of a training step (forward and backward), not inference only' }),
  },
  async run(v) {
    await initGpu(v.device);
    const { model, classes, size } = await openModel(v);
    try {
      const cache = tuneCache(getGpu());
      if (cache.outdated !== null) console.log(`${cache.file} is a version ${cache.outdated} cache (another timing method): its choices are not used, and this run replaces it`);
      await benchmarkModel(model, { batch: v.batch, size, classes, train: v.train, warmup: 0, steps: 1 });
      const pending = cache.pending().length;
      console.log(`${pending} kernel shape${pending === 1 ? '' : 's'} to tune${pending ? '' : ' (all cached already)'}; cache ${cache.file}`);
      let i = 0;
      await cache.tunePending((task, c) => {
        const cfg = Object.entries(c.config).map(([k, x]) => `${k}=${x}`).join(' ');
        console.log(`[${++i}/${pending}] ${task.family} ${task.key}: ${cfg}  ${c.ms.toFixed(2)} ms (default ${c.defaultMs.toFixed(2)} ms, ${(c.defaultMs / c.ms).toFixed(2)}x; ${c.timer})`);
      });
      return 0;
    } finally {
      model.release();
    }
  },
});
