import { describe, expect, it } from 'vitest';
import { setParameterBindingLimit } from '../src/optim/optimizer.ts';
import { SGD, type SGDOptions } from '../src/optim/sgd.ts';
import { getGpu } from '../src/gpu/index.ts';
import { keep, OpError, Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { dispatchesOf, randomArray, relError, toGpu, useGpu } from './helpers.ts';
import { sgdRef, type SgdRefOptions } from '../src/reference/sgd.ts';
import { torchRun, type TorchCase } from './torch.ts';

useGpu();

const STEPS = 4;

// every combination of momentum 0/0.9, dampening 0/0.1, weight decay 0/1e-4, nesterov off/on;
// nesterov needs momentum and no dampening (torch refuses the rest, and so do we)
const COMBOS: SgdRefOptions[] = [];
for (const momentum of [0, 0.9]) {
  for (const dampening of [0, 0.1]) {
    for (const weightDecay of [0, 1e-4]) {
      for (const nesterov of [false, true]) COMBOS.push({ lr: 0.1, momentum, dampening, weightDecay, nesterov });
    }
  }
}
const valid = (o: SgdRefOptions): boolean => !o.nesterov || (o.momentum > 0 && o.dampening === 0);
const comboName = (o: SgdRefOptions): string => `momentum=${o.momentum} dampening=${o.dampening} wd=${o.weightDecay} nesterov=${o.nesterov}`;

interface Problem {
  param: Float64Array;
  grads: Float64Array[];
  shape: number[];
}

// 7 elements take the scalar kernel, 12 the vec4 one
function problem(seed: number, shape: number[]): Problem {
  const rng = new Rng(seed);
  return { param: randomArray(shape, rng), grads: Array.from({ length: STEPS }, () => randomArray(shape, rng)), shape };
}

/** Sets .grad to grads[k] and steps, for each k; returns the final parameter values. */
async function runSteps(p: Problem, opts: SGDOptions): Promise<Float32Array> {
  return tidy(async () => {
    const w = toGpu(p.param, p.shape, true);
    const opt = new SGD([w], opts);
    for (const g of p.grads) {
      opt.zeroGrad();
      w.grad = keep(toGpu(g, p.shape));
      opt.step();
    }
    opt.zeroGrad();
    const out = await w.toArray();
    const { buffers } = await opt.state();
    expect(buffers.momentum[0] === null).toBe(!opts.momentum);
    opt.release();
    return out;
  });
}

describe('SGD', () => {
  COMBOS.forEach((o, i) => {
    it(`${STEPS} steps match the torch rule, ${comboName(o)}`, async () => {
      if (!valid(o)) {
        expect(() => new SGD([Tensor.zeros([1])], o)).toThrow(/SGD: group 0: Nesterov momentum requires a momentum and zero dampening/);
        return;
      }
      const p = problem(i, i % 2 ? [7] : [3, 4]);
      const out = await runSteps(p, o);
      expect(relError(out, sgdRef(p.param, p.grads, o).param)).toBeLessThan(1e-6);
    });
  });

  it('a parameter of 70001 elements (several per invocation) matches the torch rule', async () => {
    const o = { lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 1e-4, nesterov: true };
    const p = problem(77, [70001]);
    expect(relError(await runSteps(p, o), sgdRef(p.param, p.grads, o).param)).toBeLessThan(1e-6);
  });

  it('parameters larger than one storage binding are updated in pieces and match the torch rule', async () => {
    // a 256-byte binding holds 64 floats (offsets aligned to 16 bytes, or to 256 elsewhere): 1001
    // elements (scalar kernel) and [40, 25] (vec4) take 16 pieces each, their gradients and
    // momentum buffers bound at the same offsets
    const o = { lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 1e-4, nesterov: true };
    const per = Math.min(getGpu().isCpu ? 2 : 16, Math.floor(getGpu().limits.maxStorageBuffersPerShaderStage / 3));
    for (const shape of [[1001], [40, 25]]) {
      const p = problem(shape.length, shape);
      setParameterBindingLimit(256);
      const { result: out, dispatches: launches, largest } = await dispatchesOf('sgd', () => runSteps(p, o)).finally(() => setParameterBindingLimit(null));
      expect(largest, JSON.stringify(shape)).toBe(256);
      expect(launches, JSON.stringify(shape)).toBe(STEPS * Math.ceil(16 / per));
      expect(relError(out, sgdRef(p.param, p.grads, o).param), JSON.stringify(shape)).toBeLessThan(1e-6);
    }
  });

  it('param groups: own lr and momentum, defaults elsewhere; grad null or requiresGrad false untouched', async () => {
    const [a, b, c, d] = [problem(1, [5]), problem(2, [8]), problem(3, [4]), problem(4, [4])];
    const defaults = { lr: 0.5, momentum: 0.9 };
    const res = await tidy(async () => {
      const [wa, wb, wc, wd] = [a, b, c, d].map((x) => toGpu(x.param, x.shape, true));
      wd.requiresGrad = false;
      const opt = new SGD([{ params: [wa], lr: 0.1 }, { params: [wb, wc, wd], lr: 0.01, momentum: 0, name: 'second' }], defaults);
      expect(opt.groups.map((g) => [g.lr, g.momentum, g.name])).toEqual([[0.1, 0.9, undefined], [0.01, 0, 'second']]);
      for (let k = 0; k < STEPS; k++) {
        opt.zeroGrad();
        wa.grad = keep(toGpu(a.grads[k], a.shape));
        wb.grad = keep(toGpu(b.grads[k], b.shape));
        wd.grad = keep(toGpu(d.grads[k], d.shape)); // set, but the tensor does not require grad
        if (k === 2) opt.groups[1].lr = 0.02; // a schedule changes the rate between steps
        opt.step();
      }
      expect(wc.grad).toBeNull();
      opt.zeroGrad();
      expect(wa.grad).toBeNull();
      return Promise.all([wa, wb, wc, wd].map((t) => t.toArray()));
    });
    expect(relError(res[0], sgdRef(a.param, a.grads, { lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false }).param)).toBeLessThan(1e-6);
    const bOpts = { lr: 0.01, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false };
    const bFirst = sgdRef(b.param, b.grads.slice(0, 2), bOpts).param;
    expect(relError(res[1], sgdRef(bFirst, b.grads.slice(2), { ...bOpts, lr: 0.02 }).param)).toBeLessThan(1e-6);
    expect(res[2]).toEqual(Float32Array.from(c.param));
    expect(res[3]).toEqual(Float32Array.from(d.param));
  });

  it('state() and loadState() resume momentum exactly', async () => {
    const p = problem(9, [6]);
    const opts = { lr: 0.05, momentum: 0.9, dampening: 0.1, weightDecay: 1e-4 };
    const [resumed, straight] = await tidy(async () => {
      const w1 = toGpu(p.param, p.shape, true);
      const w2 = toGpu(p.param, p.shape, true);
      const first = new SGD([w1], opts);
      const twin = new SGD([w2], opts);
      for (const k of [0, 1]) {
        for (const [w, o] of [[w1, first], [w2, twin]] as const) {
          o.zeroGrad();
          w.grad = keep(toGpu(p.grads[k], p.shape));
          o.step();
        }
      }
      const saved = await first.state();
      const second = new SGD([w1], opts);
      second.loadState(saved);
      for (const k of [2, 3]) {
        for (const [w, o] of [[w1, second], [w2, twin]] as const) {
          o.zeroGrad();
          w.grad = keep(toGpu(p.grads[k], p.shape));
          o.step();
        }
      }
      second.zeroGrad();
      twin.zeroGrad();
      return Promise.all([w1.toArray(), w2.toArray()]);
    });
    expect(resumed).toEqual(straight);
    expect(relError(straight, sgdRef(p.param, p.grads, { ...opts, nesterov: false }).param)).toBeLessThan(1e-6);
  });

  it('rejects bad settings and states', () => {
    tidy(() => {
      const w = Tensor.zeros([3]);
      expect(() => new SGD([w], { lr: -1 })).toThrow(OpError);
      expect(() => new SGD([w], { lr: 0.1, momentum: -0.5 })).toThrow(/SGD: group 0: invalid momentum -0.5/);
      expect(() => new SGD([{ params: [w] }, { params: [w] }], { lr: 0.1 })).toThrow(/more than one parameter group/);
      const opt = new SGD([w], { lr: 0.1, momentum: 0.9 });
      expect(() => opt.loadState({ buffers: { momentum: [] }, steps: [0] })).toThrow(/SGD.loadState: 0 momentum buffers for 1 parameters/);
      expect(() => opt.loadState({ buffers: { momentum: [new Float32Array(2)] }, steps: [0] })).toThrow(/SGD.loadState: momentum buffer 0 holds 2 values, for tensor #\d+ \[3\]/);
      expect(() => opt.loadState({ buffers: { momentum: [null], expAvg: [null] }, steps: [0] })).toThrow('SGD.loadState: no buffers named expAvg (SGD keeps momentum)');
      expect(() => opt.loadState({ buffers: { momentum: [null] }, steps: [-1] })).toThrow(/SGD.loadState: expected 1 step counts/);
    });
  });

  // 21 parameters of one group, odd lengths and multiples of 4 (so vec4 and scalar launches), more
  // than one launch holds; parameter 3 gets its first gradient only at the second step, so its
  // momentum buffer is new while the others' are not
  const MANY = Array.from({ length: 21 }, (_, k) => [[7], [3, 4], [1], [2, 2, 5], [9, 3], [16]][k % 6]);
  const LATE = 3;
  async function runMany(opts: SGDOptions, grads: Float64Array[][], params: Float64Array[]): Promise<{ out: Float32Array[]; launches: number }> {
    return tidy(async () => {
      const ws = params.map((v, k) => toGpu(v, MANY[k], true));
      const opt = new SGD(ws, opts);
      let launches = 0;
      for (const [step, gs] of grads.entries()) {
        opt.zeroGrad();
        ws.forEach((w, k) => {
          if (k !== LATE || step > 0) w.grad = keep(toGpu(gs[k], MANY[k]));
        });
        const before = getGpu().dispatchCount;
        opt.step();
        launches = getGpu().dispatchCount - before; // the last step's: no buffer is created (and poisoned) then
      }
      opt.zeroGrad();
      const out = await Promise.all(ws.map((w) => w.toArray()));
      opt.release();
      return { out, launches };
    });
  }
  const manyProblem = (seed: number) => {
    const rng = new Rng(seed);
    const params = MANY.map((s) => randomArray(s, rng));
    return { params, grads: Array.from({ length: STEPS }, () => MANY.map((s) => randomArray(s, rng))) };
  };

  it('many parameters in few launches match the torch rule and torch.optim.SGD', async () => {
    const settings: SGDOptions[] = [
      { lr: 0.1, momentum: 0.9, dampening: 0.1, weightDecay: 1e-4 },
      { lr: 0.05, momentum: 0.9, weightDecay: 1e-4, nesterov: true },
      { lr: 0.1, weightDecay: 1e-4 },
    ];
    const problems = settings.map((_, i) => manyProblem(300 + i));
    const cases: TorchCase[] = settings.map((o, i) => ({
      inputs: Object.fromEntries(
        MANY.flatMap((shape, k) => [
          [`p${k}`, { shape, data: problems[i].params[k] }],
          [`g${k}`, { shape: [STEPS, ...shape], data: problems[i].grads.flatMap((gs) => Array.from(gs[k])) }],
        ]),
      ),
      prelude: [
        `ps = [nn.Parameter(t.clone()) for t in [${MANY.map((_, k) => `p${k}`).join(', ')}]]`,
        `gs = [${MANY.map((_, k) => `g${k}`).join(', ')}]`,
        `opt = torch.optim.SGD(ps, lr=${o.lr}, momentum=${o.momentum ?? 0}, dampening=${o.dampening ?? 0}, weight_decay=${o.weightDecay ?? 0}, nesterov=${o.nesterov ? 'True' : 'False'})`,
        `for s in range(${STEPS}):`,
        '    for k, p in enumerate(ps):',
        `        p.grad = None if (k == ${LATE} and s == 0) else gs[k][s].clone()`,
        '    opt.step()',
      ].join('\n'),
      expr: 'torch.cat([p.detach().flatten() for p in ps])',
      dtype: 'float32',
    }));
    const ref = await torchRun(cases);
    for (const [i, o] of settings.entries()) {
      const { params, grads } = problems[i];
      const { out, launches } = await runMany(o, grads, params);
      // one launch per batch of vec4 parameters and one per batch of the others, batches as large as
      // the adapter's storage bindings allow (at most 16; 2 on a CPU adapter)
      const per = Math.min(getGpu().isCpu ? 2 : 16, Math.floor(getGpu().limits.maxStorageBuffersPerShaderStage / (o.momentum ? 3 : 2)));
      const vec4s = MANY.filter((shape) => shape.reduce((a, b) => a * b) % 4 === 0).length;
      expect(launches).toBe(Math.ceil(vec4s / per) + Math.ceil((MANY.length - vec4s) / per));
      const refOpts = { momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, ...o };
      MANY.forEach((_, k) => {
        const gs = grads.map((g) => g[k]).slice(k === LATE ? 1 : 0);
        expect(relError(out[k], sgdRef(params[k], gs, refOpts).param), `parameter ${k}, ${JSON.stringify(o)}`).toBeLessThan(1e-6);
      });
      expect(relError(Float32Array.from(out.flatMap((a) => Array.from(a))), ref[i].out), JSON.stringify(o)).toBeLessThan(1e-6);
    }
  });

  it('matches torch.optim.SGD', async () => {
    const combos = COMBOS.filter(valid);
    const problems = combos.map((_, i) => problem(100 + i, i % 2 ? [7] : [3, 4]));
    const cases: TorchCase[] = combos.map((o, i) => ({
      inputs: {
        p0: { shape: problems[i].shape, data: problems[i].param },
        gs: { shape: [STEPS, ...problems[i].shape], data: problems[i].grads.flatMap((g) => Array.from(g)) },
      },
      prelude: [
        'p = nn.Parameter(p0.clone())',
        `opt = torch.optim.SGD([p], lr=${o.lr}, momentum=${o.momentum}, dampening=${o.dampening}, weight_decay=${o.weightDecay}, nesterov=${o.nesterov ? 'True' : 'False'})`,
        'for g in gs:',
        '    p.grad = g.clone()',
        '    opt.step()',
      ].join('\n'),
      expr: 'p.detach()',
      dtype: 'float32',
    }));
    const ref = await torchRun(cases);
    for (const [i, o] of combos.entries()) {
      const out = await runSteps(problems[i], o);
      expect(relError(out, ref[i].out), comboName(o)).toBeLessThan(1e-6);
    }
  });
});
