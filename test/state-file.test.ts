// Hostile and damaged training-state files: every field is checked before it is used, and each kind
// of damage is one RunError line naming the file — never a crash, a huge allocation or a run that
// resumes from nonsense.
import { describe, expect, it } from 'vitest';
import { decodeTrainingState, encodeTrainingState, RunError, type TrainingState } from '../src/train/checkpoint.ts';
import { Rng } from '../src/tensor/index.ts';

const FILE = 'runs/x/train-state.bin';

/** A state 2 epochs into a 4-epoch run of 3 steps per epoch, stopped at step 1 of epoch 3. */
function state(): TrainingState {
  const rng = new Rng(3);
  const values = (n: number) => Float32Array.from({ length: n }, () => rng.normal());
  const record = (epoch: number) => ({ epoch, phase: 'unfrozen' as const, trainLoss: 0.9, validLoss: 0.8, accuracy: 0.5, macroF1: 0.4, lr: 0.01, seconds: 1.5 });
  return {
    epoch: 2, stepInEpoch: 1, globalStep: 7, partialLosses: [0.7], partialSeconds: 0.3, seed: 42, rngState: 12345, bestAccuracy: 0.5,
    history: [record(1), record(2)],
    config: { epochs: 4, trainSize: 40, batchSize: 16, lr: 0.01 },
    weights: new Map([['conv.weight', values(12)], ['conv.bias', values(3)], ['bn.running_mean', values(3)]]),
    optimizer: { buffers: { momentum: [values(12), null] }, steps: [3, 0] },
  };
}

/** The file with its JSON header edited by `edit`. */
function withHeader(edit: (h: Record<string, any>) => void, s = state()): Uint8Array {
  const bytes = encodeTrainingState(s);
  const len = new DataView(bytes.buffer).getUint32(8, true);
  const headerBytes = 12 + Math.ceil(len / 4) * 4;
  const h = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + len)));
  edit(h);
  const header = new TextEncoder().encode(JSON.stringify(h));
  const newHeaderBytes = 12 + Math.ceil(header.length / 4) * 4;
  const out = new Uint8Array(newHeaderBytes + bytes.length - headerBytes).fill(0x20, 12, newHeaderBytes);
  out.set(bytes.subarray(0, 8));
  new DataView(out.buffer).setUint32(8, header.length, true);
  out.set(header, 12);
  out.set(bytes.subarray(headerBytes), newHeaderBytes);
  return out;
}

function refusal(bytes: Uint8Array): string {
  try {
    decodeTrainingState(bytes, FILE);
  } catch (e) {
    expect(e).toBeInstanceOf(RunError);
    expect((e as Error).message).not.toContain('\n');
    return (e as Error).message;
  }
  throw new Error('the damaged state was accepted');
}

describe('training-state file', () => {
  it('round-trips a valid state; a file of before optimizer buffers (SGD momentum only) still reads', () => {
    const s = state();
    const back = decodeTrainingState(encodeTrainingState(s), FILE);
    expect(back).toEqual(s);
    const legacy = withHeader((h) => {
      h.momentumCount = h.optimizerBuffers.momentum;
      delete h.optimizerBuffers;
      delete h.optimizerSteps;
      for (const e of h.entries) if (e.kind === 'buffer') (e.kind = 'momentum'), delete e.buffer;
    });
    expect(decodeTrainingState(legacy, FILE)).toEqual({ ...s, optimizer: { buffers: s.optimizer.buffers, steps: [0, 0] } });
  });

  it('refuses each kind of damage with one line naming the file and the fix', () => {
    const good = encodeTrainingState(state());
    const cases: [string, Uint8Array, RegExp][] = [
      ['empty', new Uint8Array(0), /no GPUNETTS signature/],
      ['another format', new TextEncoder().encode('PK\u0003\u0004 a zip file, not a state'), /no GPUNETTS signature/],
      ['header length past the end', (() => { const b = good.slice(); new DataView(b.buffer).setUint32(8, 0xffffffff, true); return b; })(), /its header claims 4294967295 bytes, the file has \d+/],
      ['header not JSON', (() => { const b = good.slice(); b[12] = 0x7b; b[13] = 0x7b; return b; })(), /its header is not a JSON object/],
      ['torn (the tail of the data missing)', good.subarray(0, good.length - 24), /its header describes \d+ bytes, the file has \d+: torn by a crash or a full disk/],
      ['torn mid-value', good.subarray(0, good.length - 2), /torn by a crash/],
      ['another version', withHeader((h) => (h.version = 2)), /version 2, expected 1/],
      ['a buffer count of 2^32-1', withHeader((h) => (h.optimizerBuffers.momentum = 2 ** 32 - 1)), /optimizer buffer 'momentum' counts 4294967295 for 3 weights/],
      ['a hostile buffer name', withHeader((h) => (h.optimizerBuffers = JSON.parse('{"__proto__": 1}'))), /optimizer buffer '__proto__' counts 1/],
      ['step counts that are not', withHeader((h) => (h.optimizerSteps = [-1, 0])), /optimizerSteps must be step counts/],
      ['an array of an unknown buffer', withHeader((h) => (h.entries[3].buffer = 'expAvg')), /optimizer array 'momentum.0' has index 0 of 0/],
      ['an array beyond the data', withHeader((h) => (h.entries[1].offset = 28)), /array 'conv.bias' lies outside the file's 30 values/],
      ['a negative length', withHeader((h) => (h.entries[0].length = -5)), /array 'conv.weight' has length -5/],
      ['no entries', withHeader((h) => (h.entries = 'all of them')), /no list of arrays/],
      ['a weight twice', withHeader((h) => (h.entries[1].name = 'conv.weight')), /weight 'conv.weight' twice/],
      ['a momentum index out of range', withHeader((h) => (h.entries[3].index = 7)), /optimizer array 'momentum.0' has index 7 of 2/],
      ['epoch 100 of a 4-epoch run', withHeader((h) => (h.epoch = 100)), /epoch 100 of a 4-epoch run/],
      ['a step past the epoch', withHeader((h) => ((h.stepInEpoch = 3), (h.partialLosses = [1, 1, 1]))), /step 3 of 3 in epoch 3/],
      ['an inconsistent global step', withHeader((h) => (h.globalStep = 99)), /global step 99 is not epoch 2 x 3 \+ 1/],
      ['a NaN partial loss', withHeader((h) => (h.partialLosses = [null])), /partialLosses must be 1 finite numbers/],
      ['history shorter than the epochs', withHeader((h) => h.history.pop()), /the history must hold 2 epochs/],
      ['a bad history record', withHeader((h) => (h.history[1].accuracy = 7)), /history record 2/],
      ['a best accuracy above 1', withHeader((h) => (h.bestAccuracy = 3)), /best accuracy 3/],
      ['no config', withHeader((h) => delete h.config), /no config/],
      ['a zero batch size', withHeader((h) => (h.config.batchSize = 0)), /config.trainSize or config.batchSize missing/],
      ['a string seed', withHeader((h) => (h.seed = '42')), /seed or generator state/],
    ];
    for (const [what, bytes, why] of cases) {
      const message = refusal(bytes);
      expect(message, what).toMatch(new RegExp(`^${FILE}: not a gpunet training state \\(.*\\); delete it or choose another run folder$`));
      expect(message, what).toMatch(why);
    }
  });

  it('refuses NaN or infinite saved values, naming the tensor', () => {
    const s = state();
    s.weights.get('conv.bias')![2] = NaN;
    expect(refusal(encodeTrainingState(s))).toBe(`${FILE}: 'conv.bias' holds NaN at index 2: the saved run diverged or the file is damaged; delete it or choose another run folder`);
    const t = state();
    t.optimizer.buffers.momentum[0]![5] = -Infinity;
    expect(refusal(encodeTrainingState(t))).toMatch(/'momentum.0' holds -Infinity at index 5/);
  });
});
