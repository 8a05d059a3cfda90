/**
 * The gate-log contract: one JSON object per query (stdout, and
 * <state dir>/gate.log). The gate writes it (queryLine); status's summary
 * and the audit's destination names read it (parseQueryLine). Pure.
 */
import type { ContainerRef } from './attribution.js';
import type { QueryEvent } from './gate.js';
import { printable, printJson } from '../text.js';

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
  /** shed lines: the queries this line stands for (shed ones the gate did not log one by one); absent: 1 */
  count?: number;
}

/** The log's file in the state dir (rotated copies: gate.log.1, .2, ...). */
export const GATE_LOG = 'gate.log';

const VERDICTS: readonly string[] = ['allowed', 'refused', 'failed', 'shed', 'malformed'] satisfies QueryEvent['verdict'][];
const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

/**
 * The reader: one line as queryLine wrote it, or null for anything else (other
 * JSON, a line cut by rotation or a tail read). Names come back as the client
 * sent them (any bytes): whoever prints them escapes them.
 */
export function parseQueryLine(raw: string): QueryLine | null {
  if (!raw.startsWith('{')) return null;
  let o: unknown;
  try {
    o = JSON.parse(raw);
  } catch {
    return null;
  }
  if (!o || typeof o !== 'object') return null;
  const l = o as Record<string, unknown>;
  const ok =
    typeof l.time === 'string' && Number.isFinite(Date.parse(l.time)) &&
    typeof l.client === 'string' && typeof l.name === 'string' && typeof l.type === 'string' &&
    typeof l.verdict === 'string' && VERDICTS.includes(l.verdict) && isStrings(l.ips) &&
    (l.container === null || (typeof l.container === 'object' && typeof (l.container as Record<string, unknown>).name === 'string')) &&
    (l.count === undefined || (Number.isInteger(l.count) && (l.count as number) >= 1));
  return ok ? (l as unknown as QueryLine) : null;
}

// Thousands of lines a second share a handful of timestamps: format each millisecond once.
let lastAt = -1;
let lastIso = '';
const iso = (ms: number) => (ms === lastAt ? lastIso : ((lastAt = ms), (lastIso = new Date(ms).toISOString())));

/** How many queries a line stands for (a shed line may count many). */
export const countOf = (l: QueryLine): number => l.count ?? 1;

/** JSON of an answer's ips / rules: a cached answer's arrays are the same objects at every hit (never mutated), so each is escaped once. */
const arrayJson = new WeakMap<readonly string[], string>();
const jsonOf = (xs: readonly string[]): string => {
  let j = arrayJson.get(xs);
  if (j === undefined) arrayJson.set(xs, (j = printJson(xs)));
  return j;
};

/**
 * The line, built field by field in the order of QueryLine: the same text as
 * printJson of the object (each string escaped the same way; tested), without
 * an object and a whole-line escape per query.
 */
export function queryLine(e: QueryEvent, container: ContainerRef | undefined, count = 1): string {
  // names are any bytes a client sent: nothing in the line a terminal (journalctl, tail) would act on
  let line = `{"time":"${iso(e.at)}","client":${printJson(e.client)},"container":${container ? printJson(container) : 'null'},"name":${printJson(e.name)},"type":${printJson(e.type)},"verdict":"${e.verdict}","rcode":"${e.rcode}","ips":${jsonOf(e.ips)},"cached":${e.cached},"ms":${JSON.stringify(e.ms)}`;
  if (e.releaseMs !== undefined) line += `,"releaseMs":${JSON.stringify(e.releaseMs)}`;
  if (e.kernelMs !== undefined) line += `,"kernelMs":${JSON.stringify(e.kernelMs)}`;
  line += `,"transport":"${e.transport}"`;
  if (e.rules) line += `,"rules":${jsonOf(e.rules)}`;
  if (e.detail) line += `,"detail":${printJson(e.detail)}`;
  if (count > 1) line += `,"count":${count}`;
  return `${line}}`;
}

/**
 * Is this text a query line as queryLine writes it (time first, client second)? Cheap, no parse: the
 * daemon asks it of every line of the gate's stdout, to keep query lines out of its journal.
 */
export const isQueryLineText = (raw: string): boolean => QUERY_LINE_START.test(raw);
const QUERY_LINE_START = /^\{"time":"[^"]*","client":/;

export interface GateSummary {
  /** ISO times of the window */
  from: string;
  to: string;
  total: number;
  allowed: number;
  refused: number;
  failed: number;
  /** over an in-flight cap (the first lines of each second one by one, the rest as one line with a count) */
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
    const l = parseQueryLine(raw);
    if (!l) {
      s.skipped++;
      continue;
    }
    const t = Date.parse(l.time);
    if (t < from || t > nowMs) continue;
    if (l.verdict === 'malformed') continue;
    s.total += countOf(l);
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
      s.shed += countOf(l);
      c.shed += countOf(l);
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
  const out = [`  last hour: ${s.total} queries, ${s.allowed} allowed, ${s.refused} refused${s.failed ? `, ${s.failed} failed (upstream or kernel)` : ''}${s.shed ? `, ${s.shed} shed (over a cap)` : ''}`];
  // names are whatever a container asked (any bytes), who comes from Docker's labels
  for (const c of s.clients) out.push(`    ${printable(c.who)}${c.container ? ` [${printable(c.client)}]` : ''}: ${c.allowed} allowed, ${c.refused} refused${c.failed ? `, ${c.failed} failed` : ''}${c.shed ? `, ${c.shed} shed` : ''}`);
  if (s.topRefused.length) {
    out.push('  top refused names:');
    for (const n of s.topRefused) out.push(`    ${n.count}x ${printable(n.name)}${n.clients > 1 ? ` (${n.clients} clients)` : ''}`);
  }
  return out;
}

/**
 * A flood is shed by the thousand a second: the first `perSec` shed queries of
 * each second get a line of their own, the rest are held and written as one
 * line with their count (take(), on a timer), so every shed query is counted
 * (status, metrics) without a line each. Pure; the event's own time is the clock.
 */
export class ShedSampler {
  private second = -1;
  private inSecond = 0;
  private held: { event: QueryEvent; count: number } | null = null;

  constructor(private readonly perSec: number) {}

  /** true: log this shed event now; false: held (counted into the next take()) */
  admit(e: QueryEvent): boolean {
    const sec = Math.floor(e.at / 1000);
    if (sec !== this.second) [this.second, this.inSecond] = [sec, 0];
    if (++this.inSecond <= this.perSec) return true;
    this.held = { event: e, count: (this.held?.count ?? 0) + 1 };
    return false;
  }

  /** The held ones as one line's worth (the last of them, with the count), or null; resets. */
  take(): { event: QueryEvent; count: number } | null {
    const h = this.held;
    this.held = null;
    return h;
  }
}
