// Float64 references of the elementwise table (src/ops/elementwise.ts): each row as a function of
// one element of each input (and the row's scalars alpha, beta), with torch's semantics, and numpy
// broadcasting of inputs of different shapes to their common shape.

/** erf(x) to ~1e-15: its Maclaurin series for |x| < 3, else the continued fraction of erfc. */
export function erfRef(x: number): number {
  const a = Math.abs(x);
  if (a < 3) {
    // erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))
    let term = a;
    let sum = a;
    for (let n = 1; n < 100 && Math.abs(term) > 1e-17 * Math.abs(sum); n++) {
      term *= (-a * a) / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc(a) = exp(-a^2)/sqrt(pi) * 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + 2/(a + ...))))), evaluated from the tail
  let f = a;
  for (let k = 60; k >= 1; k--) f = a + k / 2 / f;
  return Math.sign(x) * (1 - Math.exp(-a * a) / Math.sqrt(Math.PI) / f);
}

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
const geluTanhInner = (v: number) => Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3);

export const ELEMENTWISE_REF: Record<string, (v: number[], alpha: number, beta: number) => number> = {
  relu: ([x]) => Math.max(x, 0),
  leakyRelu: ([x], a) => (x > 0 ? x : a * x),
  scale: ([x], a) => a * x,
  clip: ([x], a, b) => Math.min(Math.max(x, a), b),
  sigmoid: ([x]) => sigmoid(x),
  tanh: ([x]) => Math.tanh(x),
  hardSigmoid: ([x], a, b) => Math.min(Math.max(a * x + b, 0), 1),
  hardSwish: ([x]) => (x * Math.min(Math.max(x + 3, 0), 6)) / 6,
  silu: ([x]) => x * sigmoid(x),
  gelu: ([x]) => 0.5 * x * (1 + erfRef(x / Math.SQRT2)),
  geluTanh: ([x]) => 0.5 * x * (1 + Math.tanh(geluTanhInner(x))),
  erf: ([x]) => erfRef(x),
  exp: ([x]) => Math.exp(x),
  log: ([x]) => Math.log(x),
  sqrt: ([x]) => Math.sqrt(x),
  neg: ([x]) => -x,
  abs: ([x]) => Math.abs(x),
  reciprocal: ([x]) => 1 / x,
  add: ([a, b]) => a + b,
  sub: ([a, b]) => a - b,
  mul: ([a, b]) => a * b,
  div: ([a, b]) => a / b,
  pow: ([a, b]) => Math.pow(a, b), // torch.pow's rules: negative bases take integer exponents
  maximum: ([a, b]) => Math.max(a, b),
  minimum: ([a, b]) => Math.min(a, b),
  where: ([c, a, b]) => (c !== 0 ? a : b),
};

/** The numpy broadcast of `shapes`. */
export function broadcastShapeRef(shapes: readonly (readonly number[])[]): number[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  return Array.from({ length: rank }, (_, d) => Math.max(...shapes.map((s) => s[d - (rank - s.length)] ?? 1)));
}

/** Row `f` over inputs broadcast to their common shape: out[i] = f(inputs at i). */
export function elementwiseRef(f: (v: number[]) => number, inputs: readonly Float64Array[], shapes: readonly (readonly number[])[]): Float64Array {
  const out = broadcastShapeRef(shapes);
  const n = out.reduce((a, b) => a * b, 1);
  const y = new Float64Array(n);
  const digits = new Array(out.length).fill(0);
  for (let i = 0; i < n; i++) {
    const v = inputs.map((x, k) => {
      const s = shapes[k];
      let j = 0;
      for (let d = 0; d < s.length; d++) j = j * s[d] + (s[d] === 1 ? 0 : digits[d + out.length - s.length]);
      return x[j];
    });
    y[i] = f(v);
    for (let d = out.length - 1; d >= 0; d--) {
      if (++digits[d] < out[d]) break;
      digits[d] = 0;
    }
  }
  return y;
}
