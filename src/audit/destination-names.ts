import { parseIp } from '../net/ip.js';
import type { State } from '../resolve/merge.js';
import type { HitName, NameSpan } from './history.js';

/**
 * Naming a destination IP without ever asking reverse DNS: from the DNS
 * gate's log (which client asked for which name and got which answers) or
 * from egressfw's own resolution history. Pure.
 */

export interface GateEntry {
  /** unix seconds */
  time: number;
  client?: string;
  name: string;
  type?: string;
  refused: boolean;
  answers: string[];
}

export const GATE_LOG = 'gate.log';
/** The tail of the gate log that is read: the recent past is what a report needs. */
export const GATE_LOG_TAIL_BYTES = 8 * 1024 * 1024;

function toSeconds(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v > 1e11 ? v / 1000 : v; // milliseconds or seconds
  if (typeof v === 'string') {
    const t = Date.parse(v);
    return Number.isNaN(t) ? undefined : t / 1000;
  }
  return undefined;
}

/** "192.0.2.1", "192.0.2.1:5353", "192.0.2.1#5353", "[2001:db8::1]:53" -> the address. */
function clientIp(s: string): string | undefined {
  const direct = parseIp(s);
  if (direct) return direct.text;
  const m = /^\[([^\]]+)\](?::\d+)?$/.exec(s) ?? /^([^:#]+)[:#]\d+$/.exec(s) ?? /^(.+)#\d+$/.exec(s);
  return m ? parseIp(m[1]!)?.text : undefined;
}

function answerIp(a: unknown): string | undefined {
  const raw = typeof a === 'string' ? a : a && typeof a === 'object' ? ((a as Record<string, unknown>).data ?? (a as Record<string, unknown>).address ?? (a as Record<string, unknown>).ip) : undefined;
  return typeof raw === 'string' ? parseIp(raw)?.text : undefined;
}

/**
 * Gate log text (JSON lines: time, client, name, type, verdict, answers[]) ->
 * entries. Tolerant: lines it cannot read are skipped (a partial first line
 * of a tail read, a format change); names are lower-cased without the root dot.
 */
export function parseGateLog(text: string | null): GateEntry[] {
  if (!text) return [];
  const out: GateEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    const time = toSeconds(o.time);
    if (time === undefined || typeof o.name !== 'string' || !o.name) continue;
    const verdict = typeof o.verdict === 'string' ? o.verdict : '';
    const client = typeof o.client === 'string' ? clientIp(o.client) : undefined;
    out.push({
      time,
      ...(client ? { client } : {}),
      name: o.name.toLowerCase().replace(/\.$/, ''),
      ...(typeof o.type === 'string' ? { type: o.type } : {}),
      refused: /refus|deny|denied|block|reject/i.test(verdict),
      answers: Array.isArray(o.answers) ? o.answers.map(answerIp).filter((x): x is string => x !== undefined) : [],
    });
  }
  return out;
}

/** Pure: state.json's per-name IP history -> name spans (merged into the audit history at each collection). */
export function resolutionNames(domains: State['domains']): NameSpan[] {
  const out: NameSpan[] = [];
  for (const [name, d] of Object.entries(domains)) {
    for (const [ip, s] of Object.entries(d.ips)) {
      const p = parseIp(ip);
      if (p) out.push({ ip: p.text, name, from: s.firstSeen, to: s.lastSeen });
    }
  }
  return out;
}

/** Pure: add new name sightings, widening the span of a pair already known. */
export function mergeNames(known: NameSpan[], seen: NameSpan[]): NameSpan[] {
  const byKey = new Map(known.map((n) => [`${n.ip}|${n.name}`, { ...n }]));
  for (const s of seen) {
    const had = byKey.get(`${s.ip}|${s.name}`);
    if (had) {
      had.from = Math.min(had.from, s.from);
      had.to = Math.max(had.to, s.to);
    } else byKey.set(`${s.ip}|${s.name}`, { ...s });
  }
  return [...byKey.values()];
}

const MAX_NAMES = 3;
/** An answer is trusted to name an IP for this long before the attempt (clients cache; TTLs vary). */
const GATE_LOOKBACK = 7 * 86400;

/**
 * Names for a destination `ip` attempted at time `t` by `client` (its source
 * IP; undefined for the host). The gate's answers to that very client come
 * first, then its answers to anyone, then egressfw's own resolution history.
 * At most three, newest first: an IP shared by many names (CDNs) is reported
 * with the ones seen most recently.
 */
export function namesFor(ip: string, t: number, client: string | undefined, gate: GateEntry[], spans: NameSpan[]): HitName[] {
  const answered = gate.filter((g) => !g.refused && g.time <= t + 5 && g.time >= t - GATE_LOOKBACK && g.answers.includes(ip));
  const mine = client ? answered.filter((g) => g.client === client) : [];
  const pick = (mine.length ? mine : answered).sort((a, b) => b.time - a.time);
  const names: string[] = [];
  for (const g of pick) if (!names.includes(g.name) && names.length < MAX_NAMES) names.push(g.name);
  if (names.length) return names.map((name) => ({ name, via: 'gate' }));
  const known = spans.filter((s) => s.ip === ip);
  // Seen for this IP before the attempt first; a later sighting is still a good hint.
  const before = known.filter((s) => s.from <= t + 5).sort((a, b) => b.to - a.to);
  const after = known.filter((s) => s.from > t + 5).sort((a, b) => a.from - b.from);
  for (const s of [...before, ...after]) if (!names.includes(s.name) && names.length < MAX_NAMES) names.push(s.name);
  return names.map((name) => ({ name, via: 'resolution' }));
}

/** Names the gate refused in [from, to], with the clients that asked (for `suggest`). */
export function gateRefusals(gate: GateEntry[], from: number, to: number): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const g of gate) {
    if (!g.refused || g.time < from || g.time > to) continue;
    const set = out.get(g.name) ?? new Set<string>();
    if (g.client) set.add(g.client);
    out.set(g.name, set);
  }
  return out;
}
