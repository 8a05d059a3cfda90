/**
 * The gate's query log: one JSON object per line (stdout, and
 * <state dir>/gate.log), and the summary `status` shows. Pure.
 */
import type { ContainerRef } from './attribution.js';
import type { QueryEvent } from './gate.js';

export interface QueryLine {
  time: string;
  client: string;
  container: ContainerRef | null;
  name: string;
  type: string;
  verdict: QueryEvent['verdict'];
  rcode: string;
  ips: string[];
  cached: boolean;
  ms: number;
  /** fresh answers: upstream answer -> release, kernel insert included (ms, 3 decimals) */
  releaseMs?: number;
  /** of which waiting for the kernel insert */
  kernelMs?: number;
  transport: 'udp' | 'tcp';
  rules?: string[];
  detail?: string;
}

// Thousands of lines a second share a handful of timestamps: format each millisecond once.
let lastAt = -1;
let lastIso = '';
const iso = (ms: number) => (ms === lastAt ? lastIso : ((lastAt = ms), (lastIso = new Date(ms).toISOString())));

export function queryLine(e: QueryEvent, container: ContainerRef | undefined): string {
  const line: QueryLine = {
    time: iso(e.at),
    client: e.client,
    container: container ?? null,
    name: e.name,
    type: e.type,
    verdict: e.verdict,
    rcode: e.rcode,
    ips: e.ips,
    cached: e.cached,
    ms: e.ms,
    ...(e.releaseMs !== undefined ? { releaseMs: e.releaseMs } : {}),
    ...(e.kernelMs !== undefined ? { kernelMs: e.kernelMs } : {}),
    transport: e.transport,
    ...(e.rules ? { rules: e.rules } : {}),
    ...(e.detail ? { detail: e.detail } : {}),
  };
  return JSON.stringify(line);
}

export interface GateSummary {
  /** ISO times of the window */
  from: string;
  to: string;
  total: number;
  allowed: number;
  refused: number;
  failed: number;
  /** over an in-flight cap (only the first lines of each second are logged: gate.json counts them all) */
  shed: number;
  /** per container (or client IP when no container was known), most refused first */
  clients: { who: string; container: ContainerRef | null; client: string; allowed: number; refused: number; failed: number; shed: number }[];
  /** most refused names, most first */
  topRefused: { name: string; count: number; clients: number }[];
  /** lines that were not query lines (other JSON, cut lines) */
  skipped: number;
}

const whoOf = (l: QueryLine) => (l.container ? (l.container.service ? `${l.container.name} (${l.container.project ? `${l.container.project}/` : ''}${l.container.service})` : l.container.name) : l.client);

/** Summarise log lines (any order, several files' worth) over [now - windowMs, now]. */
export function summarise(lines: Iterable<string>, nowMs: number, windowMs = 3_600_000, top = 10): GateSummary {
  const from = nowMs - windowMs;
  const clients = new Map<string, GateSummary['clients'][number]>();
  const refusedNames = new Map<string, { count: number; clients: Set<string> }>();
  const s: GateSummary = { from: new Date(from).toISOString(), to: new Date(nowMs).toISOString(), total: 0, allowed: 0, refused: 0, failed: 0, shed: 0, clients: [], topRefused: [], skipped: 0 };
  for (const raw of lines) {
    if (!raw.trim()) continue;
    let l: QueryLine;
    try {
      l = JSON.parse(raw) as QueryLine;
    } catch {
      s.skipped++;
      continue;
    }
    const t = typeof l.time === 'string' ? Date.parse(l.time) : NaN;
    if (!Number.isFinite(t) || typeof l.verdict !== 'string' || typeof l.name !== 'string') {
      s.skipped++;
      continue;
    }
    if (t < from || t > nowMs) continue;
    if (l.verdict === 'malformed') continue;
    s.total++;
    const key = l.container?.id ?? l.client;
    let c = clients.get(key);
    if (!c) clients.set(key, (c = { who: whoOf(l), container: l.container ?? null, client: l.client, allowed: 0, refused: 0, failed: 0, shed: 0 }));
    if (l.verdict === 'allowed') {
      s.allowed++;
      c.allowed++;
    } else if (l.verdict === 'refused') {
      s.refused++;
      c.refused++;
      let n = refusedNames.get(l.name);
      if (!n) refusedNames.set(l.name, (n = { count: 0, clients: new Set() }));
      n.count++;
      n.clients.add(key);
    } else if (l.verdict === 'failed') {
      s.failed++;
      c.failed++;
    } else if (l.verdict === 'shed') {
      s.shed++;
      c.shed++;
    }
  }
  s.clients = [...clients.values()].sort((a, b) => b.refused - a.refused || b.allowed - a.allowed || (a.who < b.who ? -1 : 1));
  s.topRefused = [...refusedNames]
    .map(([name, n]) => ({ name, count: n.count, clients: n.clients.size }))
    .sort((a, b) => b.count - a.count || (a.name < b.name ? -1 : 1))
    .slice(0, top);
  return s;
}

/** The summary as `status` prints it. */
export function renderSummary(s: GateSummary): string[] {
  if (s.total === 0) return ['  no container queries in the last hour'];
  const out = [`  last hour: ${s.total} queries, ${s.allowed} allowed, ${s.refused} refused${s.failed ? `, ${s.failed} failed (upstream or kernel)` : ''}${s.shed ? `, ${s.shed} shed (over a cap; logged sampled)` : ''}`];
  for (const c of s.clients) out.push(`    ${c.who}${c.container ? ` [${c.client}]` : ''}: ${c.allowed} allowed, ${c.refused} refused${c.failed ? `, ${c.failed} failed` : ''}${c.shed ? `, ${c.shed} shed` : ''}`);
  if (s.topRefused.length) {
    out.push('  top refused names:');
    for (const n of s.topRefused) out.push(`    ${n.count}x ${n.name}${n.clients > 1 ? ` (${n.clients} clients)` : ''}`);
  }
  return out;
}
