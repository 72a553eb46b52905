// The derivative by its definition: central finite differences, in float64, of any reference
// function. This is what every backward kernel is checked against (tests and `gpunet gradcheck`).
//   dL/dx_i ~ (L(x + h e_i) - L(x - h e_i)) / 2h, with error O(h^2) (and float64 rounding ~ 1e-16/h)
// For an op y = f(inputs) and an incoming gradient dy, L = sum(f(inputs) * dy), so dL/dinput is
// exactly what the op's backward computes from dy.

/**
 * Central finite differences of L(inputs) = sum(f(inputs) * dy) in float64: the gradient of every
 * input in `which` (default all), which the GPU backward with incoming gradient dy must reproduce.
 */
export function numericGrads(
  f: (inputs: Float64Array[]) => Float64Array,
  inputs: Float64Array[],
  dy: Float64Array,
  which: readonly number[] = inputs.map((_, i) => i),
  h = 1e-6,
): Float64Array[] {
  const loss = (xs: Float64Array[]) => {
    const y = f(xs);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += y[i] * dy[i];
    return s;
  };
  return which.map((k) => {
    const g = new Float64Array(inputs[k].length);
    for (let i = 0; i < g.length; i++) {
      const orig = inputs[k][i];
      inputs[k][i] = orig + h;
      const up = loss(inputs);
      inputs[k][i] = orig - h;
      const down = loss(inputs);
      inputs[k][i] = orig;
      g[i] = (up - down) / (2 * h);
    }
    return g;
  });
}
