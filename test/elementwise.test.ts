import { describe, expect, it } from 'vitest';
import { ELEMENTWISE, elementwise, type ElementwiseName } from '../src/ops/index.ts';
import { Rng } from '../src/tensor/index.ts';
import { numericGrads, randomArray, relError, runWithGrads, useGpu } from './helpers.ts';

useGpu();

// float64 reference of each table row
const reference: Record<ElementwiseName, (xs: Float64Array[], alpha: number, beta: number) => Float64Array> = {
  relu: ([x]) => x.map((v) => Math.max(v, 0)),
  leakyRelu: ([x], a) => x.map((v) => (v > 0 ? v : a * v)),
  scale: ([x], a) => x.map((v) => a * v),
  shift: ([x], a) => x.map((v) => v + a),
  add: ([a, b]) => a.map((v, i) => v + b[i]),
  sub: ([a, b]) => a.map((v, i) => v - b[i]),
  mul: ([a, b]) => a.map((v, i) => v * b[i]),
  clip: ([x], a, b) => x.map((v) => Math.min(Math.max(v, a), b)),
};

describe('elementwise table', () => {
  // 1 and 35 are not multiples of 4 (scalar path), 2*3*4*4 is (vec4 path)
  const shapes = [[1], [5, 7], [2, 3, 4, 4]];
  for (const name of Object.keys(ELEMENTWISE) as ElementwiseName[]) {
    for (const shape of shapes) {
      it(`${name} ${JSON.stringify(shape)} forward and backward`, async () => {
        const rng = new Rng(shape.length * 97 + name.length);
        const arity = ELEMENTWISE[name].inputs.length;
        const alpha = 0.3;
        const beta = 0.6;
        const inputs = Array.from({ length: arity }, () => randomArray(shape, rng));
        const dy = randomArray(shape, rng);
        const { out, grads } = await runWithGrads(
          (ts) => elementwise(name, ts, alpha, beta),
          inputs.map((data) => ({ data, shape })),
          dy,
        );
        expect(relError(out, reference[name](inputs, alpha, beta))).toBeLessThan(1e-6);
        const numeric = numericGrads((xs) => reference[name](xs, alpha, beta), inputs, dy);
        grads.forEach((g, i) => expect(relError(g!, numeric[i])).toBeLessThan(1e-4));
      });
    }
  }
});
