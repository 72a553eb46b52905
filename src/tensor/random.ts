// Seeded pseudo-random numbers on the CPU (parameter initialisation, test inputs): the same seed
// gives the same numbers on every machine.

/** mulberry32: a small, fast 32-bit generator with a 2^32 period; good enough for init and shuffles. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  /** the generator's state, to save and restore exactly (resume) */
  get seed(): number {
    return this.state;
  }
  set seed(s: number) {
    this.state = s >>> 0;
  }
  /** uniform in [0, 1) */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }
  /** standard normal (Box-Muller) */
  normal(): number {
    const u = 1 - this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  /** integer in [0, n) */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** Fisher-Yates shuffle in place */
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a;
  }
}

let globalRng = new Rng(0);

/** The generator everything uses when given none (gpunet.randn, layer initialisation); seeded 0
 *  at start, so a script is reproducible by default, as torch's default generator is. */
export function defaultRng(): Rng {
  return globalRng;
}

/** Reseeds the default generator (torch.manual_seed). */
export function manualSeed(seed: number): void {
  if (!Number.isInteger(seed)) throw new Error(`manualSeed: the seed must be an integer, got ${seed}`);
  globalRng = new Rng(seed);
}
