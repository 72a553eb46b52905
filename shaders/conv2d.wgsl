// 2-D convolution (torch.nn.functional.conv2d semantics) as implicit GEMMs (no im2col buffer), or
// as im2col and GEMMs on the matmul's kernels, or by Winograd (both near the end).
//
// forward:        y[n,oc,oh,ow] = b[oc] + sum_k w[oc,k] * x[n, g*Cg+c, oh*SH-PH+kh*DH, ow*SW-PW+kw*DW]
//                 with k = (c,kh,kw) over Cg*KH*KW: GEMM rows = output channels, columns = output pixels.
// backwardInput:  dx[n,c,ih,iw] = sum over (oc,kh,kw) of the output positions that read x[n,c,ih,iw]:
//                 oh = (ih+PH-kh*DH)/SH when that divides exactly and lands in [0,OH), same for ow,
//                 of dy[n,oc,oh,ow] * w[oc,c,kh,kw]. A gather (no atomics): rows = input channels,
//                 columns = input pixels, k = (oc,kh,kw), the weight read through its transpose wT;
//                 one dispatch per stride phase, so that only taps that exist are visited.
// backwardWeight: dw[oc,c,kh,kw] = sum over n,oh,ow of dy[n,oc,oh,ow] * x[n,g*Cg+c, ...] : rows = output
//                 channels, columns = (c,kh,kw), k = output pixels (one image after another).
// backwardBias:   db[oc] = sum over n,oh,ow of dy[n,oc,oh,ow].
//
// The three GEMMs share one scheme, chosen for CPU adapters where every storage load is a per-lane
// scalar loop: a workgroup is one subgroup of SG lanes. Each lane owns TM rows (operand A, read as
// vec4 along k when rows are 4-aligned) and all lanes share TN columns (operand B, the gathered
// im2col / col2im element). B is loaded once per subgroup: for a chunk of SG values of k, lane l
// loads B[k0+l][j] for the TN columns and the others read it with a subgroup shuffle (or, without
// the subgroups feature, through workgroup memory). Each lane accumulates a TM x TN register tile.
// Geometry is runtime (one pipeline serves every convolution); integer divisions by it go through
// divFloor, as the vector units have no integer divide.
{{ENABLE}}

struct Params {
  N: u32, C: u32, H: u32, W: u32,      // input  x: [N,C,H,W]
  OC: u32, OH: u32, OW: u32,           // output y: [N,OC,OH,OW]
  Cg: u32, OCg: u32,                   // channels per group (in, out)
  KH: u32, KW: u32,                    // kernel w: [OC,Cg,KH,KW]
  SH: u32, SW: u32,                    // stride
  PH: u32, PW: u32,                    // zero padding
  DH: u32, DW: u32,                    // dilation
  hasBias: u32,
  // forward's inference epilogue (conv2dFused): y = relu(a*(acc + bias - m) + c + residual)
  hasAffine: u32,                      // per output channel (_, a, c, m) coefficients (eval batchnorm)
  hasResidual: u32,                    // add residual: [N,OC,OH,OW]
  relu: u32,
  // backwardInput and transposeWeight work on one phase at a time (see backwardInput):
  ihs: u32, iws: u32,                  // first input row, column of the phase
  Hr: u32, Wr: u32,                    // its rows, columns (every SH-th, SW-th)
  qh0: u32, qw0: u32,                  // (ihs + PH) / SH, (iws + PW) / SW
  kh0: u32, kw0: u32,                  // first tap row, column reaching the phase
  khStep: u32, kwStep: u32,            // and the step to the next one
  nkh: u32, nkw: u32,                  // how many
  ah0: u32, aw0: u32,                  // (kh0 * DH - rh) / SH, (kw0 * DW - rw) / SW
  ahStep: u32, awStep: u32,            // khStep * DH / SH, kwStep * DW / SW
  wTOffset: u32,                       // where the phase's block of wT starts
  flip: u32,                           // winogradWeight: transform w rotated and transposed (dx)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;           // operand B source (x or dy)
@group(0) @binding(3) var<storage, read> a: array<{{A_ELEM}}>;   // operand A (rows private to lanes)
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read> affine: array<vec4f>;   // forward epilogue only
@group(0) @binding(6) var<storage, read> residual: array<f32>;

override SG: u32 = 8u;   // lanes per workgroup = subgroup size = k per shared chunk
override TM: u32 = 2u;   // rows per lane
override TN: u32 = 12u;  // columns per workgroup (and per lane)
const MAXM = 8u;   // bounds of TM and TN (register arrays need constant sizes)
const MAXN = 16u;

var<private> acc: array<array<f32, MAXN>, MAXM>;  // the lane's TM x TN tile
var<private> aRow: array<u32, MAXM>;              // element index of k = 0 in each of the lane's A rows
var<private> bLane: array<f32, MAXN>;             // B[k0 + lane][j] for the TN columns
var<workgroup> bShared: array<f32, SG * MAXN>;   // B chunk when subgroups are unavailable

// floor(n / d) given inv = 1.0 / f32(d): exact for n < 2^22 (the op checks its sizes), as
// (n + 0.5) / d is at least 0.5 / d away from an integer and two roundings move it by less.
fn divFloor(n: u32, inv: f32) -> u32 {
  return u32((f32(n) + 0.5) * inv);
}

// Four consecutive A elements of one row from element e (e % 4 == 0 on the vec4 path).
fn loadA4(e: u32) -> vec4f {
  return {{LOAD_A4}};
}

// Without subgroups: every lane's B values go through workgroup memory.
fn publishB(lane: u32) {
  for (var j = 0u; j < TN; j++) { bShared[lane * MAXN + j] = bLane[j]; }
  workgroupBarrier();
}

// acc += A[rows, k0 .. k0+SG) * B[k0 .. k0+SG, columns]; kEnd masks the tail of a row.
fn accumulateChunk(lane: u32, k0: u32, kEnd: u32) {
  {{PUBLISH_B}}
  for (var q = 0u; q < SG; q += 4u) {
    // A elements at or past kEnd belong to the next row or to nothing: zero them so they cannot
    // add NaN * 0 (their B values are zero already).
    let live = (vec4u(k0 + q) + vec4u(0u, 1u, 2u, 3u)) < vec4u(kEnd);
    var a4: array<vec4f, MAXM>;
    for (var i = 0u; i < TM; i++) { a4[i] = select(vec4f(0.0), loadA4(aRow[i] + k0 + q), live); }
    for (var r = 0u; r < 4u; r++) {
      let s = q + r;
      for (var j = 0u; j < TN; j++) {
        let bv = {{READ_B}};
        for (var i = 0u; i < TM; i++) { acc[i][j] = fma(a4[i][r], bv, acc[i][j]); }
      }
    }
  }
  {{DONE_B}}
}

// The first column of the workgroup's tile, from the dispatch (x, y: tiles along the columns,
// folded as by grid(); z: row tile + group * rowTiles).
fn colTile(wid: vec3u, nwg: vec3u) -> u32 { return (wid.x + wid.y * nwg.x) * TN; }

// The (channel, tap row, tap column) of a flat k over channels x taps, taps = rows x cols.
struct Tap { ch: u32, th: u32, tw: u32 }

fn tapOf(k: u32, taps: u32, cols: u32, invTaps: f32, invCols: f32) -> Tap {
  let ch = divFloor(k, invTaps);
  let t = k - ch * taps;
  let th = divFloor(t, invCols);
  return Tap(ch, th, t - th * cols);
}

// y: [N,OC,OH,OW] = conv(x: [N,C,H,W], w: [OC,Cg,KH,KW]) + bias: [OC]; A = w, B = x. For inference
// the epilogue may go on (conv2dFused): an eval batchnorm's affine map affine: [OC] (one pass over y
// saved, and its dispatch), a residual: [N,OC,OH,OW] added, a ReLU.
@compute @workgroup_size(SG)
fn forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let rowTiles = (p.OCg + SG * TM - 1u) / (SG * TM);
  let g = wid.z / rowTiles;
  let row0 = (wid.z - g * rowTiles) * SG * TM + lane * TM;  // first output channel of the lane, in group
  let OHW = p.OH * p.OW;
  let P = p.N * OHW;
  let HW = p.H * p.W;
  let K = p.Cg * p.KH * p.KW;
  let invKK = 1.0 / f32(p.KH * p.KW);
  let invKW = 1.0 / f32(p.KW);
  let pix0 = colTile(wid, nwg);
  // per column (output pixel): where its receptive field starts, and where it is stored (less the
  // channel's offset). The first column's (n, oh, ow) takes divisions, the next ones a step each:
  // the vector units have no integer divide, and TN of them per lane cost as much as a short k loop.
  var xBase: array<u32, MAXN>;
  var yBase: array<u32, MAXN>;
  var ih0: array<i32, MAXN>;
  var iw0: array<i32, MAXN>;
  var live: array<bool, MAXN>;
  var n = pix0 / OHW;
  var oh = (pix0 - n * OHW) / p.OW;
  var ow = pix0 - n * OHW - oh * p.OW;
  for (var j = 0u; j < TN; j++) {
    live[j] = pix0 + j < P;
    xBase[j] = (n * p.C + g * p.Cg) * HW;
    yBase[j] = n * p.OC * OHW + oh * p.OW + ow;
    ih0[j] = i32(oh * p.SH) - i32(p.PH);
    iw0[j] = i32(ow * p.SW) - i32(p.PW);
    ow++;
    if (ow == p.OW) { ow = 0u; oh++; }
    if (oh == p.OH) { oh = 0u; n++; }
  }
  for (var i = 0u; i < TM; i++) { aRow[i] = (g * p.OCg + min(row0 + i, p.OCg - 1u)) * K; }
  for (var k0 = 0u; k0 < K; k0 += SG) {
    let k = k0 + lane;
    let tap = tapOf(k, p.KH * p.KW, p.KW, invKK, invKW);
    let dh = i32(tap.th * p.DH);
    let dw = i32(tap.tw * p.DW);
    let xc = tap.ch * HW;
    for (var j = 0u; j < TN; j++) {
      let ih = ih0[j] + dh;
      let iw = iw0[j] + dw;
      let ok = live[j] && k < K && u32(ih) < p.H && u32(iw) < p.W;
      bLane[j] = select(0.0, b[select(0u, xBase[j] + xc + u32(ih) * p.W + u32(iw), ok)], ok);
    }
    accumulateChunk(lane, k0, K);
  }
  for (var i = 0u; i < TM; i++) {
    if (row0 + i >= p.OCg) { break; }
    let oc = g * p.OCg + row0 + i;
    let e = epilogueOf(oc);
    for (var j = 0u; j < TN; j++) {
      if (live[j]) {
        let at = yBase[j] + oc * OHW;
        out[at] = applyEpilogue(e, acc[i][j], at);
      }
    }
  }
}

// The forward's epilogue for output channel oc: its bias and eval-batchnorm coefficients
// (_, a, c, m); applyEpilogue maps a sum v stored at y[at] to relu(a*(v + bias - m) + c + residual).
struct Epilogue { bias: f32, coef: vec4f }

fn epilogueOf(oc: u32) -> Epilogue {
  var coef = vec4f(0.0, 1.0, 0.0, 0.0);  // identity: 1 * (v - 0) + 0
  if (p.hasAffine != 0u) { coef = affine[oc]; }
  return Epilogue(select(0.0, bias[oc], p.hasBias != 0u), coef);
}

fn applyEpilogue(e: Epilogue, sum: f32, at: u32) -> f32 {
  var v = e.coef.y * (sum + e.bias - e.coef.w) + e.coef.z;
  if (p.hasResidual != 0u) { v += residual[at]; }
  if (p.relu != 0u) { v = max(v, 0.0); }
  return v;
}

// dx: [N,C,H,W] from dy: [N,OC,OH,OW] and wT (w transposed, in phase blocks); A = wT, B = dy
// gathered at the output positions each input pixel contributed to.
// Output row oh reads input row ih through tap kh when oh*SH + kh*DH = ih + PH. Writing
// ih + PH = qh*SH + rh and kh*DH = ah*SH + bh, that holds iff bh == rh and oh = qh - ah. So the
// input pixels split into SH*SW phases (rh, rw), each reached by its own subset of the taps,
// kh = kh0 + th*khStep (th < nkh): one dispatch per phase does only the products that exist
// (a quarter of them at stride 2), and finding oh costs one subtraction.
@compute @workgroup_size(SG)
fn backwardInput(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let rowTiles = (p.Cg + SG * TM - 1u) / (SG * TM);
  let g = wid.z / rowTiles;
  let row0 = (wid.z - g * rowTiles) * SG * TM + lane * TM;  // first input channel of the lane, in group
  let HrWr = p.Hr * p.Wr;
  let P = p.N * HrWr;  // pixels of this phase
  let OHW = p.OH * p.OW;
  let taps = p.nkh * p.nkw;
  let K = p.OCg * taps;
  let invTaps = 1.0 / f32(taps);
  let invNkw = 1.0 / f32(p.nkw);
  let pix0 = colTile(wid, nwg);
  // per column (input pixel of the phase, its row m and column r in the phase): where its
  // gradient gathers from, and where it is stored less the channel's offset (stepped as in forward)
  var dyBase: array<u32, MAXN>;
  var dxBase: array<u32, MAXN>;
  var qh: array<i32, MAXN>;
  var qw: array<i32, MAXN>;
  var live: array<bool, MAXN>;
  var n = pix0 / HrWr;
  var m = (pix0 - n * HrWr) / p.Wr;
  var r = pix0 - n * HrWr - m * p.Wr;
  for (var j = 0u; j < TN; j++) {
    live[j] = pix0 + j < P;
    dyBase[j] = (n * p.OC + g * p.OCg) * OHW;
    dxBase[j] = (n * p.C * p.H + p.ihs + m * p.SH) * p.W + p.iws + r * p.SW;
    qh[j] = i32(p.qh0 + m);
    qw[j] = i32(p.qw0 + r);
    r++;
    if (r == p.Wr) { r = 0u; m++; }
    if (m == p.Hr) { m = 0u; n++; }
  }
  for (var i = 0u; i < TM; i++) { aRow[i] = p.wTOffset + (g * p.Cg + min(row0 + i, p.Cg - 1u)) * K; }
  for (var k0 = 0u; k0 < K; k0 += SG) {
    let k = k0 + lane;
    let tap = tapOf(k, taps, p.nkw, invTaps, invNkw);
    let ah = i32(p.ah0 + tap.th * p.ahStep);
    let aw = i32(p.aw0 + tap.tw * p.awStep);
    let dyc = tap.ch * OHW;
    for (var j = 0u; j < TN; j++) {
      let oh = u32(qh[j] - ah);
      let ow = u32(qw[j] - aw);
      let ok = live[j] && k < K && oh < p.OH && ow < p.OW;
      bLane[j] = select(0.0, b[select(0u, dyBase[j] + dyc + oh * p.OW + ow, ok)], ok);
    }
    accumulateChunk(lane, k0, K);
  }
  for (var i = 0u; i < TM; i++) {
    if (row0 + i >= p.Cg) { break; }
    let c = g * p.Cg + row0 + i;
    for (var j = 0u; j < TN; j++) {
      if (live[j]) { out[dxBase[j] + c * p.H * p.W] = acc[i][j]; }
    }
  }
}

// dw: [OC,Cg,KH,KW] from dy: [N,OC,OH,OW] and x: [N,C,H,W]; A = dy (one image at a time), B = x taps
@compute @workgroup_size(SG)
fn backwardWeight(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let rowTiles = (p.OCg + SG * TM - 1u) / (SG * TM);
  let g = wid.z / rowTiles;
  let row0 = (wid.z - g * rowTiles) * SG * TM + lane * TM;  // first output channel of the lane, in group
  let HW = p.H * p.W;
  let OHW = p.OH * p.OW;
  let KK = p.KH * p.KW;
  let cols = p.Cg * KK;
  let col0 = colTile(wid, nwg);
  var xOff: array<u32, MAXN>;  // per column (c,kh,kw): channel offset and tap offsets
  var khOff: array<i32, MAXN>;
  var kwOff: array<i32, MAXN>;
  var live: array<bool, MAXN>;
  let invKK = 1.0 / f32(KK);
  let invKW = 1.0 / f32(p.KW);
  for (var j = 0u; j < TN; j++) {
    // per workgroup, but the reduction over pixels can be short (7x7 maps)
    let col = col0 + j;
    let tap = tapOf(col, KK, p.KW, invKK, invKW);
    live[j] = col < cols;
    xOff[j] = (g * p.Cg + tap.ch) * HW;
    khOff[j] = i32(tap.th * p.DH) - i32(p.PH);
    kwOff[j] = i32(tap.tw * p.DW) - i32(p.PW);
  }
  let invOW = 1.0 / f32(p.OW);
  for (var n = 0u; n < p.N; n++) {
    for (var i = 0u; i < TM; i++) { aRow[i] = (n * p.OC + g * p.OCg + min(row0 + i, p.OCg - 1u)) * OHW; }
    let xn = n * p.C * HW;
    for (var k0 = 0u; k0 < OHW; k0 += SG) {
      let pix = k0 + lane;  // the lane's output pixel
      let oh = divFloor(pix, invOW);
      let ow = pix - oh * p.OW;
      let ih0 = i32(oh * p.SH);
      let iw0 = i32(ow * p.SW);
      for (var j = 0u; j < TN; j++) {
        let ih = ih0 + khOff[j];
        let iw = iw0 + kwOff[j];
        let ok = live[j] && pix < OHW && u32(ih) < p.H && u32(iw) < p.W;
        bLane[j] = select(0.0, b[select(0u, xn + xOff[j] + u32(ih) * p.W + u32(iw), ok)], ok);
      }
      accumulateChunk(lane, k0, OHW);
    }
  }
  for (var i = 0u; i < TM; i++) {
    if (row0 + i >= p.OCg) { break; }
    let oc = g * p.OCg + row0 + i;
    for (var j = 0u; j < TN; j++) {
      if (live[j]) { out[oc * cols + col0 + j] = acc[i][j]; }
    }
  }
}

// db: [OC] = sum of dy: [N,OC,OH,OW] over N, OH, OW; one workgroup per channel, tree reduction
override BIAS_WG: u32 = 64u;
var<workgroup> partial: array<f32, BIAS_WG>;

@compute @workgroup_size(BIAS_WG)
fn backwardBias(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let oc = wid.x;
  let OHW = p.OH * p.OW;
  var s = 0.0;
  for (var n = 0u; n < p.N; n++) {
    let base = (n * p.OC + oc) * OHW;
    for (var i = lid; i < OHW; i += BIAS_WG) { s += b[base + i]; }
  }
  partial[lid] = s;
  workgroupBarrier();
  for (var half = BIAS_WG / 2u; half > 0u; half /= 2u) {
    if (lid < half) { partial[lid] += partial[lid + half]; }
    workgroupBarrier();
  }
  if (lid == 0u) { out[oc] = partial[0]; }
}

// One phase block of wT: [C, OCg, nkh, nkw] at wTOffset, from w: [OC,Cg,KH,KW] with the channels
// in and out swapped within each group and only the taps that reach the phase, so that
// backwardInput reads its rows contiguously along k = (oc, th, tw). One invocation per (c, oc)
// pair copies its taps (x: output channel in the group, y: global input channel).
@compute @workgroup_size(64)
fn transposeWeight(@builtin(global_invocation_id) gid: vec3u) {
  let ocl = gid.x;
  let c = gid.y;
  if (ocl >= p.OCg) { return; }
  let g = c / p.Cg;
  let src = ((g * p.OCg + ocl) * p.Cg + c - g * p.Cg) * p.KH * p.KW;
  let dst = p.wTOffset + (c * p.OCg + ocl) * p.nkh * p.nkw;
  for (var th = 0u; th < p.nkh; th++) {
    let kh = p.kh0 + th * p.khStep;
    for (var tw = 0u; tw < p.nkw; tw++) {
      out[dst + th * p.nkw + tw] = b[src + kh * p.KW + p.kw0 + tw * p.kwStep];
    }
  }
}

// ---- im2col + GEMM (groups 1): the products on the GEMM kernels of src/ops/matmul.ts ------------
//
// The column matrix col: [N, K, P] (K = C*KH*KW rows k = (c,kh,kw), P = OH*OW columns) holds each
// image's receptive fields, so that y[n] = w [OC,K] col[n], dcol[n] = w^T dy[n] (then col2im sums
// dcol into dx) and dw = sum_n dy[n] col[n]^T are plain GEMMs: the matmul's shared-tile kernel
// instead of the implicit GEMMs above, for one pass over col (N*K*P, at most KH*KW times x).

// col: [N, K, P] from x: [N,C,H,W] (zeros where a tap falls in the padding), or with BATCH_INNER
// col: [K, N, P], the layout in which the weight gradient's sum over the images and pixels is one
// GEMM's reduction (dw = dy [OC, N*P] col^T; a pointwise conv's x transposed). Each lane writes
// 4*G consecutive columns of one row: the row's divisions and the first pixel's are paid once for
// them, then the lane steps along ow; where P is a multiple of 4 (every row starts 16-byte
// aligned) they go out as G vec4 stores (im2col4), else as scalars (im2col). A row has
// Q = ceil(P / 4G) lane-runs; a workgroup takes R = max(1, 64 / Q) whole rows (x: 0, z: rows z*R..)
// when they are short (ResNet18's last layers, where one row per workgroup left most lanes
// idle), else 64 runs of one row (x: runs / 64, z: row n*K + k).
override G: u32 = 1u;  // vec4s of columns per lane
override BATCH_INNER: bool = false;  // col stored [K, N, P] instead of [N, K, P]
@group(0) @binding(1) var<storage, read_write> col4: array<vec4f>;  // out seen as vec4s (im2col4 alone uses it)

// where a lane is in col: the row's input plane and tap, the output pixel of its next column, and
// where row n*K + k is stored
struct ColCursor { plane: u32, kh: u32, kw: u32, oh: u32, ow: u32, stored: u32 }

fn colCursor(row: u32, q0: u32) -> ColCursor {
  let taps = p.KH * p.KW;
  let K = p.C * taps;
  let n = divFloor(row, 1.0 / f32(K));  // per lane where a workgroup packs rows
  let k = row - n * K;
  let c = divFloor(k, 1.0 / f32(taps));
  let kh = divFloor(k - c * taps, 1.0 / f32(p.KW));
  let oh = divFloor(q0, 1.0 / f32(p.OW));
  return ColCursor((n * p.C + c) * p.H * p.W, kh, k - c * taps - kh * p.KW, oh, q0 - oh * p.OW, select(row, k * p.N + n, BATCH_INNER));
}

// the next 4 columns' values (those past P are don't-cares), the cursor moved past them
fn colNext4(at: ptr<function, ColCursor>) -> vec4f {
  var v: vec4f;
  for (var j = 0u; j < 4u; j++) {
    let ih = i32((*at).oh * p.SH + (*at).kh * p.DH) - i32(p.PH);
    let iw = i32((*at).ow * p.SW + (*at).kw * p.DW) - i32(p.PW);
    let ok = u32(ih) < p.H && u32(iw) < p.W;
    v[j] = select(0.0, b[select(0u, (*at).plane + u32(ih) * p.W + u32(iw), ok)], ok);
    (*at).ow += 1u;
    if ((*at).ow == p.OW) { (*at).ow = 0u; (*at).oh += 1u; }
  }
  return v;
}

// the row and first column of lane `lane` of workgroup `wg`, or row = N*K when it has none
fn im2colLane(wg: vec3u, lane: u32) -> vec2u {
  let P = p.OH * p.OW;
  let Q = (P + 4u * G - 1u) / (4u * G);
  let R = max(1u, 64u / Q);
  let r = select(0u, divFloor(lane, 1.0 / f32(Q)), R > 1u);
  let run = wg.x * 64u + lane - r * Q;
  let row = wg.z * R + r;
  let rows = p.N * p.C * p.KH * p.KW;
  return select(vec2u(rows, 0u), vec2u(row, 4u * G * run), r < R && row < rows && run < Q);
}

@compute @workgroup_size(64)
fn im2col4(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wid: vec3u) {
  let at = im2colLane(wid, lane);
  if (at.x == p.N * p.C * p.KH * p.KW) { return; }
  let P = p.OH * p.OW;
  var cur = colCursor(at.x, at.y);
  let n4 = min(G, (P - at.y) / 4u);
  for (var i = 0u; i < n4; i++) { col4[(cur.stored * P + at.y) / 4u + i] = colNext4(&cur); }
}

@compute @workgroup_size(64)
fn im2col(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wid: vec3u) {
  let at = im2colLane(wid, lane);
  if (at.x == p.N * p.C * p.KH * p.KW) { return; }
  let P = p.OH * p.OW;
  var cur = colCursor(at.x, at.y);
  for (var q = at.y; q < min(at.y + 4u * G, P); q += 4u) {
    let v = colNext4(&cur);
    for (var j = 0u; j < min(4u, P - q); j++) { out[cur.stored * P + q + j] = v[j]; }
  }
}

// dx: [N,C,H,W] = the sum, over the taps (kh, kw) through which output pixel (oh, ow) read
// x[n,c,ih,iw] (oh*SH + kh*DH = ih + PH, likewise along W), of dcol: [N, K, P]; a gather, no
// atomics. Each lane sums 4 adjacent pixels of a row (a row has Q = ceil(W / 4) such runs), its
// index work and each tap row's checks paid once for them; small planes are packed R = 64 / (H*Q)
// to a workgroup (x: 0, z: planes z*R..), larger ones take ceil(H*Q / 64) workgroups (x) each (z:
// plane n*C + c): on lavapipe a workgroup of pixels a lane each cost more than its loads
// (bench/NOTES.md section 21).
@compute @workgroup_size(64)
fn col2im(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wid: vec3u) {
  let Q = (p.W + 3u) / 4u;
  let L = p.H * Q;  // lanes a plane
  let R = max(1u, 64u / L);
  let j = select(0u, divFloor(lane, 1.0 / f32(L)), R > 1u);
  let run = wid.x * 64u + lane - j * L;
  let plane = wid.z * R + j;
  if (j >= R || plane >= p.N * p.C || run >= L) { return; }
  let ih = divFloor(run, 1.0 / f32(Q));
  let iw0 = (run - ih * Q) * 4u;
  let P = p.OH * p.OW;
  let invSH = 1.0 / f32(p.SH);
  let invSW = 1.0 / f32(p.SW);
  let rows = plane * p.KH * p.KW;  // dcol's row of (c, 0, 0) in image n: (n*C + c) * KH*KW
  var s = vec4f(0.0);
  for (var kh = 0u; kh < p.KH; kh++) {
    let th = i32(ih + p.PH) - i32(kh * p.DH);  // oh * SH
    let oh = divFloor(u32(th), invSH);
    if (th < 0 || oh * p.SH != u32(th) || oh >= p.OH) { continue; }
    for (var kw = 0u; kw < p.KW; kw++) {
      let at = (rows + kh * p.KW + kw) * P + oh * p.OW;
      for (var e = 0u; e < 4u; e++) {
        let tw = i32(iw0 + e + p.PW) - i32(kw * p.DW);
        let ow = divFloor(u32(tw), invSW);
        if (tw >= 0 && ow * p.SW == u32(tw) && ow < p.OW) { s[e] += b[at + ow]; }
      }
    }
  }
  for (var e = 0u; e < min(4u, p.W - iw0); e++) { out[(plane * p.H + ih) * p.W + iw0 + e] = s[e]; }
}


// ---- Winograd F(m x m, 3x3) for 3x3 stride-1 convolutions (Lavin & Gray, 2015), m = 2 or 4 ------
//
// Each m x m block of outputs ("tile") needs an a x a input patch d, a = m + 2. With U = G g G^T
// (the 3x3 filter g taken to a x a) and V = B^T d B (the patch transformed), the tile is
// Y = A^T (sum_c U (.) V) A, (.) elementwise: a^2 multiplies per tile and input channel instead of
// 9 m^2 (16 instead of 36 for m = 2, 36 instead of 144 for m = 4; the larger tile rounds more).
// The sums over c are a^2 independent GEMMs, M[xi] = U[xi] V[xi] for the positions xi of the a x a
// transform (GEMMs on the matmul kernels, src/ops/matmul.ts), the tiles padded to a multiple of 4 (Tp) so that V's lines are whole vec4s:
//   V: [a^2, C, Tp] (T = N * tilesH * tilesW),  U: [a^2, OC, C],  M: [a^2, OC, Tp].
// The matrices, as the 1-D transforms below (each 2-D one is a 1-D one down the columns, then
// along the rows):
//   m = 2: B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
//          A^T = [1 1 1 0; 0 1 -1 -1]
//   m = 4: B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1],
//          G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1],
//          A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
// The transforms take the geometry of the convolution computed (for dx: dy convolved with w
// rotated by 180 degrees and transposed, padding 2 - PH); tiles are indexed t = (n*tH + th)*tW + tw.
// The weight gradient follows from Y = A^T Z A, Z = U (.) V, U = G g G^T by the chain rule:
// dZ = A dY A^T per tile, dU[oc,c] = sum over tiles of dZ[oc] (.) V[c] (a^2 GEMMs again, now
// reducing over the tiles), dg = G^T dU G:
//   dZ: [a^2, Tp, OC] (tiles first, so that B's lines run along OC),  dU^T: [a^2, C, OC].

override WM: u32 = 2u;  // m, outputs per tile side: 2 or 4
const WA = 6u;          // the largest a; patches are held in WA x WA arrays
alias Line = array<f32, WA>;
alias Patch = array<Line, WA>;

fn tilesOf(size: u32) -> u32 { return (size + WM - 1u) / WM; }

// B^T v (a values)
fn inputT(v: Line) -> Line {
  if (WM == 2u) { return Line(v[0] - v[2], v[1] + v[2], v[2] - v[1], v[1] - v[3], 0.0, 0.0); }
  return Line(4.0 * v[0] - 5.0 * v[2] + v[4], -4.0 * (v[1] + v[2]) + v[3] + v[4], 4.0 * (v[1] - v[2]) - v[3] + v[4],
              2.0 * (v[3] - v[1]) - v[2] + v[4], 2.0 * (v[1] - v[3]) - v[2] + v[4], 4.0 * v[1] - 5.0 * v[3] + v[5]);
}

// G g (3 values in v[0..3), a out)
fn weightT(v: Line) -> Line {
  if (WM == 2u) { return Line(v[0], 0.5 * (v[0] + v[1] + v[2]), 0.5 * (v[0] - v[1] + v[2]), v[2], 0.0, 0.0); }
  return Line(0.25 * v[0], -(v[0] + v[1] + v[2]) / 6.0, -(v[0] - v[1] + v[2]) / 6.0,
              v[0] / 24.0 + v[1] / 12.0 + v[2] / 6.0, v[0] / 24.0 - v[1] / 12.0 + v[2] / 6.0, v[2]);
}

// A^T v (a values in, m out)
fn outputT(v: Line) -> Line {
  if (WM == 2u) { return Line(v[0] + v[1] + v[2], v[1] - v[2] - v[3], 0.0, 0.0, 0.0, 0.0); }
  return Line(v[0] + v[1] + v[2] + v[3] + v[4], v[1] - v[2] + 2.0 * (v[3] - v[4]), v[1] + v[2] + 4.0 * (v[3] + v[4]),
              v[1] - v[2] + 8.0 * (v[3] - v[4]) + v[5], 0.0, 0.0);
}

// A v (m values in, a out): the output transform's transpose, for dZ
fn outputGradT(v: Line) -> Line {
  if (WM == 2u) { return Line(v[0], v[0] + v[1], v[0] - v[1], -v[1], 0.0, 0.0); }
  return Line(v[0], v[0] + v[1] + v[2] + v[3], v[0] - v[1] + v[2] - v[3], v[0] + 2.0 * v[1] + 4.0 * v[2] + 8.0 * v[3],
              v[0] - 2.0 * v[1] + 4.0 * v[2] - 8.0 * v[3], v[3]);
}

// G^T v (a values in, 3 out): the weight transform's transpose, for dw
fn weightGradT(v: Line) -> Line {
  if (WM == 2u) { return Line(v[0] + 0.5 * (v[1] + v[2]), 0.5 * (v[1] - v[2]), 0.5 * (v[1] + v[2]) + v[3], 0.0, 0.0, 0.0); }
  return Line(0.25 * v[0] - (v[1] + v[2]) / 6.0 + (v[3] + v[4]) / 24.0, (v[2] - v[1]) / 6.0 + (v[3] - v[4]) / 12.0,
              (v[3] + v[4] - v[1] - v[2]) / 6.0 + v[5], 0.0, 0.0, 0.0);
}

// The 1-D transform `which` (0 input, 1 weight, 2 output, 3 output gradient, 4 weight gradient)
fn transform1(which: u32, v: Line) -> Line {
  switch which {
    case 0u: { return inputT(v); }
    case 1u: { return weightT(v); }
    case 2u: { return outputT(v); }
    case 3u: { return outputGradT(v); }
    default: { return weightGradT(v); }
  }
}

// The 2-D transform T d T^T of patch d: transform1 down each of the first `cols` columns, then
// along each row; rows and columns past what it produces are zero.
fn transform2(which: u32, d: Patch, cols: u32) -> Patch {
  var e: Patch;  // e[r][q] = (T d)[r][q]
  for (var q = 0u; q < cols; q++) {
    var col: Line;
    for (var r = 0u; r < WA; r++) { col[r] = d[r][q]; }
    let t = transform1(which, col);
    for (var r = 0u; r < WA; r++) { e[r][q] = t[r]; }
  }
  var out2: Patch;
  for (var r = 0u; r < WA; r++) { out2[r] = transform1(which, e[r]); }
  return out2;
}

// The convolution's tiles: tH x tW per image, T in all, Tp = T padded to a multiple of 4
struct Tiles { tH: u32, tW: u32, T: u32, Tp: u32 }

fn winogradTiles() -> Tiles {
  let tH = tilesOf(p.OH);
  let tW = tilesOf(p.OW);
  let T = p.N * tH * tW;
  return Tiles(tH, tW, T, (T + 3u) / 4u * 4u);
}

// The tile t's image and tile row and column
fn tileOf(t: u32, tiles: Tiles) -> vec3u {
  let per = tiles.tH * tiles.tW;
  let n = t / per;
  let th = (t - n * per) / tiles.tW;
  return vec3u(n, th, t - n * per - th * tiles.tW);
}

// V: [a^2, C, Tp] from x: [N,C,H,W]; x: tiles of the row, y: channel
@compute @workgroup_size(64)
fn winogradInput(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let a = WM + 2u;
  let tiles = winogradTiles();
  let T = tiles.T;
  let Tp = tiles.Tp;
  let t = wid.x * 64u + lid;
  let c = wid.y;
  if (t >= Tp) { return; }
  let tile = tileOf(t, tiles);
  let ih0 = i32(WM * tile.y) - i32(p.PH);
  let iw0 = i32(WM * tile.z) - i32(p.PW);
  let base = (tile.x * p.C + c) * p.H * p.W;
  var d: Patch;  // zeros past the input's edges and for the padding tiles t >= T
  for (var r = 0u; r < a; r++) {
    let ih = ih0 + i32(r);
    for (var q = 0u; q < a; q++) {
      let iw = iw0 + i32(q);
      let ok = t < T && u32(ih) < p.H && u32(iw) < p.W;
      d[r][q] = select(0.0, b[select(0u, base + u32(ih) * p.W + u32(iw), ok)], ok);
    }
  }
  let v = transform2(0u, d, a);
  let plane = p.C * Tp;
  let at = c * Tp + t;
  for (var r = 0u; r < a; r++) {
    for (var q = 0u; q < a; q++) { out[(r * a + q) * plane + at] = v[r][q]; }
  }
}

// U: [a^2, OC, C] from w: [OC,C,3,3] (flip = 0) or, for the input gradient, from w: [C,OC,3,3]
// rotated by 180 degrees (flip = 1); x: input channel, y: output channel of the conv computed
@compute @workgroup_size(64)
fn winogradWeight(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let a = WM + 2u;
  let c = wid.x * 64u + lid;
  let oc = wid.y;
  if (c >= p.C) { return; }
  var g: Patch;
  for (var kh = 0u; kh < 3u; kh++) {
    for (var kw = 0u; kw < 3u; kw++) {
      let src = select((oc * p.C + c) * 9u + kh * 3u + kw, (c * p.OC + oc) * 9u + (2u - kh) * 3u + 2u - kw, p.flip != 0u);
      g[kh][kw] = b[src];
    }
  }
  let u = transform2(1u, g, 3u);
  let plane = p.OC * p.C;
  let at = oc * p.C + c;
  for (var r = 0u; r < a; r++) {
    for (var q = 0u; q < a; q++) { out[(r * a + q) * plane + at] = u[r][q]; }
  }
}

// y: [N,OC,OH,OW] from M: [a^2, OC, Tp], with forward's epilogue (bias, eval batchnorm, residual,
// ReLU); x: tiles of the row, y: output channel
@compute @workgroup_size(64)
fn winogradOutput(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let a = WM + 2u;
  let tiles = winogradTiles();
  let T = tiles.T;
  let Tp = tiles.Tp;
  let t = wid.x * 64u + lid;
  let oc = wid.y;
  if (t >= T) { return; }
  let plane = p.OC * Tp;
  let at = oc * Tp + t;
  var m: Patch;
  for (var r = 0u; r < a; r++) {
    for (var q = 0u; q < a; q++) { m[r][q] = b[(r * a + q) * plane + at]; }
  }
  let yt = transform2(2u, m, a);
  let tile = tileOf(t, tiles);
  let e = epilogueOf(oc);
  for (var r = 0u; r < WM; r++) {
    let oh = WM * tile.y + r;
    for (var q = 0u; q < WM; q++) {
      let ow = WM * tile.z + q;
      if (oh < p.OH && ow < p.OW) {
        let o = ((tile.x * p.OC + oc) * p.OH + oh) * p.OW + ow;
        out[o] = applyEpilogue(e, yt[r][q], o);
      }
    }
  }
}

// dZ: [a^2, Tp, OC] = A dY A^T for every m x m tile of dy: [N,OC,OH,OW] (zeros past its edges and
// for the padding tiles); x: output channels (the lines written), y + 65535 z: tile
@compute @workgroup_size(64)
fn winogradOutputGrad(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let a = WM + 2u;
  let tiles = winogradTiles();
  let T = tiles.T;
  let Tp = tiles.Tp;
  let oc = wid.x * 64u + lid;
  let t = wid.y + wid.z * 65535u;
  if (oc >= p.OC || t >= Tp) { return; }
  let tile = tileOf(t, tiles);
  var dy: Patch;
  for (var r = 0u; r < WM; r++) {
    for (var q = 0u; q < WM; q++) {
      let oh = WM * tile.y + r;
      let ow = WM * tile.z + q;
      let ok = t < T && oh < p.OH && ow < p.OW;
      dy[r][q] = select(0.0, b[select(0u, ((tile.x * p.OC + oc) * p.OH + oh) * p.OW + ow, ok)], ok);
    }
  }
  let z = transform2(3u, dy, WM);
  for (var r = 0u; r < a; r++) {
    for (var q = 0u; q < a; q++) { out[((r * a + q) * Tp + t) * p.OC + oc] = z[r][q]; }
  }
}

// dw: [OC,C,3,3] = G^T dU G from dU^T: [a^2, C, OC]; x: output channel (the lines read), y: input channel
@compute @workgroup_size(64)
fn winogradWeightGrad(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let a = WM + 2u;
  let oc = wid.x * 64u + lid;
  let c = wid.y;
  if (oc >= p.OC) { return; }
  var m: Patch;
  for (var r = 0u; r < a; r++) {
    for (var q = 0u; q < a; q++) { m[r][q] = b[((r * a + q) * p.C + c) * p.OC + oc]; }
  }
  let g = transform2(4u, m, a);
  for (var kh = 0u; kh < 3u; kh++) {
    for (var kw = 0u; kw < 3u; kw++) { out[(oc * p.C + c) * 9u + kh * 3u + kw] = g[kh][kw]; }
  }
}
