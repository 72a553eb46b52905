// Float64 reference of dropout (torch.nn.functional.dropout): element i of x is kept with
// probability 1 - p, and then scaled by 1/(1-p), where "kept" is the shader's hash of (seed, i) in
// 32-bit integer arithmetic: pcg(pcg(i) ^ pcg(seed)) below (1-p) * 2^24 in its top 24 bits.
// In eval mode dropout is the identity.

/** PCG's output permutation of one 32-bit state (the shader's hash) */
function pcg(v: number): number {
  const state = (Math.imul(v, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/** whether element i survives dropout with probability p and mask seed `seed` */
export function keptRef(i: number, p: number, seed: number): boolean {
  const h = pcg((pcg(i) ^ pcg(seed >>> 0)) >>> 0);
  return h >>> 8 < Math.round((1 - p) * 2 ** 24);
}

export function dropoutRef(x: Float64Array, p: number, training: boolean, seed: number): Float64Array {
  if (!training || p === 0) return x.slice();
  return x.map((v, i) => (keptRef(i, p, seed) ? v / (1 - p) : 0));
}
