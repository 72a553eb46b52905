// Float64 references of 2-D pooling over x: [N,C,H,W] (torch.nn.functional semantics):
//   window (oh, ow) has the taps on rows oh*sh - ph + i*dh (i < kh) and the matching columns
//   (dilation d: max pooling only, 1 otherwise);
//   max: the largest x in the window's part inside the image (padding is -inf);
//   avg: the sum over the window's part inside the image, divided by its element count, or with
//        countIncludePad by the window's size clipped to the padded image [-p, size + p);
//   global average: the mean of each (n, c) plane.
// Backward as the adjoint scatter: max adds each window's dy to its argmax (the first maximum in
// row-major order, as torch), avg adds dy / divisor to each element of the window.
// Output size: floor((size + 2p - d(k-1) - 1)/s) + 1, or with ceilMode ceil(...) + 1 less one if
// that last window would start past the image and its left padding.
// Global max pooling is the max of each plane; 1-D pooling over [N,C,L] is 2-D pooling of [N,C,1,L].

export interface PoolRefOptions {
  kernel: [number, number];
  stride: [number, number];
  padding: [number, number];
  ceilMode: boolean;
  countIncludePad?: boolean;
  dilation?: [number, number];
}

export function poolOutSizeRef(size: number, k: number, s: number, p: number, ceilMode: boolean, d = 1): number {
  const exact = (size + 2 * p - d * (k - 1) - 1) / s;
  let out = (ceilMode ? Math.ceil(exact) : Math.floor(exact)) + 1;
  if (ceilMode && (out - 1) * s >= size + p) out -= 1;
  return out;
}

interface Window {
  /** flat indices into x of the window's elements inside the image, in row-major order */
  at: number[];
  /** the window's size clipped to the padded image (the divisor with countIncludePad) */
  paddedCount: number;
}

/** Every window, output by output (row-major over [N,C,OH,OW]), and the output shape. */
function windows(shape: readonly number[], o: PoolRefOptions): { list: Window[]; shape: number[] } {
  const [N, C, H, W] = shape;
  const [dh, dw] = o.dilation ?? [1, 1];
  const OH = poolOutSizeRef(H, o.kernel[0], o.stride[0], o.padding[0], o.ceilMode, dh);
  const OW = poolOutSizeRef(W, o.kernel[1], o.stride[1], o.padding[1], o.ceilMode, dw);
  const list: Window[] = [];
  for (let plane = 0; plane < N * C; plane++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        const h0 = oh * o.stride[0] - o.padding[0];
        const w0 = ow * o.stride[1] - o.padding[1];
        const at: number[] = [];
        for (let i = 0; i < o.kernel[0]; i++) {
          for (let j = 0; j < o.kernel[1]; j++) {
            const [h, w] = [h0 + i * dh, w0 + j * dw];
            if (h >= 0 && h < H && w >= 0 && w < W) at.push(plane * H * W + h * W + w);
          }
        }
        const rows = Math.min(h0 + o.kernel[0], H + o.padding[0]) - h0;
        const cols = Math.min(w0 + o.kernel[1], W + o.padding[1]) - w0;
        list.push({ at, paddedCount: rows * cols });
      }
    }
  }
  return { list, shape: [N, C, OH, OW] };
}

/** the first index of the largest value (torch's tie rule) */
function argmax(x: Float64Array, at: number[]): number {
  return at.reduce((best, i) => (x[i] > x[best] ? i : best), at[0]);
}

function divisor(win: Window, o: PoolRefOptions): number {
  return (o.countIncludePad ?? true) ? win.paddedCount : win.at.length;
}

export function maxPool2dRef(x: Float64Array, shape: readonly number[], o: PoolRefOptions) {
  const { list, shape: outShape } = windows(shape, o);
  return { y: Float64Array.from(list, (win) => x[argmax(x, win.at)]), shape: outShape };
}

export function avgPool2dRef(x: Float64Array, shape: readonly number[], o: PoolRefOptions) {
  const { list, shape: outShape } = windows(shape, o);
  return { y: Float64Array.from(list, (win) => win.at.reduce((a, i) => a + x[i], 0) / divisor(win, o)), shape: outShape };
}

/** gradient of max pooling: each window's dy added to its argmax (a scatter, unlike the GPU's gather) */
export function maxPool2dBackwardRef(x: Float64Array, shape: readonly number[], o: PoolRefOptions, dy: Float64Array): Float64Array {
  const dx = new Float64Array(x.length);
  windows(shape, o).list.forEach((win, k) => (dx[argmax(x, win.at)] += dy[k]));
  return dx;
}

/** gradient of average pooling: each window's dy / divisor added to each of its elements */
export function avgPool2dBackwardRef(x: Float64Array, shape: readonly number[], o: PoolRefOptions, dy: Float64Array): Float64Array {
  const dx = new Float64Array(x.length);
  windows(shape, o).list.forEach((win, k) => {
    for (const i of win.at) dx[i] += dy[k] / divisor(win, o);
  });
  return dx;
}

/** [N,C,H,W] -> [N,C] plane means (flattened; the op's shape is [N,C,1,1]) */
export function globalAvgPool2dRef(x: Float64Array, shape: readonly number[]): Float64Array {
  const [N, C, H, W] = shape;
  const y = new Float64Array(N * C);
  for (let plane = 0; plane < N * C; plane++) {
    let s = 0;
    for (let i = 0; i < H * W; i++) s += x[plane * H * W + i];
    y[plane] = s / (H * W);
  }
  return y;
}

/** [N,C,H,W] -> [N,C] plane maxima (flattened; the op's shape is [N,C,1,1]) */
export function globalMaxPool2dRef(x: Float64Array, shape: readonly number[]): Float64Array {
  const [N, C, H, W] = shape;
  return Float64Array.from({ length: N * C }, (_, plane) => Math.max(...x.subarray(plane * H * W, (plane + 1) * H * W)));
}

export interface Pool1dRefOptions {
  kernel: number;
  stride: number;
  padding: number;
  ceilMode: boolean;
  countIncludePad?: boolean;
  dilation?: number;
}

/** The 2-D options of [N,C,L] pooled as [N,C,1,L]. */
function as2d(o: Pool1dRefOptions): PoolRefOptions {
  return { kernel: [1, o.kernel], stride: [1, o.stride], padding: [0, o.padding], ceilMode: o.ceilMode, countIncludePad: o.countIncludePad, dilation: [1, o.dilation ?? 1] };
}

const shape2d = (shape: readonly number[]) => [shape[0], shape[1], 1, shape[2]];

export function maxPool1dRef(x: Float64Array, shape: readonly number[], o: Pool1dRefOptions) {
  const { y, shape: s } = maxPool2dRef(x, shape2d(shape), as2d(o));
  return { y, shape: [s[0], s[1], s[3]] };
}

export function avgPool1dRef(x: Float64Array, shape: readonly number[], o: Pool1dRefOptions) {
  const { y, shape: s } = avgPool2dRef(x, shape2d(shape), as2d(o));
  return { y, shape: [s[0], s[1], s[3]] };
}
