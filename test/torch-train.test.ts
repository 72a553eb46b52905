// A few SGD steps of the small conv net (conv-bn-relu-pool x2, linear) from identical weights in
// gpunet and in PyTorch: the losses, the weights and the batchnorm running statistics afterwards
// must agree.
import { describe, expect, it } from 'vitest';
import { syntheticImages } from '../src/data/synthetic.ts';
import { smallCnn } from '../src/nn/smallcnn.ts';
import { SGD } from '../src/optim/sgd.ts';
import { Rng } from '../src/tensor/index.ts';
import { batches, trainEpoch } from '../src/train/classifier.ts';
import { relError, useGpu } from './helpers.ts';
import { type TorchInput, torchRun } from './torch.ts';

useGpu();

const TORCH_MODEL = `nn.Sequential(
  nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
  nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))`;

describe('training matches PyTorch', () => {
  it('3 SGD steps (momentum, weight decay) give the same losses, weights and running stats', async () => {
    const rng = new Rng(11);
    const size = 10;
    const data = syntheticImages(24, size, rng);
    const steps = batches(data.images, data.labels, 8, rng);
    const model = smallCnn(4, { rng });
    const state = [...model.stateDict()];
    const initial = await Promise.all(state.map(([, t]) => t.toArray()));

    const inputs: Record<string, TorchInput> = {};
    state.forEach(([name, t], i) => (inputs[`p${i}`] = { shape: t.shape, data: initial[i] }));
    steps.forEach((b, i) => {
      inputs[`x${i}`] = { shape: [b.labels.length, 3, size, size], data: b.images };
      inputs[`y${i}`] = { shape: [b.labels.length], data: b.labels, int: true };
    });
    const names = state.map(([n]) => n);
    const prelude = `
model = ${TORCH_MODEL}.double()
names = ${JSON.stringify(names)}
model.load_state_dict({n: globals()['p%d' % i] for i, n in enumerate(names)}, strict=False)
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
losses = []
for i in range(${steps.length}):
    opt.zero_grad()
    loss = F.cross_entropy(model(globals()['x%d' % i]), globals()['y%d' % i])
    loss.backward()
    opt.step()
    losses.append(loss.item())
final = model.state_dict()
${names.map((n, i) => `s${i} = final[${JSON.stringify(n)}]`).join('\n')}
`;
    const [ref] = await torchRun([{ inputs, prelude, expr: 'torch.tensor(losses)', outputs: names.map((_, i) => `s${i}`) }]);

    const opt = new SGD(model.parameters(), { lr: 0.1, momentum: 0.9, weightDecay: 5e-4 });
    const { losses } = await trainEpoch(model, opt, steps, [3, size, size]);
    expect(relError(losses, ref.out)).toBeLessThan(1e-4);
    const after = await Promise.all(state.map(([, t]) => t.toArray()));
    state.forEach(([name], i) => {
      expect(relError(after[i], ref.extra[`s${i}`]), name).toBeLessThan(1e-4);
      // the step changed what it should change
      if (!name.endsWith('running_var')) expect(relError(after[i], initial[i]), name).toBeGreaterThan(1e-4);
    });
    model.release();
  });
});
