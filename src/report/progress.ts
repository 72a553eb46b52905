// A progress bar for long work: done/total, rate, ETA and a few live values, redrawn in place on a
// terminal and printed as occasional plain lines otherwise (CI logs).

export class ProgressBar {
  private readonly start = Date.now();
  private lastDraw = 0;
  private readonly tty: boolean;

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly unit = 'it',
    private readonly out: NodeJS.WriteStream = process.stderr,
  ) {
    this.tty = Boolean(out.isTTY);
  }

  update(done: number, values: Record<string, string | number> = {}): void {
    const now = Date.now();
    const final = done >= this.total;
    if (!final && now - this.lastDraw < (this.tty ? 100 : 10_000)) return;
    this.lastDraw = now;
    const secs = (now - this.start) / 1000;
    const rate = done / Math.max(secs, 1e-9);
    const eta = rate > 0 ? (this.total - done) / rate : Infinity;
    const width = 24;
    const filled = Math.round((width * Math.min(done, this.total)) / Math.max(this.total, 1));
    const extras = Object.entries(values)
      .map(([k, v]) => `${k} ${typeof v === 'number' ? formatNumber(v) : v}`)
      .join('  ');
    const line =
      `${this.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${this.total} ` +
      `${formatNumber(rate)} ${this.unit}/s  ${final ? `${formatDuration(secs)}` : `ETA ${formatDuration(eta)}`}` +
      (extras ? `  ${extras}` : '');
    if (this.tty) this.out.write(`\r\x1b[2K${line}${final ? '\n' : ''}`);
    else this.out.write(`${line}\n`);
  }
}

export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(a >= 1 ? 2 : 4);
}

export function formatDuration(secs: number): string {
  if (!Number.isFinite(secs)) return '--:--';
  const s = Math.round(secs);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${String(r).padStart(2, '0')}` : `${m}:${String(r).padStart(2, '0')}`;
}
