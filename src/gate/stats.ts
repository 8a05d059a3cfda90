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
 * The counters of several gates as one (the gate process with per-workload policies: one gate per
 * policy, the top-level one and the refusing one). Counts add up; the caps are the process's own
 * (GateShare: every gate has the same), so they are taken once; the client list is the busiest 20 of
 * the gates' lists (a client asks one gate: its policy's). Pure.
 */
export function mergeSnapshots(snaps: GateStatsSnapshot[]): GateStatsSnapshot {
  const [first, ...rest] = snaps;
  if (!first) throw new Error('mergeSnapshots: no snapshot');
  if (!rest.length) return first;
  const decisions = { ...first.decisions };
  for (const s of rest) for (const v of Object.keys(decisions) as Verdict[]) decisions[v] += s.decisions[v] ?? 0;
  const clients = new Map<string, ClientCounts>();
  for (const s of snaps) {
    for (const c of s.clients.list) {
      const had = clients.get(c.client) ?? { queries: 0, refused: 0, shed: 0 };
      clients.set(c.client, { queries: had.queries + c.queries, refused: had.refused + c.refused, shed: had.shed + c.shed });
    }
  }
  const sum = (f: (s: GateStatsSnapshot) => number) => snaps.reduce((n, s) => n + f(s), 0);
  const max = (f: (s: GateStatsSnapshot) => number) => Math.max(...snaps.map(f));
  return {
    at: max((s) => s.at),
    decisions,
    cached: sum((s) => s.cached),
    upstream: {
      queries: sum((s) => s.upstream.queries),
      failures: sum((s) => s.upstream.failures),
      sumMs: sum((s) => s.upstream.sumMs),
      buckets: first.upstream.buckets.map((b, i) => ({ leMs: b.leMs, count: sum((s) => s.upstream.buckets[i]?.count ?? 0) })),
    },
    inflight: { upstream: sum((s) => s.inflight.upstream), waiting: sum((s) => s.inflight.waiting), limit: max((s) => s.inflight.limit), perClientLimit: max((s) => s.inflight.perClientLimit) },
    cache: { entries: sum((s) => s.cache.entries), limit: max((s) => s.cache.limit) },
    clients: {
      from: Math.min(...snaps.map((s) => s.clients.from)),
      to: max((s) => s.clients.to),
      list: [...clients]
        .map(([client, c]) => ({ client, ...c }))
        .sort((a, b) => b.queries - a.queries || (a.client < b.client ? -1 : 1))
        .slice(0, 20),
    },
  };
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
