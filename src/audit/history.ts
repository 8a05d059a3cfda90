import type { Mode } from '../plan/audit-rules.js';

/**
 * What collections of the kernel's records leave behind, kept in the state
 * dir as JSON lines (one object per line, `k` says which kind). Pure: parse,
 * serialise, bound.
 *
 * - containers + spans: which container held which source IP when (so a
 *   container that has exited since is still named);
 * - names: IP -> DNS name as egressfw's own resolution saw it (kept after the
 *   name leaves the config);
 * - tracked: each kernel element's counter at the last read (the next read's
 *   growth is the new attempts);
 * - hits: attempts counted per collection, attributed when collected. Older
 *   hits are merged into coarser time buckets (see `trimHistory`).
 */

export interface ContainerRef {
  id: string;
  name: string;
  image: string;
  project?: string;
  service?: string;
  /** Docker's state at the last snapshot that listed it ("removed" once it is no longer listed) */
  state: string;
  /** last snapshot that saw it running */
  lastRunning: number;
}

/** `ip` was held by container `id` from `from` to `to` (first and last snapshot that saw it). */
export interface Span {
  ip: string;
  id: string;
  from: number;
  to: number;
  network?: string;
}

export interface NameSpan {
  ip: string;
  name: string;
  from: number;
  to: number;
}

export interface Tracked {
  packets: number;
  /** when it was read */
  at: number;
}

export interface HitName {
  name: string;
  via: 'gate' | 'resolution';
}

export interface Hit {
  /** collection that saw the counter grow (unix seconds) */
  at: number;
  /** the collection before it: the attempts happened after this (absent: unknown) */
  prev?: number;
  src: string;
  dst: string;
  proto: string;
  port: string;
  /** attempts */
  n: number;
  /** kernel-exact times, when the kernel says (ipset: first add; nft: last update) */
  first?: number;
  last?: number;
  /** container ids the source IP belonged to (two when it is ambiguous); empty: unknown (or the host) */
  who: string[];
  /** a snapshot saw the container holding the IP at the time (else: the nearest snapshot in time) */
  sure?: boolean;
  mode?: Mode;
  names?: HitName[];
}

export interface History {
  version: 1;
  /** last collection of kernel records */
  collectedAt?: number;
  /** last snapshot of Docker's containers */
  snapshotAt?: number;
  containers: Map<string, ContainerRef>;
  spans: Span[];
  names: NameSpan[];
  tracked: Map<string, Tracked>;
  hits: Hit[];
}

export const emptyHistory = (): History => ({ version: 1, containers: new Map(), spans: [], names: [], tracked: new Map(), hits: [] });

export const HISTORY_FILE = 'audit-history.jsonl';
/** flock(2) lock of collections, in the state dir (never unlinked: see src/system/lock.ts) */
export const AUDIT_LOCK = 'audit.lock';

export interface Limits {
  hits: number;
  spans: number;
  names: number;
  /** nothing older than this is kept (seconds) */
  maxAge: number;
}

/** About 6 MB at most (hits ~200 bytes a line); a month of history. */
export const DEFAULT_LIMITS: Limits = { hits: 20_000, spans: 10_000, names: 10_000, maxAge: 30 * 86400 };

const num = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const str = (v: unknown): v is string => typeof v === 'string';

/** Pure: file text -> History. Damaged lines are skipped and counted, never fatal (it is a record, not config). */
export function parseHistory(text: string | null): { history: History; skipped: number } {
  const h = emptyHistory();
  let skipped = 0;
  if (!text) return { history: h, skipped };
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line) as Record<string, unknown>;
    } catch {
      skipped++;
      continue;
    }
    switch (o.k) {
      case 'meta':
        if (num(o.collectedAt)) h.collectedAt = o.collectedAt;
        if (num(o.snapshotAt)) h.snapshotAt = o.snapshotAt;
        break;
      case 'c':
        if (str(o.id) && str(o.name) && num(o.lastRunning)) {
          h.containers.set(o.id, {
            id: o.id,
            name: o.name,
            image: str(o.image) ? o.image : '',
            ...(str(o.project) ? { project: o.project } : {}),
            ...(str(o.service) ? { service: o.service } : {}),
            state: str(o.state) ? o.state : 'unknown',
            lastRunning: o.lastRunning,
          });
        } else skipped++;
        break;
      case 'span':
        if (str(o.ip) && str(o.id) && num(o.from) && num(o.to)) h.spans.push({ ip: o.ip, id: o.id, from: o.from, to: o.to, ...(str(o.network) ? { network: o.network } : {}) });
        else skipped++;
        break;
      case 'name':
        if (str(o.ip) && str(o.name) && num(o.from) && num(o.to)) h.names.push({ ip: o.ip, name: o.name, from: o.from, to: o.to });
        else skipped++;
        break;
      case 't':
        if (str(o.key) && num(o.packets) && num(o.at)) h.tracked.set(o.key, { packets: o.packets, at: o.at });
        else skipped++;
        break;
      case 'hit': {
        const hit = parseHit(o);
        if (hit) h.hits.push(hit);
        else skipped++;
        break;
      }
      default:
        skipped++;
    }
  }
  return { history: h, skipped };
}

function parseHit(o: Record<string, unknown>): Hit | null {
  if (!num(o.at) || !str(o.src) || !str(o.dst) || !str(o.proto) || !str(o.port) || !num(o.n) || !Array.isArray(o.who)) return null;
  const hit: Hit = { at: o.at, src: o.src, dst: o.dst, proto: o.proto, port: o.port, n: o.n, who: o.who.filter(str) };
  if (num(o.prev)) hit.prev = o.prev;
  if (num(o.first)) hit.first = o.first;
  if (num(o.last)) hit.last = o.last;
  if (o.sure === true) hit.sure = true;
  if (o.mode === 'enforce' || o.mode === 'audit') hit.mode = o.mode;
  if (Array.isArray(o.names)) {
    const names = (o.names as { name?: unknown; via?: unknown }[]).filter((x) => str(x?.name) && (x.via === 'gate' || x.via === 'resolution')) as HitName[];
    if (names.length) hit.names = names.map((x) => ({ name: x.name, via: x.via }));
  }
  return hit;
}

/** Pure: History -> file text (bounded first with trimHistory). */
export function serializeHistory(h: History): string {
  const lines: string[] = [JSON.stringify({ k: 'meta', version: 1, ...(h.collectedAt !== undefined ? { collectedAt: h.collectedAt } : {}), ...(h.snapshotAt !== undefined ? { snapshotAt: h.snapshotAt } : {}) })];
  for (const c of h.containers.values()) lines.push(JSON.stringify({ k: 'c', ...c }));
  for (const s of h.spans) lines.push(JSON.stringify({ k: 'span', ...s }));
  for (const n of h.names) lines.push(JSON.stringify({ k: 'name', ...n }));
  for (const [key, t] of h.tracked) lines.push(JSON.stringify({ k: 't', key, ...t }));
  for (const hit of h.hits) lines.push(JSON.stringify({ k: 'hit', ...hit }));
  return `${lines.join('\n')}\n`;
}

/**
 * Time buckets for hits by age: the last hour as collected, then 5 minutes
 * up to a day, 1 hour up to a week, 1 day beyond. `--since` windows have
 * this resolution; counts are never lost by merging, only by the caps.
 */
export function bucketFor(age: number): number {
  if (age < 3600) return 0;
  if (age < 86400) return 300;
  if (age < 7 * 86400) return 3600;
  return 86400;
}

const hitGroup = (h: Hit, bucket: number) =>
  `${h.src}|${h.dst}|${h.proto}|${h.port}|${h.who.join(',')}|${h.sure ? 1 : 0}|${h.mode ?? ''}|${bucket ? Math.floor(h.at / bucket) : `raw${h.at}`}`;

function mergeHits(a: Hit, b: Hit): Hit {
  const m: Hit = { ...a, at: Math.max(a.at, b.at), n: a.n + b.n };
  const min = (x?: number, y?: number) => (x === undefined ? y : y === undefined ? x : Math.min(x, y));
  const max = (x?: number, y?: number) => (x === undefined ? y : y === undefined ? x : Math.max(x, y));
  const prev = min(a.prev, b.prev);
  const first = min(a.first, b.first);
  const last = max(a.last, b.last);
  if (prev !== undefined) m.prev = prev;
  if (first !== undefined) m.first = first;
  if (last !== undefined) m.last = last;
  const names = new Map([...(a.names ?? []), ...(b.names ?? [])].map((n) => [n.name, n]));
  if (names.size) m.names = [...names.values()];
  return m;
}

/**
 * Pure: bound the history. Hits are merged into age buckets, then the oldest
 * go past the caps; spans and names past maxAge or the caps go oldest first;
 * containers nobody refers to any more go.
 */
export function trimHistory(h: History, now: number, limits: Limits = DEFAULT_LIMITS): History {
  const cutoff = now - limits.maxAge;
  const groups = new Map<string, Hit>();
  for (const hit of h.hits) {
    if (hit.at < cutoff) continue;
    const key = hitGroup(hit, bucketFor(now - hit.at));
    const had = groups.get(key);
    groups.set(key, had ? mergeHits(had, hit) : hit);
  }
  const hits = [...groups.values()].sort((a, b) => a.at - b.at).slice(-limits.hits);
  const spans = h.spans.filter((s) => s.to >= cutoff).sort((a, b) => a.to - b.to).slice(-limits.spans).sort((a, b) => a.from - b.from);
  const names = h.names.filter((n) => n.to >= cutoff).sort((a, b) => a.to - b.to).slice(-limits.names);
  const used = new Set([...spans.map((s) => s.id), ...hits.flatMap((x) => x.who)]);
  const containers = new Map([...h.containers].filter(([id]) => used.has(id)));
  return { ...h, containers, spans, names, hits };
}
