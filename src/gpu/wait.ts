// Waiting for the GPU without taking a CPU core from it.
//
// Dawn's Node binding learns that a map or onSubmittedWorkDone has completed by polling: while
// any such promise is pending it re-queues a poll with setImmediate, so the event loop spins and
// the main thread burns a whole core. On a software adapter (lavapipe) that core is one of the two
// that run the shaders. quietly() keeps the loop turning, but sleeps 0.5 ms (Atomics.wait: no CPU)
// in every turn, so the binding polls ~2000 times a second instead of millions, and completion is
// seen at most half a millisecond late. Measured in bench/NOTES.md: main-thread CPU while waiting
// for a ResNet18 inference went from ~280 ms to ~15 ms per step, and the step's wall time halved.

import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

const SLEEP_MS = 0.5;
const cell = new Int32Array(new SharedArrayBuffer(4));
let pending = 0;
let turning = false;

function turn(): void {
  turning = pending > 0;
  if (!turning) return;
  Atomics.wait(cell, 0, 0, SLEEP_MS);
  setImmediate(turn);
}

let waitCpu = 0;
let waitStart = 0;

/** Main-thread CPU time spent inside quiet waits so far, ms (what is left of the polling). */
export function waitCpuMs(): number {
  return waitCpu;
}

/** Resolves as `p` does, with the event loop throttled while it (or any other quiet wait) is pending. */
export async function quietly<T>(p: Promise<T>): Promise<T> {
  if (pending === 0) waitStart = threadCpuMs(); // overlapping waits count once
  pending++;
  if (!turning) {
    turning = true;
    setImmediate(turn);
  }
  try {
    return await p;
  } finally {
    pending--;
    if (pending === 0) waitCpu += threadCpuMs() - waitStart;
  }
}

/** CPU time the calling thread has run, ms (Linux's schedstat, ns resolution; NaN elsewhere). On
 *  the main thread: the process's CPU less lavapipe's worker threads. */
export function threadCpuMs(): number {
  try {
    return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e6;
  } catch {
    return NaN;
  }
}

/** CPU time of the process's other threads so far, ms: on a CPU adapter, its worker threads (lavapipe
 *  runs a dispatch's workgroups on a pool of one thread per core, LP_NUM_THREADS, besides a few
 *  ms of Dawn's and V8's), and how many workers there are. NaN without Linux's schedstat. What
 *  a CPU adapter's kernels cost, which load barely distorts (a preempted thread's wait is not
 *  counted, as a timestamp counts it). */
export function workerCpuMs(): { ms: number; threads: number } {
  const cpu = process.cpuUsage();
  return { ms: (cpu.user + cpu.system) / 1e3 - threadCpuMs(), threads: Number(process.env.LP_NUM_THREADS) || availableParallelism() };
}
