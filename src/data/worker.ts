// Worker thread entry of the ImageLoader: decodes and augments one image per message and sends the
// tensor back (its buffer transferred, not copied). The randomness arrives with the task (a per-
// sample seed), so a result does not depend on which worker computed it.
import { parentPort } from 'node:worker_threads';
import { Rng } from '../tensor/random.ts';
import { augmentImage } from './augment.ts';
import { failureReason, type ImageTask, type ImageResult } from './loader.ts';

if (!parentPort) throw new Error('src/data/worker.ts is a worker thread entry, not a module to import');
const port = parentPort;

port.on('message', async (task: ImageTask) => {
  let result: ImageResult;
  try {
    const x = await augmentImage(task.path, task.size, task.augment, task.mean, task.std, new Rng(task.seed));
    result = { id: task.id, image: x };
    port.postMessage(result, [x.buffer as ArrayBuffer]);
  } catch (e) {
    result = { id: task.id, error: failureReason(e) };
    port.postMessage(result);
  }
});
