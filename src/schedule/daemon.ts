import { printable, printJson } from '../text.js';
import { schedule as cronSchedule } from 'node-cron';
import { realTimers, type TimerHandle, type Timers } from '../timers.js';

export interface RefreshOutcome {
  changes: string[];
  warnings: string[];
  /** unix seconds: earliest TTL or stale-grace expiry among the allowed IPs */
  nextRefreshAt?: number;
  /** connections opened before the apply that its rules refuse, cut */
  flowsCut?: number;
}

export interface DaemonSchedule {
  refresh: string;
  driftCheckSec: number;
  retryMaxSec: number;
  minTtlSec: number;
  /** first retry delay of a failing refresh; doubles up to retryMaxSec */
  retryFirstSec?: number;
}

export interface DaemonDeps {
  /** full sync: DNS, merge, apply (takes the sync lock itself) */
  refresh: () => Promise<RefreshOutcome>;
  /** reads only: what differs between the kernel and the saved state (empty: no drift) */
  detectDrift: () => Promise<string[]>;
  /** re-apply the saved state without DNS (takes the sync lock itself) */
  repair: () => Promise<string[]>;
  log: (event: string, fields?: Record<string, unknown>) => void;
  now: () => number;
  /** default: the real ones */
  timers?: Timers;
  /** the refresh schedule's ticks; default node-cron */
  cron?: CronStart;
}

/** A cron schedule that calls `tick`: stopped with destroy(); msToNext(): when the next tick comes. */
export type CronStart = (expr: string, tick: () => void) => { destroy(): void; msToNext(): number | null };
const nodeCron: CronStart = (expr, tick) => {
  const task = cronSchedule(expr, tick, { noOverlap: true, name: 'egressfw-refresh' });
  return { destroy: () => void task.destroy(), msToNext: () => task.msToNext() };
};

/**
 * The scheduler behind `egressfw daemon`. Jobs (refresh, drift check, repair)
 * run one at a time, in order; a drift check is skipped while another job is
 * queued. A failing refresh is retried with backoff and never removes
 * anything: the kernel keeps what the last good sync put there.
 */
export class Daemon {
  private chain: Promise<void> = Promise.resolve();
  private pending = 0;
  private cron: ReturnType<CronStart> | undefined;
  private driftTimer: TimerHandle;
  private earlyTimer: TimerHandle;
  private readonly timers: Timers;
  private failures = 0;
  private stopped = false;

  constructor(
    private sched: DaemonSchedule,
    private deps: DaemonDeps,
  ) {
    this.timers = deps.timers ?? realTimers;
  }

  start(): void {
    this.stopped = false;
    this.cron = (this.deps.cron ?? nodeCron)(this.sched.refresh, () => this.enqueue('refresh'));
    this.driftTimer = this.timers.setInterval(() => {
      if (this.pending === 0) this.enqueue('drift');
    }, this.sched.driftCheckSec * 1000);
    this.enqueue('refresh');
  }

  /** New schedule (SIGHUP): timers restarted, the queue kept. */
  reschedule(sched: DaemonSchedule): void {
    this.clearTimers();
    this.sched = sched;
    this.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.clearTimers();
    await this.chain;
  }

  /** Resolves when every queued job has run (tests, shutdown). */
  idle(): Promise<void> {
    return this.chain;
  }

  private clearTimers(): void {
    this.cron?.destroy();
    this.cron = undefined;
    this.timers.clearInterval(this.driftTimer);
    this.timers.clearTimeout(this.earlyTimer);
  }

  enqueue(job: 'refresh' | 'drift'): void {
    this.pending++;
    this.chain = this.chain.then(async () => {
      this.pending--;
      if (this.stopped) return;
      if (job === 'refresh') await this.refresh();
      else await this.driftCheck();
    });
  }

  private async refresh(): Promise<void> {
    const t0 = this.timers.monoMs();
    try {
      const r = await this.deps.refresh();
      this.failures = 0;
      this.deps.log('refresh', { changes: r.changes.length, ms: Math.round(this.timers.monoMs() - t0), ...(r.changes.length ? { applied: r.changes } : {}), ...(r.flowsCut ? { flowsCut: r.flowsCut } : {}), ...(r.warnings.length ? { warnings: r.warnings } : {}) });
      if (r.nextRefreshAt !== undefined) this.scheduleEarly(r.nextRefreshAt - this.deps.now());
    } catch (e) {
      this.failures++;
      const wait = Math.min(this.sched.retryMaxSec, (this.sched.retryFirstSec ?? 5) * 2 ** (this.failures - 1));
      this.deps.log('error', { job: 'refresh', error: (e as Error).message.split('\n')[0], attempt: this.failures, retryInSec: wait });
      this.scheduleEarly(wait);
    }
  }

  /** A TTL runs out (or a retry is due) before the next cron tick: refresh then. */
  private scheduleEarly(inSec: number): void {
    this.timers.clearTimeout(this.earlyTimer);
    if (this.stopped) return;
    const sec = Math.max(this.failures ? 0 : this.sched.minTtlSec, inSec);
    const next = this.cron?.msToNext();
    if (next != null && sec * 1000 >= next) return; // the cron tick comes first
    this.earlyTimer = this.timers.setTimeout(() => this.enqueue('refresh'), sec * 1000);
  }

  private async driftCheck(): Promise<void> {
    try {
      const drift = await this.deps.detectDrift();
      if (!drift.length) return;
      const t0 = this.timers.monoMs();
      const repaired = await this.deps.repair();
      this.deps.log('drift-repaired', { drift, applied: repaired, ms: Math.round(this.timers.monoMs() - t0) });
    } catch (e) {
      this.deps.log('error', { job: 'drift-check', error: (e as Error).message.split('\n')[0] });
    }
  }
}

/** syslog priorities (sd-daemon(3)): what `journalctl -p warning` shows is what needs a look. */
export const PRIORITY = { err: 3, warning: 4, notice: 5, info: 6 } as const;

/** How much an event matters: errors as errors; a repair or a crashed gate means something changed under us. */
export function priorityOf(event: string, fields: Record<string, unknown> = {}): number {
  switch (event) {
    case 'error':
    case 'gate-error':
      return PRIORITY.err;
    case 'warning':
    case 'drift-repaired':
    case 'gate-exited':
      return PRIORITY.warning;
    case 'refresh':
      return Array.isArray(fields.warnings) && fields.warnings.length ? PRIORITY.warning : PRIORITY.info;
    case 'started':
    case 'stopping':
    case 'stopped':
    case 'config-reloaded':
    case 'audit':
      return PRIORITY.notice;
    default:
      return PRIORITY.info;
  }
}

/**
 * One line per event: text for people and syslog, or JSON. `journal`: stdout goes to systemd's journal,
 * so the line starts with its priority as `<N>` (journald strips it and files the line under N).
 */
export function formatLog(json: boolean, at: Date, event: string, fields: Record<string, unknown> = {}, journal = false): string {
  const line = formatLine(json, at, event, fields);
  return journal ? `<${priorityOf(event, fields)}>${line}` : line;
}

function formatLine(json: boolean, at: Date, event: string, fields: Record<string, unknown>): string {
  if (json) return printJson({ time: at.toISOString(), event, ...fields });
  // printJson escapes what a terminal acts on (names from DNS, text from state); a bare value gets printable().
  const parts = Object.entries(fields).map(([k, v]) => `${k}=${typeof v === 'string' ? (/\s/.test(v) ? printJson(v) : printable(v)) : Array.isArray(v) ? printJson(v.join('; ')) : printable(String(v))}`);
  return [at.toISOString(), event, ...parts].join(' ');
}
