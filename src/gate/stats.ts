/**
 * The gate's counters, in one small object: decisions (answered, refused,
 * failed, shed), upstream latency, what is in flight, and per-client counts
 * over the last full minute. `status` reads a snapshot of it from gate.json;
 * a metrics exporter can read the same snapshot. Pure; the clock is passed in.
 */
import type { Verdict } from './gate.js';

/** Clients tracked per window; a flood of spoofed sources beyond it is counted under OTHER_CLIENTS. */
export const MAX_CLIENTS = 4096;
export const OTHER_CLIENTS = '(other)';
const WINDOW_MS = 60_000;
/** upper bounds (ms) of the upstream latency histogram; the last bucket is everything above */
export const LATENCY_BUCKETS_MS = [1, 5, 10, 50, 100, 500, 1000, 2000, 5000] as const;

export interface ClientCounts {
  queries: number;
  refused: number;
  shed: number;
}

export interface GateStatsSnapshot {
  /** unix ms of the snapshot */
  at: number;
  /** since the gate started */
  decisions: Record<Verdict, number>;
  /** answers served from the cache (counted in decisions.allowed too) */
  cached: number;
  upstream: { queries: number; failures: number; sumMs: number; buckets: { leMs: number | null; count: number }[] };
  inflight: { upstream: number; waiting: number; limit: number; perClientLimit: number };
  cache: { entries: number; limit: number };
  /** the last full minute, busiest first (at most 20 listed) */
  clients: { from: number; to: number; list: ({ client: string } & ClientCounts)[] };
}

export class GateStats {
  readonly decisions: Record<Verdict, number> = { allowed: 0, refused: 0, failed: 0, shed: 0, malformed: 0 };
  cached = 0;
  readonly upstream = { queries: 0, failures: 0, sumMs: 0, buckets: LATENCY_BUCKETS_MS.map(() => 0).concat(0) };
  private window = new Map<string, ClientCounts>();
  private windowStart: number;
  private last: { from: number; to: number; clients: Map<string, ClientCounts> };

  constructor(now: number) {
    this.windowStart = now;
    this.last = { from: now, to: now, clients: new Map() };
  }

  decision(verdict: Verdict, client: string, cached: boolean, now: number): void {
    this.decisions[verdict]++;
    if (cached) this.cached++;
    this.roll(now);
    let c = this.window.get(client);
    if (!c) {
      const key = this.window.size < MAX_CLIENTS ? client : OTHER_CLIENTS;
      c = this.window.get(key);
      if (!c) this.window.set(key, (c = { queries: 0, refused: 0, shed: 0 }));
    }
    c.queries++;
    if (verdict === 'refused') c.refused++;
    else if (verdict === 'shed') c.shed++;
  }

  upstreamDone(ms: number, ok: boolean): void {
    this.upstream.queries++;
    if (!ok) this.upstream.failures++;
    this.upstream.sumMs += ms;
    let i = LATENCY_BUCKETS_MS.findIndex((b) => ms <= b);
    if (i < 0) i = LATENCY_BUCKETS_MS.length;
    this.upstream.buckets[i]!++;
  }

  private roll(now: number): void {
    const age = now - this.windowStart;
    if (age < WINDOW_MS) return;
    if (age < 2 * WINDOW_MS) {
      this.last = { from: this.windowStart, to: this.windowStart + WINDOW_MS, clients: this.window };
      this.windowStart += WINDOW_MS;
    } else {
      // a quiet gap longer than a window: the last full minute had nothing
      this.last = { from: now - WINDOW_MS, to: now, clients: new Map() };
      this.windowStart = now;
    }
    this.window = new Map();
  }

  snapshot(now: number, live: { upstream: number; waiting: number; limit: number; perClientLimit: number; cacheEntries: number; cacheLimit: number }): GateStatsSnapshot {
    this.roll(now);
    const list = [...this.last.clients]
      .map(([client, c]) => ({ client, ...c }))
      .sort((a, b) => b.queries - a.queries || (a.client < b.client ? -1 : 1))
      .slice(0, 20);
    return {
      at: now,
      decisions: { ...this.decisions },
      cached: this.cached,
      upstream: {
        queries: this.upstream.queries,
        failures: this.upstream.failures,
        sumMs: Math.round(this.upstream.sumMs),
        buckets: this.upstream.buckets.map((count, i) => ({ leMs: LATENCY_BUCKETS_MS[i] ?? null, count })),
      },
      inflight: { upstream: live.upstream, waiting: live.waiting, limit: live.limit, perClientLimit: live.perClientLimit },
      cache: { entries: live.cacheEntries, limit: live.cacheLimit },
      clients: { from: this.last.from, to: this.last.to, list },
    };
  }
}

/**
 * The gate's line for the journal, once a minute (on its stdout; the daemon puts it in the journal,
 * and leaves the query lines out): how many queries of each verdict since the last line, and the
 * clients refused or shed most in the last full minute. Never a line per query in the journal: a
 * container flooding queries must not flood it (journald's rate limit would then drop the daemon's
 * own warnings). Each query is in gate.log. null: nothing was asked.
 */
export function minuteLine(now: number, previous: Readonly<Record<Verdict, number>>, snap: GateStatsSnapshot): string | null {
  const d = Object.fromEntries(Object.entries(snap.decisions).map(([v, n]) => [v, n - (previous[v as Verdict] ?? 0)])) as Record<Verdict, number>;
  if (Object.values(d).every((n) => n === 0)) return null;
  const top = snap.clients.list
    .filter((c) => c.refused > 0 || c.shed > 0)
    .sort((a, b) => b.refused + b.shed - (a.refused + a.shed) || (a.client < b.client ? -1 : 1))
    .slice(0, 5);
  return JSON.stringify({ time: new Date(now).toISOString(), event: 'dns-minute', ...d, ...(top.length ? { refusedMost: top } : {}) });
}
