// Float64 reference of conv2d (torch.nn.functional.conv2d semantics): direct loops, no cleverness.
//   y[n, oc, oh, ow] = b[oc] + sum over c in oc's group, kh, kw of
//                      x[n, g*Cg + c, oh*sh - ph + kh*dh, ow*sw - pw + kw*dw] * w[oc, c, kh, kw]
// where g = oc / (OC / groups), Cg = C / groups, and x is zero outside [0,H) x [0,W).

export interface ConvGeometry {
  stride: [number, number];
  padding: [number, number];
  dilation: [number, number];
  groups: number;
}

/** Output size of one spatial dimension: floor((in + 2p - d(k-1) - 1) / s) + 1. */
export function convOutSize(size: number, k: number, s: number, p: number, d: number): number {
  return Math.floor((size + 2 * p - d * (k - 1) - 1) / s) + 1;
}

/** x: [N,C,H,W], w: [OC,C/groups,KH,KW], b: [OC] or null -> y: [N,OC,OH,OW] (flattened) */
export function conv2dRef(
  x: Float64Array,
  xShape: readonly number[],
  w: Float64Array,
  wShape: readonly number[],
  b: Float64Array | null,
  g: ConvGeometry,
): { y: Float64Array; shape: number[] } {
  const [N, C, H, W] = xShape;
  const [OC, Cg, KH, KW] = wShape;
  const [sh, sw] = g.stride;
  const [ph, pw] = g.padding;
  const [dh, dw] = g.dilation;
  const OH = convOutSize(H, KH, sh, ph, dh);
  const OW = convOutSize(W, KW, sw, pw, dw);
  const OCg = OC / g.groups;
  if (Cg * g.groups !== C) throw new Error(`reference: C=${C} is not ${g.groups} groups of ${Cg}`);
  const y = new Float64Array(N * OC * OH * OW);
  for (let n = 0; n < N; n++) {
    for (let oc = 0; oc < OC; oc++) {
      const c0 = Math.floor(oc / OCg) * Cg; // first input channel of oc's group
      for (let oh = 0; oh < OH; oh++) {
        for (let ow = 0; ow < OW; ow++) {
          let s = b ? b[oc] : 0;
          for (let c = 0; c < Cg; c++) {
            for (let kh = 0; kh < KH; kh++) {
              const ih = oh * sh - ph + kh * dh;
              if (ih < 0 || ih >= H) continue;
              for (let kw = 0; kw < KW; kw++) {
                const iw = ow * sw - pw + kw * dw;
                if (iw < 0 || iw >= W) continue;
                s += x[((n * C + c0 + c) * H + ih) * W + iw] * w[((oc * Cg + c) * KH + kh) * KW + kw];
              }
            }
          }
          y[((n * OC + oc) * OH + oh) * OW + ow] = s;
        }
      }
    }
  }
  return { y, shape: [N, OC, OH, OW] };
}

/** Gradients of conv2dRef given dy: [N,OC,OH,OW], by the chain rule on the same loops: every
 *  product x*w that made y[n,oc,oh,ow] sends dy*w to dx, dy*x to dw, and dy to db[oc]. */
export function conv2dBackwardRef(
  x: Float64Array,
  xShape: readonly number[],
  w: Float64Array,
  wShape: readonly number[],
  dy: Float64Array,
  g: ConvGeometry,
): { dx: Float64Array; dw: Float64Array; db: Float64Array } {
  const [N, C, H, W] = xShape;
  const [OC, Cg, KH, KW] = wShape;
  const [sh, sw] = g.stride;
  const [ph, pw] = g.padding;
  const [dh, dw_] = g.dilation;
  const OH = convOutSize(H, KH, sh, ph, dh);
  const OW = convOutSize(W, KW, sw, pw, dw_);
  const OCg = OC / g.groups;
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(w.length);
  const db = new Float64Array(OC);
  for (let n = 0; n < N; n++) {
    for (let oc = 0; oc < OC; oc++) {
      const c0 = Math.floor(oc / OCg) * Cg;
      for (let oh = 0; oh < OH; oh++) {
        for (let ow = 0; ow < OW; ow++) {
          const d = dy[((n * OC + oc) * OH + oh) * OW + ow];
          db[oc] += d;
          for (let c = 0; c < Cg; c++) {
            for (let kh = 0; kh < KH; kh++) {
              const ih = oh * sh - ph + kh * dh;
              if (ih < 0 || ih >= H) continue;
              for (let kw = 0; kw < KW; kw++) {
                const iw = ow * sw - pw + kw * dw_;
                if (iw < 0 || iw >= W) continue;
                const xi = ((n * C + c0 + c) * H + ih) * W + iw;
                const wi = ((oc * Cg + c) * KH + kh) * KW + kw;
                dx[xi] += d * w[wi];
                dw[wi] += d * x[xi];
              }
            }
          }
        }
      }
    }
  }
  return { dx, dw, db };
}

/** conv1d (torch.nn.functional.conv1d): x: [N,C,L], w: [OC,C/groups,K] is conv2d of the views
 *  x: [N,C,1,L], w: [OC,C/groups,1,K] -> y: [N,OC,OL] (flattened). */
export function conv1dRef(
  x: Float64Array,
  xShape: readonly number[],
  w: Float64Array,
  wShape: readonly number[],
  b: Float64Array | null,
  g: { stride: number; padding: number; dilation: number; groups: number },
): { y: Float64Array; shape: number[] } {
  const geo: ConvGeometry = { stride: [1, g.stride], padding: [0, g.padding], dilation: [1, g.dilation], groups: g.groups };
  const { y, shape } = conv2dRef(x, [xShape[0], xShape[1], 1, xShape[2]], w, [wShape[0], wShape[1], 1, wShape[2]], b, geo);
  return { y, shape: [shape[0], shape[1], shape[3]] };
}

/** The column matrix of im2col: x: [N,C,H,W] -> col: [N, C*KH*KW, OH*OW], col[n, (c,kh,kw), (oh,ow)] =
 *  x[n, c, oh*sh - ph + kh*dh, ow*sw - pw + kw*dw] (zero outside x), so that y[n] = w [OC, C*KH*KW] col[n]
 *  for groups 1. */
export function im2colRef(x: Float64Array, xShape: readonly number[], KH: number, KW: number, g: ConvGeometry): Float64Array {
  const [N, C, H, W] = xShape;
  const OH = convOutSize(H, KH, g.stride[0], g.padding[0], g.dilation[0]);
  const OW = convOutSize(W, KW, g.stride[1], g.padding[1], g.dilation[1]);
  const col = new Float64Array(N * C * KH * KW * OH * OW);
  let at = 0;
  for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) for (let kh = 0; kh < KH; kh++) for (let kw = 0; kw < KW; kw++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++, at++) {
        const ih = oh * g.stride[0] - g.padding[0] + kh * g.dilation[0];
        const iw = ow * g.stride[1] - g.padding[1] + kw * g.dilation[1];
        col[at] = ih >= 0 && ih < H && iw >= 0 && iw < W ? x[((n * C + c) * H + ih) * W + iw]! : 0;
      }
    }
  }
  return col;
}
