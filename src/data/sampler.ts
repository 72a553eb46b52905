// Which training samples an epoch visits, for data sets whose classes are not the same size:
// torch's WeightedRandomSampler(weights, num_samples = n, replacement = True), with the weights
// that make every class equally likely (1 / the size of the sample's class), so a batch holds
// each class about equally often whatever the folder's counts.
import type { Rng } from '../tensor/random.ts';

/** A weight per sample that makes every class equally likely: 1 / (count of its class). */
export function balancedWeights(labels: readonly number[]): number[] {
  const counts = new Map<number, number>();
  for (const l of labels) counts.set(l, (counts.get(l) ?? 0) + 1);
  return labels.map((l) => 1 / counts.get(l)!);
}

/** `n` sample indices drawn with replacement, index i with probability weights[i] / sum(weights). */
export function weightedDraws(weights: readonly number[], n: number, rng: Rng): number[] {
  const cumulative: number[] = [];
  let total = 0;
  for (const w of weights) {
    if (!(w >= 0 && Number.isFinite(w))) throw new Error(`weightedDraws: weight ${w} is not a finite number >= 0`);
    cumulative.push((total += w));
  }
  if (!(total > 0)) throw new Error('weightedDraws: the weights sum to 0');
  return Array.from({ length: n }, () => {
    // the first index whose cumulative weight exceeds the draw (binary search)
    const u = rng.next() * total;
    let lo = 0;
    let hi = cumulative.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cumulative[mid] > u) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  });
}
