/** max |actual - expected| / max |expected|, the relative error gpunet's checks use: Infinity
 *  when the lengths differ or an actual value is NaN or infinite (an unwritten, NaN-poisoned
 *  element fails every comparison). */
export function relError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) return Infinity;
  let num = 0;
  let den = 0;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    if (!Number.isFinite(actual[i]) || Number.isNaN(d)) return Infinity;
    num = Math.max(num, d);
    den = Math.max(den, Math.abs(expected[i]));
  }
  return num / Math.max(den, 1e-12);
}
