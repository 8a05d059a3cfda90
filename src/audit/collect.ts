import { parseIp } from '../net/ip.js';
import type { Mode } from '../plan/audit-rules.js';
import type { State } from '../state-file.js';
import type { ContainerRef, History, Hit, Span } from './history.js';
import { mergeNames, namesFor, resolutionNames, type GateEntry } from './destination-names.js';
import { HOST, recordKey, type KernelRecord } from './records.js';

/**
 * Pure: one collection folded into the history. Attribution (source IP ->
 * container) and naming are decided here, when the record is collected, and
 * kept with the counts: the container may be gone by the time of the report.
 */

/** A container as the Docker API client (src/system/docker.ts) lists it. */
export interface ContainerInfo {
  id: string;
  name: string;
  image: string;
  labels: Record<string, string>;
  networks: { name: string; ipv4?: string | null; ipv6?: string | null }[];
  state: string;
}

/** Which kernel record sets were read this time (a set not read keeps its counters for the next read). */
export type RecordSource = 'containers4' | 'containers6' | 'host4' | 'host6';

export interface Collection {
  now: number;
  records: KernelRecord[];
  read: RecordSource[];
  /** null: Docker could not be asked this time */
  containers: ContainerInfo[] | null;
  /** state.json's domains (egressfw's own resolution history), when readable */
  domains: State['domains'] | null;
  gate: GateEntry[];
  modes: { containers: Mode | null; host: Mode | null };
}

const ipOf = (v: string | null | undefined) => (v ? parseIp(v.split('/')[0]!)?.text : undefined);

/** Pure: a Docker snapshot -> updated containers and IP spans. Only running containers hold an IP. */
export function applySnapshot(h: History, containers: ContainerInfo[], now: number): History {
  const refs = new Map(h.containers);
  const spans: Span[] = h.spans.map((s) => ({ ...s }));
  const latest = new Map<string, Span>();
  for (const s of spans) {
    const had = latest.get(s.ip);
    if (!had || s.from >= had.from) latest.set(s.ip, s);
  }
  const listed = new Set<string>();
  for (const c of containers) {
    listed.add(c.id);
    const running = c.state === 'running';
    const had = refs.get(c.id);
    if (!running && !had) continue; // never seen with an address: nothing to attribute to it
    const ref: ContainerRef = {
      id: c.id,
      name: c.name.replace(/^\//, ''),
      image: c.image,
      ...(c.labels['com.docker.compose.project'] ? { project: c.labels['com.docker.compose.project'] } : {}),
      ...(c.labels['com.docker.compose.service'] ? { service: c.labels['com.docker.compose.service'] } : {}),
      state: c.state,
      lastRunning: running ? now : (had?.lastRunning ?? 0),
    };
    refs.set(c.id, ref);
    if (!running) continue;
    for (const n of c.networks) {
      for (const ip of [ipOf(n.ipv4), ipOf(n.ipv6)]) {
        if (!ip) continue;
        const last = latest.get(ip);
        if (last && last.id === c.id) last.to = Math.max(last.to, now);
        else {
          const span: Span = { ip, id: c.id, from: now, to: now, ...(n.name ? { network: n.name } : {}) };
          spans.push(span);
          latest.set(ip, span);
        }
      }
    }
  }
  for (const [id, ref] of refs) if (!listed.has(id) && ref.state !== 'removed') refs.set(id, { ...ref, state: 'removed' });
  return { ...h, containers: refs, spans, snapshotAt: now };
}

/** Clocks are this coarse (seconds, times from different reads): a span "covers" t within it. */
const SLACK = 2;
/**
 * A snapshot this close to the attempt, showing the only holder of the
 * address, makes the attribution sure: an address moving to another container
 * and back within a minute is not something Docker's IPAM does.
 */
const NEAR = 60;

/**
 * Who held `ip` at time `t`: the container whose span covers t, else the
 * nearest span in time (a container first seen just after its attempt, or
 * last seen just before). When the nearest before and after differ, both
 * are named: the IP changed hands in between.
 */
export function attribute(spans: Span[], ip: string, t: number): { who: string[]; sure: boolean } {
  const mine = spans.filter((s) => s.ip === ip);
  const covering = mine.filter((s) => s.from - SLACK <= t && t <= s.to + SLACK);
  if (covering.length) return { who: [...new Set(covering.map((s) => s.id))], sure: true };
  const before = mine.filter((s) => s.to < t).sort((a, b) => b.to - a.to)[0];
  const after = mine.filter((s) => s.from > t).sort((a, b) => a.from - b.from)[0];
  if (before && after && before.id !== after.id) return { who: [before.id, after.id], sure: false };
  const one = before ?? after;
  if (!one) return { who: [], sure: false };
  return { who: [one.id], sure: Math.min(Math.abs(t - one.to), Math.abs(one.from - t)) <= NEAR };
}

/**
 * Pure: fold one read of the kernel's record sets into the history. The
 * growth of each element's counter since the last read is the new attempts;
 * a counter that went down (the element expired and came back) counts from
 * zero. First read of an element: all its packets count, at this collection.
 */
export function applyCollection(h0: History, c: Collection): History {
  let h = c.containers ? applySnapshot(h0, c.containers, c.now) : { ...h0 };
  if (c.domains) h = { ...h, names: mergeNames(h.names, resolutionNames(c.domains)) };
  const read = new Set(c.read);
  const tracked = new Map([...h.tracked].filter(([key]) => !read.has(sourceOfKey(key))));
  const hits: Hit[] = [...h.hits];
  for (const r of c.records) {
    const key = r.rawPort === undefined ? recordKey(r) : `${recordKey(r)}|${r.rawPort}`;
    const prev = h.tracked.get(key);
    tracked.set(key, { packets: r.packets, at: c.now });
    const added = r.addedAgo !== undefined ? c.now - r.addedAgo : undefined;
    // Re-added since the last read (expired, came back): its counter started again.
    const restarted = prev !== undefined && (r.packets < prev.packets || (added !== undefined && added > prev.at + SLACK));
    const n = prev && !restarted ? r.packets - prev.packets : r.packets;
    if (n <= 0) continue;
    const last = r.lastAgo !== undefined ? c.now - r.lastAgo : undefined;
    const hit: Hit = { at: c.now, src: r.src, dst: r.dst, proto: r.proto, port: r.port, n, who: [] };
    const since = prev?.at ?? h.collectedAt;
    if (since !== undefined) hit.prev = since;
    if (added !== undefined && (!prev || restarted)) hit.first = added;
    else if (last !== undefined && n === 1) hit.first = last;
    if (last !== undefined) hit.last = last;
    const t = last ?? c.now;
    if (r.src !== HOST) {
      const a = attribute(h.spans, r.src, t);
      hit.who = a.who;
      if (a.sure) hit.sure = true;
    }
    const mode = r.src === HOST ? c.modes.host : c.modes.containers;
    if (mode) hit.mode = mode;
    const names = namesFor(r.dst, t, r.src === HOST ? undefined : r.src, c.gate, h.names);
    if (names.length) hit.names = names;
    hits.push(hit);
  }
  return { ...h, tracked, hits, collectedAt: c.now };
}

function sourceOfKey(key: string): RecordSource {
  const [src, dst] = key.split('|') as [string, string];
  return `${src === HOST ? 'host' : 'containers'}${dst.includes(':') ? 6 : 4}`;
}
