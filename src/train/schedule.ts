// Learning-rate (and momentum) schedules, evaluated per step, and fastai's discriminative rates.
// Every schedule is a factor of the base rate, so each parameter group follows the same curve
// from its own base (torch's schedulers do the same with one base rate per group):
//   onecycle  torch.optim.lr_scheduler.OneCycleLR (two phases, cosine annealing): a warm-up from
//             lr/div to lr over pctStart of the steps, then an anneal to lr/divFinal (fastai's
//             fit_one_cycle: div 25, divFinal 1e5, pctStart 0.25); momentum moves the other way,
//             0.95 -> 0.85 -> 0.95, since a high rate with high momentum overshoots
//   cosine    CosineAnnealingLR(T_max = steps, eta_min = 0)
//   step      MultiStepLR(milestones = [50%, 75%] of the steps, gamma = 0.1)
//   constant  the base rate throughout
import type { Optimizer } from '../optim/index.ts';

export const SCHEDULES = ['onecycle', 'cosine', 'step', 'constant'] as const;
export type ScheduleName = (typeof SCHEDULES)[number];

export interface OneCycleOptions {
  /** fraction of the steps spent warming up (fastai 0.25; torch's default 0.3) */
  pctStart?: number;
  /** the first rate is lr / div */
  div?: number;
  /** the last rate is lr / divFinal (torch: final_div_factor = divFinal / div) */
  divFinal?: number;
  /** momentum at the low and high rate: [max, min] */
  momentums?: [number, number];
}

const ONE_CYCLE = { pctStart: 0.25, div: 25, divFinal: 1e5, momentums: [0.95, 0.85] as [number, number] };

/** Cosine interpolation from `start` (pct 0) to `end` (pct 1), torch's _annealing_cos. */
function annealCos(start: number, end: number, pct: number): number {
  return end + ((start - end) / 2) * (Math.cos(Math.PI * pct) + 1);
}

/**
 * Where `step` of `total` falls in the one-cycle's two phases, as torch computes it: phase 1 ends
 * at step pctStart*total - 1, phase 2 at total - 1. Returns the phase and the progress in it.
 */
function oneCyclePhase(step: number, total: number, pctStart: number): { warm: boolean; pct: number } {
  const end1 = pctStart * total - 1;
  // torch divides by zero when phase 1 is a single step at 0; that step is the peak
  const pct = (a: number, b: number) => (b > a ? (step - a) / (b - a) : 1);
  return step <= end1 ? { warm: true, pct: pct(0, end1) } : { warm: false, pct: pct(end1, total - 1) };
}

export interface Schedule {
  name: ScheduleName;
  /** steps the schedule spans */
  total: number;
  /** the base rate's multiplier at `step` (0-based) */
  lrFactor(step: number): number;
  /** the momentum at `step` for a base momentum (one-cycle cycles it, the others keep it) */
  momentum(step: number, base: number): number;
}

export function makeSchedule(name: ScheduleName, total: number, opts: OneCycleOptions = {}): Schedule {
  if (!SCHEDULES.includes(name)) throw new Error(`unknown schedule '${name}' (${SCHEDULES.join(', ')})`);
  if (!(Number.isInteger(total) && total >= 1)) throw new Error(`a schedule needs at least one step, got ${total}`);
  const oc = { ...ONE_CYCLE, ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) };
  const milestones = [Math.floor(0.5 * total), Math.floor(0.75 * total)];
  const clamp = (s: number) => Math.min(Math.max(s, 0), total - 1);
  return {
    name,
    total,
    lrFactor(step) {
      const s = clamp(step);
      switch (name) {
        case 'onecycle': {
          const { warm, pct } = oneCyclePhase(s, total, oc.pctStart);
          return warm ? annealCos(1 / oc.div, 1, pct) : annealCos(1, 1 / oc.divFinal, pct);
        }
        case 'cosine':
          return annealCos(1, 0, s / total);
        case 'step':
          return 0.1 ** milestones.filter((m) => s >= m).length;
        case 'constant':
          return 1;
      }
    },
    momentum(step, base) {
      if (name !== 'onecycle') return base;
      const [hi, lo] = oc.momentums;
      const { warm, pct } = oneCyclePhase(clamp(step), total, oc.pctStart);
      return warm ? annealCos(hi, lo, pct) : annealCos(lo, hi, pct);
    },
  };
}

/**
 * Base rates of `groups` layer groups, stem first: fastai's slice(lr * mult, lr) (even_mults), the
 * head at `lr`, the stem at lr * mult, the groups between spaced geometrically.
 */
export function discriminativeLrs(lr: number, mult: number, groups: number): number[] {
  if (groups <= 1) return [lr];
  const lo = lr * mult;
  const ratio = (lr / lo) ** (1 / (groups - 1));
  return Array.from({ length: groups }, (_, i) => (i === groups - 1 ? lr : lo * ratio ** i));
}

/** Sets every group's rate (its base times the schedule's factor) and momentum (SGD's momentum,
 *  Adam's beta1, as fastai cycles it) for `step`. */
export function applySchedule(opt: Optimizer, schedule: Schedule, baseLrs: readonly number[], baseMomentum: number, step: number): void {
  if (baseLrs.length !== opt.groups.length) throw new Error(`${baseLrs.length} base rates for ${opt.groups.length} parameter groups`);
  const f = schedule.lrFactor(step);
  const m = schedule.momentum(step, baseMomentum);
  opt.groups.forEach((group, i) => {
    const g = group as typeof group & { momentum?: number; betas?: [number, number] };
    g.lr = baseLrs[i] * f;
    if (g.betas) g.betas = [m, g.betas[1]];
    else g.momentum = m;
  });
}
