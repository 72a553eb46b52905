// `gpunet lr-find`: the learning-rate finder on a folder of images, its curve as a PNG and the
// valley and steep suggestions printed.
import { ProgressBar } from '../report/progress.ts';
import { lineChart, savePng } from '../report/plot.ts';
import { lrFind } from '../train/lr-find.ts';
import { defineCommand } from './command.ts';
import { UsageError } from './errors.ts';
import { choice, grouped, int, num, str } from './options.ts';
import { pngPath } from './predict.ts';
import { mixFrom } from './augment-options.ts';
import { prepareRun, RUN_OPTIONS, weightDecay } from './train.ts';

export const lrFindCommand = defineCommand({
  name: 'lr-find',
  summary: 'find a learning rate: loss against an exponentially growing rate',
  synopsis: '--data DIR [options]',
  description: `Trains for a few steps with a learning rate growing exponentially from --start-lr to --end-lr,
stopping once the (smoothed) loss exceeds 4x its minimum, writes the loss-vs-rate curve to --out and
prints fastai's suggestions: valley (a safe default) and steep (where the loss falls fastest).
The weights are not saved.`,
  options: {
    ...grouped('finder', {
      phase: choice(['frozen', 'unfrozen', 'head'] as const, {
        defaultText: 'frozen with --weights, unfrozen without',
        help: "which parameters train: frozen (the head and batchnorm, a fine-tune's first phase), unfrozen (all), head (a fixed backbone's cached features)",
      }),
      steps: int({ min: 2, max: 100_000, default: 100, help: 'steps at most' }),
      startLr: num({ above: 0, default: 1e-7, help: 'the first rate' }),
      endLr: num({ above: 0, default: 10, help: 'the last rate' }),
      out: str({ metavar: 'FILE.png', default: 'lr-find.png', help: 'the curve' }),
    }),
    ...RUN_OPTIONS,
  },
  async run(v) {
    if (!(v.endLr > v.startLr)) throw new UsageError(`--end-lr must be larger than --start-lr, got ${v.startLr} and ${v.endLr}`);
    pngPath('--out', v.out);
    const run = await prepareRun(v, 'lr-find');
    try {
      const phase = v.phase ?? (run.pretrained ? 'frozen' : 'unfrozen');
      const bar = new ProgressBar('lr-find', v.steps, 'steps');
      const res = await lrFind(run.split, run.data, {
        phase, steps: v.steps, startLr: v.startLr, endLr: v.endLr, seed: v.seed,
        optimizer: v.opt, mix: mixFrom(v), momentum: v.momentum, weightDecay: weightDecay(v), labelSmoothing: v.labelSmoothing,
        onStep: (done, _total, loss) => bar.update(done, loss === undefined ? {} : { loss }),
      });
      bar.update(v.steps);
      const marks = [
        { x: res.valley, label: `valley ${res.valley.toExponential(1)}`, color: '#2ca02c' },
        { x: res.steep, label: `steep ${res.steep.toExponential(1)}`, color: '#d62728' },
      ];
      const svg = lineChart([{ name: 'loss (smoothed)', x: res.lrs, y: res.losses }], { xLabel: 'learning rate', yLabel: 'loss', logX: true, marks, title: `Learning-rate finder (${phase})` });
      await savePng(svg, v.out);
      console.log(`${res.lrs.length} steps, curve in ${v.out}`);
      console.log(`suggested learning rates: valley ${res.valley.toExponential(2)}, steep ${res.steep.toExponential(2)}`);
      return 0;
    } finally {
      await run.close();
      run.split.model.release();
    }
  },
});
