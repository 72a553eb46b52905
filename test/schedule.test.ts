// Learning-rate schedules against torch.optim.lr_scheduler (OneCycleLR, CosineAnnealingLR,
// MultiStepLR) stepped the way a training loop steps them, for two parameter groups with
// discriminative base rates; and fastai's even_mults spread.
import { describe, expect, it } from 'vitest';
import { discriminativeLrs, makeSchedule, type ScheduleName } from '../src/train/schedule.ts';
import { relError } from './helpers.ts';
import { torchRun } from './torch.ts';

const BASES = [1e-3 * 0.1, 1e-3];

/** torch's per-step rates of both groups and group 0's momentum, stepped `total` times. */
function torchSchedule(scheduler: string, total: number): string {
  return `
p = nn.Parameter(torch.zeros(1)); q = nn.Parameter(torch.zeros(1))
opt = torch.optim.SGD([{'params': [p], 'lr': ${BASES[0]}}, {'params': [q], 'lr': ${BASES[1]}}], lr=1, momentum=0.9)
sched = ${scheduler}
lrs = []; moms = []
for i in range(${total}):
    lrs.append([g['lr'] for g in opt.param_groups]); moms.append(opt.param_groups[0]['momentum'])
    opt.step(); sched.step()
moms = torch.tensor(moms, dtype=torch.float64)
`;
}

const CASES: { name: ScheduleName; total: number; torch: string }[] = [
  { name: 'onecycle', total: 100, torch: `torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=${JSON.stringify(BASES)}, total_steps=100, pct_start=0.25, div_factor=25, final_div_factor=4000, base_momentum=0.85, max_momentum=0.95)` },
  { name: 'onecycle', total: 37, torch: `torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=${JSON.stringify(BASES)}, total_steps=37, pct_start=0.25, div_factor=25, final_div_factor=4000, base_momentum=0.85, max_momentum=0.95)` },
  { name: 'cosine', total: 50, torch: 'torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=50)' },
  { name: 'step', total: 50, torch: 'torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[25, 37], gamma=0.1)' },
  { name: 'constant', total: 9, torch: 'torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)' },
];

const results = await torchRun(
  CASES.map((c) => ({ inputs: {}, prelude: torchSchedule(c.torch, c.total), expr: 'torch.tensor(lrs, dtype=torch.float64)', outputs: ['moms'] })),
);

describe('schedules match torch.optim.lr_scheduler', () => {

  CASES.forEach((c, k) => {
    it(`${c.name} over ${c.total} steps: both groups' rates and the momentum`, () => {
      const s = makeSchedule(c.name, c.total);
      const ours: number[] = [];
      const moms: number[] = [];
      for (let t = 0; t < c.total; t++) {
        ours.push(...BASES.map((b) => b * s.lrFactor(t)));
        moms.push(s.momentum(t, 0.9));
      }
      expect(results[k].shape).toEqual([c.total, 2]);
      expect(relError(ours, results[k].out)).toBeLessThan(1e-9);
      expect(relError(moms, results[k].extra.moms)).toBeLessThan(1e-9);
    });
  });

  it('one-cycle starts at lr/25, peaks at lr after 25% of the steps, ends at lr/1e5', () => {
    const s = makeSchedule('onecycle', 100);
    expect(s.lrFactor(0)).toBeCloseTo(1 / 25, 12);
    expect(s.lrFactor(24)).toBeCloseTo(1, 12);
    expect(s.lrFactor(99)).toBeCloseTo(1e-5, 12);
    expect(s.momentum(24, 0.9)).toBeCloseTo(0.85, 12);
  });

  it('a one-step schedule is defined (no 0/0)', () => {
    for (const name of ['onecycle', 'cosine', 'step', 'constant'] as const) expect(Number.isFinite(makeSchedule(name, 1).lrFactor(0))).toBe(true);
    expect(() => makeSchedule('onecycle', 0)).toThrow(/at least one step/);
  });
});

describe('discriminative rates (fastai slice / even_mults)', () => {
  it('head gets lr, stem lr*mult, geometric between', () => {
    const lrs = discriminativeLrs(1e-2, 0.01, 3);
    expect(lrs[2]).toBe(1e-2);
    expect(lrs[0]).toBeCloseTo(1e-4, 15);
    expect(lrs[1]).toBeCloseTo(1e-3, 15);
    expect(discriminativeLrs(0.1, 0.5, 1)).toEqual([0.1]);
  });
});
