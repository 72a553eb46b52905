// `gpunet lr-find`: the learning-rate finder on a folder of images, its curve as a PNG and the
// valley and steep suggestions printed.
import { parseArgs } from 'node:util';
import { nonNegative, positiveInt } from './args.ts';
import { ProgressBar } from '../report/progress.ts';
import { lineChart, savePng } from '../report/plot.ts';
import { lrFind } from '../train/lr-find.ts';
import { UsageError } from './errors.ts';
import type { Command } from './main.ts';
import { DATA_OPTIONS, DATA_USAGE, prepareRun } from './train.ts';

const usage = `usage: gpunet lr-find --data DIR [--weights model.onnx|none] [--phase frozen|unfrozen|head] [--steps 100]
                     [--start-lr 1e-7] [--end-lr 10] [--out lr-find.png] [data and model options of gpunet train]

Trains for a few steps with a learning rate growing exponentially from --start-lr to --end-lr,
stopping once the (smoothed) loss exceeds 4x its minimum, writes the loss-vs-rate curve to --out and
prints fastai's suggestions: valley (a safe default) and steep (where the loss falls fastest).
The weights are not saved.

  --phase P               which parameters train: frozen (the head and batchnorm, a fine-tune's first
                          phase; the default with --weights), unfrozen (all; the default with --weights
                          none), head (a fixed backbone's cached features)
  --steps N               (default 100)
  --start-lr F --end-lr F (default 1e-7 and 10)
  --out FILE.png          (default lr-find.png)
${DATA_USAGE}`;

export const lrFindCommand: Command = {
  name: 'lr-find',
  summary: 'find a learning rate: loss against an exponentially growing rate',
  usage,
  async run(args) {
    const { values: v } = parseArgs({
      args,
      options: {
        ...DATA_OPTIONS,
        phase: { type: 'string' },
        steps: { type: 'string', default: '100' },
        'start-lr': { type: 'string', default: '1e-7' },
        'end-lr': { type: 'string', default: '10' },
        out: { type: 'string', default: 'lr-find.png' },
      },
    });
    const steps = positiveInt('steps', v.steps!);
    const startLr = nonNegative('start-lr', v['start-lr']);
    const endLr = nonNegative('end-lr', v['end-lr']);
    if (!(startLr > 0 && endLr > startLr)) throw new UsageError(`--start-lr and --end-lr need 0 < start < end, got ${startLr} and ${endLr}`);
    if (v.phase !== undefined && !['frozen', 'unfrozen', 'head'].includes(v.phase)) throw new UsageError(`--phase must be frozen, unfrozen or head, got '${v.phase}'`);
    const run = await prepareRun(v, 'lr-find');
    try {
      const phase = (v.phase ?? (run.pretrained ? 'frozen' : 'unfrozen')) as 'frozen' | 'unfrozen' | 'head';
      const bar = new ProgressBar('lr-find', steps, 'steps');
      const res = await lrFind(run.split, run.data, {
        phase, steps, startLr, endLr, seed: Number(v.seed),
        momentum: nonNegative('momentum', v.momentum), weightDecay: nonNegative('weight-decay', v['weight-decay']),
        labelSmoothing: nonNegative('label-smoothing', v['label-smoothing']),
        onStep: (done, _total, loss) => bar.update(done, loss === undefined ? {} : { loss }),
      });
      bar.update(steps);
      const svg = lineChart([{ name: 'loss (smoothed)', x: res.lrs, y: res.losses }], { xLabel: 'learning rate', yLabel: 'loss', logX: true, title: `Learning-rate finder (${phase})` });
      await savePng(svg, v.out!);
      console.log(`${res.lrs.length} steps, curve in ${v.out}`);
      console.log(`suggested learning rates: valley ${res.valley.toExponential(2)}, steep ${res.steep.toExponential(2)}`);
      return 0;
    } finally {
      await run.close();
      run.split.model.release();
    }
  },
};
