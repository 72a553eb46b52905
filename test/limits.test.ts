// Work larger than the adapter allows: refused before anything is allocated or launched, as one
// GpuLimitError naming the op, its shapes and the limit; inference batches shrink to what fits.
// Every size here derives from the adapter's own limits, and the large cases only run dry.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { getGpu, GpuLimitError, isGpuLimit } from '../src/gpu/index.ts';
import { smallCnn } from '../src/nn/smallcnn.ts';
import { loadClassifier } from '../src/onnx/load.ts';
import { noGrad, Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { fittingBatchSize } from '../src/train/inference.ts';
import type { Module } from '../src/nn/module.ts';
import { useGpu } from './helpers.ts';

useGpu();

const DARKNET = join(import.meta.dirname, '..', '..', 'shared', 'weights', 'darknet-tiny-imagenet.onnx');

const dryForward = (model: Module, shape: number[]) => getGpu().dryRun(() => noGrad(() => tidy(() => void model.forward(Tensor.empty(shape)))));

describe('GPU limits', () => {
  it('a buffer larger than maxBufferSize is refused before one is created', () => {
    const gpu = getGpu();
    const created = gpu.pool.stats().created;
    const floats = Math.floor(gpu.limits.maxBufferSize / 4) + 1;
    expect(() => tidy(() => void Tensor.empty([floats]))).toThrow(GpuLimitError);
    expect(() => tidy(() => void Tensor.empty([floats]))).toThrow(/^tensor \[\d+\]: a buffer needs \d+ MiB, more than the adapter's maxBufferSize \(\d+ MiB\): use smaller images or batches$/);
    expect(gpu.pool.stats().created).toBe(created);
  });

  it('inference batches halve until they fit the storage bindings; one image too large is one line naming the op and the limit', () => {
    const limit = getGpu().limits.maxStorageBufferBindingSize;
    const model = smallCnn(3, { width: 64, rng: new Rng(1) });
    model.eval();
    // the first conv's output, [n, 64, s, s] floats, is the largest binding: about 20 images fit
    const s = Math.ceil(Math.sqrt(limit / (4 * 64 * 20)));
    const n = fittingBatchSize(model, [3, s, s], 64);
    expect(n).toBeLessThan(64);
    expect(n).toBeGreaterThanOrEqual(8);
    expect(() => dryForward(model, [n, 3, s, s])).not.toThrow();
    expect(() => dryForward(model, [2 * n, 3, s, s])).toThrow(GpuLimitError);
    expect(fittingBatchSize(model, [3, 8, 8], 64)).toBe(64);

    // (the label names the launch: the conv's own, the NaN poisoning of its output under test, or,
    // where the conv runs as a GEMM that splits its bindings, the batchnorm after it)
    const huge = Math.ceil(Math.sqrt(limit / (4 * 64))) + 1;
    expect(() => fittingBatchSize(model, [3, huge, huge], 4)).toThrow(
      new RegExp(`^(conv2d\\.forward x\\[1,3,${huge},${huge}\\] .*|fill \\[1,64,${huge},${huge}\\]|batchNorm2d x\\[1,64,${huge},${huge}\\]\\.\\w+): binding \\d needs \\d+ MiB, more than the adapter's maxStorageBufferBindingSize \\(\\d+ MiB\\): use smaller images or batches$`),
    );
    model.release();
  });

  it("an ONNX graph's limit, wrapped in the node's one-line error, still shrinks the batch (Darknet-tiny at 224 px)", async () => {
    const c = await loadClassifier(DARKNET);
    const n = fittingBatchSize(c.model, [3, 224, 224], 256);
    expect(n).toBeLessThan(256);
    let refusal: unknown;
    try {
      dryForward(c.model, [2 * n, 3, 224, 224]);
    } catch (e) {
      refusal = e;
    }
    expect(isGpuLimit(refusal)).toBe(true);
    expect((refusal as Error).message).toMatch(/darknet-tiny-imagenet\.onnx: node '.+' \(\w+, opset \d+\): .* needs \d+ MiB, more than the adapter's maxStorageBufferBindingSize/);
    c.model.release();
  });
});
