// What `--profile` prints and writes: the dispatches of a profiled window (Gpu.stopProfiling)
// summed per op kind and per layer, per step: GPU time, share of the step, dispatches, achieved
// GFLOP/s and GB/s and their share of the adapter's measured ceilings; the step's GPU time, the
// dispatches and submits per step and the CPU time spent recording them. And the same events as a
// Chrome trace-event file (chrome://tracing, ui.perfetto.dev): one complete event per dispatch on
// the GPU's track, named by its kind, with its label, layer, FLOPs and bytes as arguments.
import type { Ceilings, Profile, ProfileEvent } from '../gpu/index.ts';
import { writeFileAtomic } from '../io/files.ts';

export interface ProfileRow {
  name: string;
  /** GPU ms per step */
  ms: number;
  /** of the GPU time of all dispatches */
  share: number;
  /** dispatches per step */
  dispatches: number;
  gflops: number;
  gbs: number;
  /** share of the FMA ceiling (kernels that declare FLOPs) or of the load ceiling (the others) */
  ofCeiling?: number;
}

export interface ProfileSummary {
  steps: number;
  /** GPU time of all dispatches, per step */
  gpuMs: number;
  /** per step: first dispatch's begin to last dispatch's end, summed over the submits */
  spanMs: number;
  wallMs: number;
  cpuMs: number;
  dispatches: number;
  submits: number;
  byKind: ProfileRow[];
  byLayer: ProfileRow[];
  ceilings?: Ceilings;
}

const NO_LAYER = '(no layer)';

function rows(events: readonly ProfileEvent[], key: (e: ProfileEvent) => string, steps: number, totalMs: number, ceilings?: Ceilings): ProfileRow[] {
  const groups = new Map<string, { ns: number; n: number; flops: number; bytes: number }>();
  for (const e of events) {
    const k = key(e);
    const g = groups.get(k) ?? { ns: 0, n: 0, flops: 0, bytes: 0 };
    g.ns += e.endNs - e.beginNs;
    g.n++;
    g.flops += e.flops;
    g.bytes += e.bytes;
    groups.set(k, g);
  }
  return [...groups].map(([name, g]) => {
    const s = Math.max(g.ns, 1) / 1e9;
    const gflops = g.flops / s / 1e9;
    const gbs = g.bytes / s / 1e9;
    const ofCeiling = ceilings && (g.flops > 0 ? gflops / ceilings.fmaGflops : gbs / ceilings.loadGbs);
    return { name, ms: g.ns / 1e6 / steps, share: totalMs > 0 ? g.ns / 1e6 / steps / totalMs : 0, dispatches: g.n / steps, gflops, gbs, ofCeiling };
  }).sort((a, b) => b.ms - a.ms);
}

/** Sums a profile of `steps` steps per op kind and per layer. */
export function summarizeProfile(profile: Profile, steps: number, ceilings?: Ceilings): ProfileSummary {
  const ev = profile.events;
  const gpuMs = ev.reduce((a, e) => a + e.endNs - e.beginNs, 0) / 1e6 / steps;
  const spans = new Map<number, [number, number]>();
  for (const e of ev) {
    const s = spans.get(e.submit);
    spans.set(e.submit, s ? [Math.min(s[0], e.beginNs), Math.max(s[1], e.endNs)] : [e.beginNs, e.endNs]);
  }
  const spanMs = [...spans.values()].reduce((a, [b, e]) => a + e - b, 0) / 1e6 / steps;
  return {
    steps, gpuMs, spanMs,
    wallMs: profile.wallMs / steps,
    cpuMs: profile.cpuMs / steps,
    dispatches: ev.length / steps,
    submits: profile.submits / steps,
    byKind: rows(ev, (e) => e.kind, steps, gpuMs, ceilings),
    byLayer: rows(ev, (e) => e.scope || NO_LAYER, steps, gpuMs, ceilings),
    ceilings,
  };
}

const fix = (v: number, d: number, w: number) => (Number.isFinite(v) ? v.toFixed(d) : '').padStart(w);

function table(title: string, rs: readonly ProfileRow[], limit: number): string[] {
  const shown = rs.slice(0, limit);
  const width = Math.max(title.length, ...shown.map((r) => r.name.length));
  const lines = [
    `${title.padEnd(width)}  ${'ms/step'.padStart(8)}  ${'share'.padStart(6)}  ${'disp'.padStart(5)}  ${'GFLOP/s'.padStart(8)}  ${'GB/s'.padStart(7)}  ${'of peak'.padStart(7)}`,
    ...shown.map((r) =>
      `${r.name.padEnd(width)}  ${fix(r.ms, 2, 8)}  ${fix(100 * r.share, 1, 5)}%  ${fix(r.dispatches, r.dispatches % 1 ? 1 : 0, 5)}  ` +
      `${r.gflops > 0 ? fix(r.gflops, 2, 8) : ''.padStart(8)}  ${fix(r.gbs, 2, 7)}  ${r.ofCeiling !== undefined ? `${fix(100 * r.ofCeiling, 0, 5)} %` : ''.padStart(7)}`),
  ];
  if (rs.length > limit) lines.push(`(${rs.length - limit} more in the trace)`);
  return lines;
}

/** The profile as text: the totals, then the tables per op kind and per layer (slowest first). */
export function formatProfile(s: ProfileSummary, layers = 25): string {
  const c = s.ceilings;
  return [
    `profile of ${s.steps} step${s.steps === 1 ? '' : 's'}, per step: GPU ${s.gpuMs.toFixed(2)} ms in ${fix(s.dispatches, 0, 0)} dispatches ` +
      `(first to last ${s.spanMs.toFixed(2)} ms), ${s.submits.toFixed(s.submits % 1 ? 1 : 0)} submit${s.submits === 1 ? '' : 's'}, ` +
      `CPU recording ${s.cpuMs.toFixed(2)} ms, wall ${s.wallMs.toFixed(2)} ms`,
    c ? `adapter ceilings (measured): ${c.fmaGflops.toFixed(1)} GFLOP/s multiply-add, ${c.loadGbs.toFixed(2)} GB/s vec4 loads; "of peak" is the share of the first for kernels that count FLOPs, else of the second` : '',
    '',
    ...table('op kind', s.byKind, Infinity),
    '',
    ...table('layer', s.byLayer, layers),
  ].filter((l, i) => l !== '' || i > 1).join('\n');
}

/** The events as a Chrome trace-event object: one complete ('X') event per dispatch, µs. */
export function chromeTrace(profile: Profile): { traceEvents: object[]; displayTimeUnit: string } {
  const meta = [
    { name: 'process_name', ph: 'M', pid: 1, tid: 1, args: { name: 'gpunet' } },
    { name: 'thread_name', ph: 'M', pid: 1, tid: 1, args: { name: 'GPU queue' } },
  ];
  const events = profile.events.map((e) => ({
    name: e.kind,
    cat: e.scope || NO_LAYER,
    ph: 'X',
    ts: e.beginNs / 1e3,
    dur: (e.endNs - e.beginNs) / 1e3,
    pid: 1,
    tid: 1,
    args: { label: e.label, layer: e.scope, submit: e.submit, flops: e.flops, bytes: e.bytes },
  }));
  return { traceEvents: [...meta, ...events], displayTimeUnit: 'ms' };
}

/** Writes the Chrome trace of `profile` to `path` (atomically). */
export function writeTrace(path: string, profile: Profile): void {
  writeFileAtomic(path, JSON.stringify(chromeTrace(profile)));
}
