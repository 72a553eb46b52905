// Waiting for the GPU without taking a CPU core from it.
//
// Dawn's Node binding learns that a map or onSubmittedWorkDone has completed by polling: while
// any such promise is pending it re-queues a poll with setImmediate, so the event loop spins and
// the main thread burns a whole core. On a software adapter (lavapipe) that core is one of the two
// that run the shaders. quietly() keeps the loop turning, but sleeps 0.5 ms (Atomics.wait: no CPU)
// in every turn, so the binding polls ~2000 times a second instead of millions, and completion is
// seen at most half a millisecond late. Measured in bench/NOTES.md: main-thread CPU while waiting
// for a ResNet18 inference went from ~280 ms to ~15 ms per step, and the step's wall time halved.

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

/** Resolves as `p` does, with the event loop throttled while it (or any other quiet wait) is pending. */
export async function quietly<T>(p: Promise<T>): Promise<T> {
  pending++;
  if (!turning) {
    turning = true;
    setImmediate(turn);
  }
  try {
    return await p;
  } finally {
    pending--;
  }
}
