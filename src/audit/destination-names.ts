import { parseQueryLine } from '../gate/log.js';
import { parseIp } from '../net/ip.js';
import type { State } from '../state-file.js';
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

/** The tail of the gate log that is read: the recent past is what a report needs. */
export const GATE_LOG_TAIL_BYTES = 8 * 1024 * 1024;

/**
 * Gate log text (the lines the gate writes, src/gate/log.ts) -> entries.
 * Lines that are not query lines are skipped (a partial first line of a tail
 * read); names are lower-cased without the root dot, nothing else: they are
 * raw client bytes, escaped where they are printed.
 */
export function parseGateLog(text: string | null): GateEntry[] {
  if (!text) return [];
  const out: GateEntry[] = [];
  for (const raw of text.split('\n')) {
    const l = parseQueryLine(raw);
    if (!l || !l.name) continue;
    const client = parseIp(l.client)?.text;
    out.push({
      time: Date.parse(l.time) / 1000,
      ...(client ? { client } : {}),
      name: l.name.toLowerCase().replace(/\.$/, ''),
      type: l.type,
      refused: l.verdict === 'refused',
      answers: l.ips.map((ip) => parseIp(ip)?.text).filter((x): x is string => x !== undefined),
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
