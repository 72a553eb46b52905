// Interpretation, as fastai's ClassificationInterpretation: the top losses of an evaluation, and
// Grad-CAM (Selvaraju et al.): where in the image the evidence for a class lies, computed with the
// engine's own backward. For the feature maps A [C, H, W] of the last convolutional layer and the
// class score y_c (a logit):
//   alpha_k = mean over (i, j) of dy_c / dA_k,ij     (the gradient, averaged over the map)
//   cam     = relu(sum_k alpha_k A_k)               [H, W], scaled to [0, 1] by its maximum
// The network is cut there (Network.featureMaps): the body runs without a tape, its output becomes a
// leaf that requires a gradient, the tail runs on the tape, and backward from the class's one-hot
// row gives dy_c / dA; the weights are frozen for that pass, so no weight gradient is computed.
import type { Classifier } from '../onnx/classifier.ts';
import { noGrad, Tensor, tidy } from '../tensor/index.ts';
import { softmaxRow } from './inference.ts';

export interface TopLoss {
  file: string;
  actual: number;
  predicted: number;
  /** the predicted class's probability */
  probability: number;
  /** cross-entropy against the actual class, -log p(actual) */
  loss: number;
}

/**
 * The `n` most confidently wrong predictions, the highest loss first (fastai's top_losses, the
 * misclassified ones): for a wrong prediction the loss grows with the confidence in it.
 */
export function topLosses(results: readonly { file: string; logits: Float32Array; label: number }[], n: number): TopLoss[] {
  return results
    .map((r) => {
      const probs = softmaxRow(r.logits);
      const predicted = probs.indexOf(Math.max(...probs));
      return { file: r.file, actual: r.label, predicted, probability: probs[predicted], loss: -Math.log(Math.max(probs[r.label], Number.MIN_VALUE)) };
    })
    .filter((x) => x.predicted !== x.actual)
    .sort((a, b) => b.loss - a.loss)
    .slice(0, n);
}

export interface GradCam {
  /** [h, w], in [0, 1] */
  map: Float32Array;
  h: number;
  w: number;
  /** the class explained */
  classIndex: number;
  /** the class probabilities of the image */
  probs: Float64Array;
  /** the layer whose feature maps were used */
  layer: string;
}

/**
 * Grad-CAM of each image (x: [3, size, size] each, preprocessed) for its class in `classes`
 * (default: the predicted one).
 */
export async function gradCams(c: Classifier, images: Float32Array[], size: number, classes?: (number | undefined)[]): Promise<GradCam[]> {
  c.model.eval();
  const split = c.model.featureMaps();
  const params = c.model.parameters();
  const trainable = params.map((t) => t.requiresGrad);
  for (const t of params) t.requiresGrad = false;
  try {
    const out: GradCam[] = [];
    for (const [n, x] of images.entries()) {
      // the feature maps and the class scores, without a tape
      const first = noGrad(() =>
        tidy(() => {
          const maps = split.body(Tensor.from(x, [1, 3, size, size]));
          return { shape: [...maps.shape], maps: maps.toArray(), scores: split.tail(maps).toArray() };
        }),
      );
      const { shape } = first;
      if (shape.length !== 4) throw new Error(`Grad-CAM: the feature maps at '${split.layer}' are [${shape}], not [N, C, H, W]`);
      const [, C, h, w] = shape;
      const [data, scores] = await Promise.all([first.maps, first.scores]);
      const probs = softmaxRow(scores);
      const classIndex = classes?.[n] ?? probs.indexOf(Math.max(...probs));
      // dy_c / dA: the maps as a leaf, the tail on the tape, backward from the class's one-hot row
      const grad = await tidy(() => {
        const leaf = Tensor.from(data, shape);
        leaf.requiresGrad = true;
        const logits = split.tail(leaf);
        const onehot = new Float32Array(logits.size);
        onehot[classIndex] = 1;
        logits.backward(Tensor.from(onehot, logits.shape));
        return leaf.grad!.toArray();
      });
      const plane = h * w;
      const map = new Float32Array(plane);
      for (let k = 0; k < C; k++) {
        let alpha = 0;
        for (let i = 0; i < plane; i++) alpha += grad[k * plane + i];
        alpha /= plane;
        for (let i = 0; i < plane; i++) map[i] += alpha * data[k * plane + i];
      }
      let max = 0;
      for (let i = 0; i < plane; i++) max = Math.max(max, (map[i] = Math.max(0, map[i])));
      if (max > 0) for (let i = 0; i < plane; i++) map[i] /= max;
      out.push({ map, h, w, classIndex, probs, layer: split.layer });
    }
    return out;
  } finally {
    params.forEach((t, i) => (t.requiresGrad = trainable[i]));
  }
}
