import { describe, expect, it } from 'vitest';
import { Adam, AdamW, type AdamOptions, type AdamParamGroup } from '../src/optim/adam.ts';
import { setParameterBindingLimit, type Optimizer } from '../src/optim/optimizer.ts';
import { SGD } from '../src/optim/sgd.ts';
import { adamRef } from '../src/reference/adam.ts';
import { getGpu } from '../src/gpu/index.ts';
import { keep, OpError, Rng, Tensor, tidy } from '../src/tensor/index.ts';
import { randomArray, relError, toGpu, useGpu } from './helpers.ts';
import { torchRun } from './torch.ts';

useGpu();

const STEPS = 5;
const KINDS = { Adam, AdamW } as const;

/** Sets each parameter's .grad to grads[i][k] (none where skip says so) and steps, for each step k. */
function runSteps(opt: Optimizer, params: Tensor[], grads: Float64Array[][], steps: number[], skip?: (k: number, i: number) => boolean, lrs?: number[]): void {
  for (const k of steps) {
    opt.zeroGrad();
    params.forEach((p, i) => {
      if (!skip?.(k, i)) p.grad = keep(toGpu(grads[i][k], p.shape));
    });
    if (lrs) opt.groups[0].lr = lrs[k];
    opt.step();
  }
  opt.zeroGrad();
}

describe('Adam and AdamW', () => {
  // 7 elements take the scalar kernel, [3, 4] the vec4 one
  for (const [kind, Opt] of Object.entries(KINDS)) {
    for (const o of [{ lr: 0.01 }, { lr: 0.003, betas: [0.8, 0.95] as [number, number], eps: 1e-6, weightDecay: 0.1 }]) {
      it(`${kind} ${JSON.stringify(o)} over ${STEPS} steps vs the float64 rule`, async () => {
        for (const shape of [[7], [3, 4]]) {
          const rng = new Rng(shape.length * 7 + Object.keys(o).length);
          const w0 = randomArray(shape, rng);
          const grads = Array.from({ length: STEPS }, () => randomArray(shape, rng));
          const [w, state] = await tidy(async () => {
            const w = toGpu(w0, shape, true);
            const opt = new Opt([w], o);
            runSteps(opt, [w], [grads], [0, 1, 2, 3, 4]);
            const result = [await w.toArray(), await opt.state()] as const;
            opt.release();
            return result;
          });
          const defaults = { betas: [0.9, 0.999] as [number, number], eps: 1e-8, weightDecay: kind === 'AdamW' ? 1e-2 : 0 };
          const ref = adamRef(w0, grads, { ...defaults, ...o, decoupled: kind === 'AdamW' });
          expect(relError(w, ref.param)).toBeLessThan(1e-6);
          expect(relError(state.buffers.expAvg[0]!, ref.m)).toBeLessThan(1e-6);
          expect(relError(state.buffers.expAvgSq[0]!, ref.v)).toBeLessThan(1e-6);
          expect(state.steps).toEqual([STEPS]);
        }
      });
    }
  }

  it('AdamW over 13 parameters (more than a launch holds, mixed lengths, one starting a step late) vs the float64 rule, in few launches', async () => {
    const shapes = Array.from({ length: 13 }, (_, i) => [[7], [3, 4], [1], [2, 10], [5, 3]][i % 5]);
    const LATE = 2;
    const rng = new Rng(41);
    const w0 = shapes.map((s) => randomArray(s, rng));
    const grads = shapes.map((s) => Array.from({ length: STEPS }, () => randomArray(s, rng)));
    let launches = 0;
    const out = await tidy(async () => {
      const ws = shapes.map((s, i) => toGpu(w0[i], s, true));
      const opt = new AdamW(ws, { lr: 0.01 });
      runSteps(opt, ws, grads, [0, 1, 2, 3], (k, i) => k === 0 && i === LATE);
      ws.forEach((w, i) => (w.grad = keep(toGpu(grads[i][4], w.shape))));
      const before = getGpu().dispatchCount;
      opt.step(); // the late parameter is a step behind: its own launch
      launches = getGpu().dispatchCount - before;
      const values = await Promise.all(ws.map((w) => w.toArray()));
      opt.release();
      return values;
    });
    shapes.forEach((_, i) => {
      const ref = adamRef(w0[i], grads[i].slice(i === LATE ? 1 : 0), { lr: 0.01, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2, decoupled: true });
      expect(relError(out[i], ref.param), `parameter ${i}`).toBeLessThan(1e-6);
    });
    // per step count (2), per kind (vec4 or not), batches as large as the storage bindings allow
    const per = Math.min(getGpu().isCpu ? 2 : 16, Math.floor(getGpu().limits.maxStorageBuffersPerShaderStage / 4));
    const batches = (n: number) => Math.ceil(n / per);
    const vec4 = (i: number) => shapes[i].reduce((a, b) => a * b) % 4 === 0;
    const onTime = shapes.map((_, i) => i).filter((i) => i !== LATE);
    expect(launches).toBe(batches(onTime.filter(vec4).length) + batches(onTime.filter((i) => !vec4(i)).length) + 1);
  });

  it('AdamW on parameters larger than one storage binding, in pieces, vs the float64 rule', async () => {
    // a 256-byte binding holds 64 floats: 1001 elements (scalar kernel) and [40, 25] (vec4) take 16
    // pieces each, the gradient and both moments bound at the same offsets
    const shapes = [[1001], [40, 25]];
    const rng = new Rng(43);
    const w0 = shapes.map((s) => randomArray(s, rng));
    const grads = shapes.map((s) => Array.from({ length: STEPS }, () => randomArray(s, rng)));
    const o = { lr: 0.01, weightDecay: 0.1 };
    setParameterBindingLimit(256);
    const [out, state] = await tidy(async () => {
      const ws = shapes.map((s, i) => toGpu(w0[i], s, true));
      const opt = new AdamW(ws, o);
      try {
        runSteps(opt, ws, grads, [0, 1, 2, 3, 4]);
      } finally {
        setParameterBindingLimit(null);
      }
      const result = [await Promise.all(ws.map((w) => w.toArray())), await opt.state()] as const;
      opt.release();
      return result;
    });
    shapes.forEach((_, i) => {
      const ref = adamRef(w0[i], grads[i], { ...o, betas: [0.9, 0.999], eps: 1e-8, decoupled: true });
      expect(relError(out[i], ref.param), `parameter ${i}`).toBeLessThan(1e-6);
      expect(relError(state.buffers.expAvg[i]!, ref.m), `parameter ${i}`).toBeLessThan(1e-6);
      expect(relError(state.buffers.expAvgSq[i]!, ref.v), `parameter ${i}`).toBeLessThan(1e-6);
    });
  });

  it('state() and loadState() resume exactly, step counts included', async () => {
    const rng = new Rng(9);
    const shapes = [[6], [5]];
    const w0 = shapes.map((s) => randomArray(s, rng));
    const grads = shapes.map((s) => Array.from({ length: STEPS }, () => randomArray(s, rng)));
    // the second parameter has no gradient at the first two steps: it counts fewer steps
    const skip = (k: number, i: number) => i === 1 && k < 2;
    const [resumed, straight] = await tidy(async () => {
      const a = shapes.map((s, i) => toGpu(w0[i], s, true));
      const b = shapes.map((s, i) => toGpu(w0[i], s, true));
      const first = new AdamW(a, { lr: 0.02, weightDecay: 0.05 });
      const twin = new AdamW(b, { lr: 0.02, weightDecay: 0.05 });
      runSteps(first, a, grads, [0, 1, 2], skip);
      runSteps(twin, b, grads, [0, 1, 2, 3, 4], skip);
      const saved = await first.state();
      expect(saved.steps).toEqual([3, 1]);
      first.release();
      const second = new AdamW(a, { lr: 0.02, weightDecay: 0.05 });
      second.loadState(saved);
      runSteps(second, a, grads, [3, 4], skip);
      const out = [await Promise.all(a.map((t) => t.toArray())), await Promise.all(b.map((t) => t.toArray()))];
      second.release();
      twin.release();
      return out;
    });
    resumed.forEach((r, i) => expect(r).toEqual(straight[i]));
  });

  it('SGD, Adam and AdamW share the Optimizer interface: a loop written once drives each', async () => {
    const make: ((ps: Tensor[]) => Optimizer)[] = [(ps) => new SGD(ps, { lr: 0.1, momentum: 0.9 }), (ps) => new Adam(ps, { lr: 0.1 }), (ps) => new AdamW(ps, { lr: 0.1 })];
    for (const f of make) {
      // minimise sum((w - 1)^2) from 0: every optimizer moves w toward 1
      const w = await tidy(async () => {
        const w = Tensor.zeros([4]);
        w.requiresGrad = true;
        const opt = f([w]);
        for (let k = 0; k < 20; k++) {
          const g = await w.toArray();
          opt.zeroGrad();
          w.grad = keep(Tensor.from(g.map((v) => 2 * (v - 1)), [4]));
          opt.groups[0].lr *= 0.95; // a schedule sets the rate
          opt.step();
        }
        opt.zeroGrad();
        opt.release();
        return w.toArray();
      });
      for (const v of w) expect(Math.abs(v - 1)).toBeLessThan(0.6);
    }
  });

  it('rejects bad settings and states', () => {
    tidy(() => {
      const w = Tensor.zeros([3]);
      expect(() => new Adam([w], { lr: -1 })).toThrow(OpError);
      expect(() => new AdamW([w], { lr: 0.1, betas: [1, 0.999] })).toThrow('AdamW: group 0: invalid beta parameter at index 0: 1');
      expect(() => new Adam([{ params: [w], name: 'head', eps: -1 }], { lr: 0.1 })).toThrow("Adam: group 0 'head': invalid epsilon -1");
      expect(() => new Adam([{ params: [w] }, { params: [w] }], { lr: 0.1 })).toThrow(/more than one parameter group/);
      const opt = new Adam([w], { lr: 0.1 });
      expect(() => opt.loadState({ buffers: { expAvg: [null] }, steps: [0] })).toThrow('Adam.loadState: no expAvgSq buffers for 1 parameters');
      expect(() => opt.loadState({ buffers: { expAvg: [null], expAvgSq: [new Float32Array(2)] }, steps: [1] })).toThrow(/Adam.loadState: expAvgSq buffer 0 holds 2 values, for tensor #\d+ \[3\]/);
    });
  });

  it('matches torch.optim.Adam and AdamW over several steps with several groups, a changing rate and a late-starting parameter', async () => {
    const rng = new Rng(31);
    const shapes = [[3, 4], [7], [5]];
    const w0 = shapes.map((s) => randomArray(s, rng));
    const grads = shapes.map((s) => Array.from({ length: STEPS }, () => randomArray(s, rng)));
    const lrs = [0.01, 0.008, 0.006, 0.004, 0.002]; // group 0's rate per step
    const skip = (k: number, i: number) => i === 2 && k < 2; // the third parameter is frozen for two steps
    const groups = (ps: string[]) => `[{'params': [${ps[0]}, ${ps[1]}], 'weight_decay': 0.05}, {'params': [${ps[2]}], 'lr': 0.02, 'betas': (0.8, 0.99), 'eps': 1e-6}]`;
    const settings = { lr: 0.01, weightDecay: 0.01 };
    const ref = await torchRun((['Adam', 'AdamW'] as const).map((kind) => ({
      inputs: Object.fromEntries([
        ...shapes.map((s, i) => [`p${i}`, { shape: s, data: w0[i] }]),
        ...shapes.map((s, i) => [`g${i}`, { shape: [STEPS, ...s], data: grads[i].flatMap((g) => Array.from(g)) }]),
      ]),
      prelude: [
        'ps = [nn.Parameter(p.clone()) for p in (p0, p1, p2)]',
        `opt = torch.optim.${kind}(${groups(['ps[0]', 'ps[1]', 'ps[2]'])}, lr=${settings.lr}, weight_decay=${settings.weightDecay})`,
        `for k in range(${STEPS}):`,
        `    for i, (p, g) in enumerate(zip(ps, (g0, g1, g2))):`,
        `        p.grad = None if (i == 2 and k < 2) else g[k].clone()`,
        `    opt.param_groups[0]['lr'] = ${JSON.stringify(lrs)}[k]`,
        '    opt.step()',
        "m = torch.cat([opt.state[p]['exp_avg'].reshape(-1) for p in ps])",
        "steps = torch.tensor([float(opt.state[p]['step']) for p in ps])",
      ].join('\n'),
      expr: 'torch.cat([p.detach().reshape(-1) for p in ps])',
      outputs: ['m', 'steps'],
      dtype: 'float32' as const,
    })));
    for (const [i, kind] of (['Adam', 'AdamW'] as const).entries()) {
      const got = await tidy(async () => {
        const ps = shapes.map((s, k) => toGpu(w0[k], s, true));
        const paramGroups: AdamParamGroup[] = [{ params: [ps[0], ps[1]], weightDecay: 0.05 }, { params: [ps[2]], lr: 0.02, betas: [0.8, 0.99], eps: 1e-6 }];
        const opt = new KINDS[kind](paramGroups, settings as AdamOptions);
        runSteps(opt, ps, grads, [0, 1, 2, 3, 4], skip, lrs);
        const state = await opt.state();
        const out = { w: (await Promise.all(ps.map((p) => p.toArray()))).flatMap((a) => [...a]), m: state.buffers.expAvg.flatMap((a) => [...a!]), steps: state.steps };
        opt.release();
        return out;
      });
      expect(relError(got.w, ref[i].out), kind).toBeLessThan(2e-6);
      expect(relError(got.m, ref[i].extra.m), `${kind} exp_avg`).toBeLessThan(2e-6);
      expect(got.steps, `${kind} steps`).toEqual(ref[i].extra.steps);
    }
  });
});
