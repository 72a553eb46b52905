// ResNet18's distinct convolutions, for the benchmarks that time each of them (bench/conv-vs-gemm.ts,
// bench/gemm-tilings.ts, bench/im2col.ts): channels in and out, the input size at 224 px, kernel and
// options.
import { conv2dGeometry, type Conv2dGeometry, type Conv2dOptions } from '../src/ops/conv2d.ts';

export interface ResNetConv {
  name: string;
  c: number;
  oc: number;
  /** input height and width at 224 px */
  hw: number;
  k: number;
  opts: Conv2dOptions;
  /** how many times ResNet18 runs it */
  count: number;
}

export const RESNET18_CONVS: readonly ResNetConv[] = [
  { name: 'stem 7x7 s2 3->64', c: 3, oc: 64, hw: 224, k: 7, opts: { stride: 2, padding: 3 }, count: 1 },
  { name: '3x3 64->64 @56', c: 64, oc: 64, hw: 56, k: 3, opts: { padding: 1 }, count: 4 },
  { name: '3x3 s2 64->128 @56', c: 64, oc: 128, hw: 56, k: 3, opts: { stride: 2, padding: 1 }, count: 1 },
  { name: '1x1 s2 64->128 @56', c: 64, oc: 128, hw: 56, k: 1, opts: { stride: 2 }, count: 1 },
  { name: '3x3 128->128 @28', c: 128, oc: 128, hw: 28, k: 3, opts: { padding: 1 }, count: 3 },
  { name: '3x3 s2 128->256 @28', c: 128, oc: 256, hw: 28, k: 3, opts: { stride: 2, padding: 1 }, count: 1 },
  { name: '1x1 s2 128->256 @28', c: 128, oc: 256, hw: 28, k: 1, opts: { stride: 2 }, count: 1 },
  { name: '3x3 256->256 @14', c: 256, oc: 256, hw: 14, k: 3, opts: { padding: 1 }, count: 3 },
  { name: '3x3 s2 256->512 @14', c: 256, oc: 512, hw: 14, k: 3, opts: { stride: 2, padding: 1 }, count: 1 },
  { name: '1x1 s2 256->512 @14', c: 256, oc: 512, hw: 14, k: 1, opts: { stride: 2 }, count: 1 },
  { name: '3x3 512->512 @7', c: 512, oc: 512, hw: 7, k: 3, opts: { padding: 1 }, count: 3 },
];

/** The geometry of convolution `s` at `batch` images of `size` px (its input scaled from 224). */
export function resnetConvGeometry(s: ResNetConv, batch: number, size: number): Conv2dGeometry {
  const hw = Math.ceil((s.hw * size) / 224);
  return conv2dGeometry([batch, s.c, hw, hw], [s.oc, s.c, s.k, s.k], null, s.opts);
}

/** `b<batch>x<size>` (a --configs item) as numbers. */
export function parseConfig(config: string): { batch: number; size: number } {
  const m = /^b(\d+)x(\d+)$/.exec(config);
  if (!m) throw new Error(`--configs: ${config} is not b<batch>x<size>`);
  return { batch: Number(m[1]), size: Number(m[2]) };
}
