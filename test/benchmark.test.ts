// The model benchmarks' timing loop (src/train/benchmark.ts timeSteps), on steps that only sleep.
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { timeSteps } from '../src/train/benchmark.ts';

function countingStep(ms: number) {
  const calls = { n: 0 };
  return { calls, step: async () => { calls.n++; await sleep(ms); } };
}

describe('timeSteps', () => {
  it('runs every warm-up step, then the timed ones, while they fit the budget', async () => {
    const { calls, step } = countingStep(2);
    const r = await timeSteps(step, 3, 4, { budgetMs: 10_000 });
    expect(calls.n).toBe(7);
    expect(r.stepsMs).toHaveLength(4);
    expect(r.minMs).toBeLessThanOrEqual(r.medianMs);
    expect(r.medianMs).toBeLessThanOrEqual(r.maxMs);
  });

  it('stops warming up after one step that outlasts the budget, and still times one', async () => {
    const { calls, step } = countingStep(30);
    const r = await timeSteps(step, 3, 5, { budgetMs: 10 });
    expect(calls.n).toBe(2);
    expect(r.stepsMs).toHaveLength(1);
    expect(r.medianMs).toBeGreaterThanOrEqual(25);
  });
});
