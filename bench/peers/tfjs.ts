// torchvision's ResNet18 in TF.js (tfjs-core ops, NHWC, random weights), on TF.js's WebGPU backend
// (the same Dawn adapter as gpunet, handed over as navigator.gpu) or its WASM backend (the CPU).
// Inference and a training step (forward, softmax cross-entropy, backward, SGD with momentum),
// each ending with a read-back, as gpunet is timed. TF.js's momentum optimizer has no weight decay.
import * as tf from '@tensorflow/tfjs'; // the union package: tfjs-core with every gradient registered
import { dirname } from 'node:path';
import { createRequire } from 'node:module';
import { webgpuInstance } from '../../src/gpu/index.ts';

export type TfBackend = 'webgpu' | 'wasm';

/** Loads and selects a TF.js backend. */
export async function useTfBackend(backend: TfBackend): Promise<void> {
  if (backend === 'webgpu') {
    const g = globalThis as { navigator?: { gpu?: unknown } };
    g.navigator ??= {};
    g.navigator.gpu ??= webgpuInstance();
    await import('@tensorflow/tfjs-backend-webgpu');
  } else {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    const dist = dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));
    wasm.setWasmPaths(`${dist}/`);
    wasm.setThreadsCount(1);
  }
  if (!(await tf.setBackend(backend))) throw new Error(`TF.js ${backend} backend failed to initialise`);
  await tf.ready();
}

interface Conv {
  w: tf.Variable; // [kh, kw, in, out]
  stride: number;
  pad: number;
  bn: { gamma: tf.Variable; beta: tf.Variable; mean: tf.Tensor; variance: tf.Tensor };
}

function conv(inC: number, outC: number, k: number, stride: number, pad: number): Conv {
  const std = Math.sqrt(2 / (outC * k * k));
  return {
    w: tf.variable(tf.randomNormal([k, k, inC, outC], 0, std, 'float32', 1)),
    stride,
    pad,
    bn: { gamma: tf.variable(tf.ones([outC])), beta: tf.variable(tf.zeros([outC])), mean: tf.zeros([outC]), variance: tf.ones([outC]) },
  };
}

/** conv then batchnorm (batch statistics when training, as torch's train mode), no ReLU */
function convBn(c: Conv, x: tf.Tensor4D, training: boolean): tf.Tensor4D {
  const y = tf.conv2d(x, c.w as tf.Tensor4D, c.stride, c.pad);
  const { mean, variance } = training ? tf.moments(y, [0, 1, 2]) : c.bn;
  return tf.batchNorm(y, mean, variance, c.bn.beta, c.bn.gamma, 1e-5) as tf.Tensor4D;
}

export class TfResNet18 {
  private readonly stem = conv(3, 64, 7, 2, 3);
  private readonly blocks: { c1: Conv; c2: Conv; down: Conv | null }[] = [];
  private readonly fcW: tf.Variable;
  private readonly fcB: tf.Variable;

  constructor(classes: number) {
    let inC = 64;
    for (let i = 0; i < 4; i++) {
      const outC = 64 * 2 ** i;
      for (let b = 0; b < 2; b++) {
        const stride = b === 0 && i > 0 ? 2 : 1;
        this.blocks.push({ c1: conv(inC, outC, 3, stride, 1), c2: conv(outC, outC, 3, 1, 1), down: stride !== 1 || inC !== outC ? conv(inC, outC, 1, stride, 0) : null });
        inC = outC;
      }
    }
    this.fcW = tf.variable(tf.randomUniform([512, classes], -1 / Math.sqrt(512), 1 / Math.sqrt(512)));
    this.fcB = tf.variable(tf.zeros([classes]));
  }

  /** logits [N, classes] of x [N, H, W, 3] */
  forward(x: tf.Tensor4D, training: boolean): tf.Tensor2D {
    let y = tf.relu(convBn(this.stem, x, training));
    y = tf.maxPool(y, 3, 2, 1);
    for (const b of this.blocks) {
      const main = convBn(b.c2, tf.relu(convBn(b.c1, y, training)), training);
      y = tf.relu(tf.add(main, b.down ? convBn(b.down, y, training) : y)) as tf.Tensor4D;
    }
    return tf.add(tf.matMul(tf.mean(y, [1, 2]) as tf.Tensor2D, this.fcW), this.fcB);
  }
}

/** A step function for the timing loop: inference or a training step on a random batch. */
export function tfStep(batch: number, size: number, classes: number, train: boolean): { step: () => Promise<void>; dispose: () => void } {
  const model = new TfResNet18(classes);
  const x = tf.randomNormal([batch, size, size, 3], 0, 1, 'float32', 2) as tf.Tensor4D;
  const labels = tf.oneHot(tf.tensor1d(Array.from({ length: batch }, (_, i) => (i * 7) % classes), 'int32'), classes);
  const opt = tf.train.momentum(1e-4, 0.9);
  const step = train
    ? async () => {
        const loss = opt.minimize(() => tf.losses.softmaxCrossEntropy(labels, model.forward(x, true)) as tf.Scalar, true);
        await loss!.data();
        loss!.dispose();
      }
    : async () => {
        const y = tf.tidy(() => model.forward(x, false));
        await y.data();
        y.dispose();
      };
  return { step, dispose: () => tf.disposeVariables() };
}

export const tfVersion = tf.version.tfjs;
