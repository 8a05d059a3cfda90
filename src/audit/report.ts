import { compareIp } from '../net/ip.js';
import type { ContainerRef, History, HitName } from './history.js';
import { HOST } from './records.js';
import { printLines } from '../text.js';

/** Pure: the history over a time window -> per source (container, host, unknown IP) the refused destinations. */

export interface ReportDest {
  dst: string;
  proto: string;
  port: string;
  names: HitName[];
  count: number;
  /** attempts refused (enforce) and let through (audit); the rest: mode unknown */
  refused: number;
  audited: number;
  first: number;
  /** false: the collection that first saw it (the attempt was at or before) */
  firstExact: boolean;
  last: number;
  /** false: the collection that saw the counter grow */
  lastExact: boolean;
}

export interface ReportSource {
  kind: 'container' | 'host' | 'unknown';
  /** container name(s), "host", or the source IP */
  label: string;
  /** one container; two when the IP changed hands between snapshots and the attempt could be either's */
  containers: ContainerRef[];
  ips: string[];
  /** every attempt was inside a Docker snapshot that saw this container hold the IP */
  sure: boolean;
  count: number;
  destinations: ReportDest[];
}

export interface Report {
  from: number;
  to: number;
  /** the window length asked for (seconds) */
  since: number;
  collectedAt?: number;
  /** oldest hit kept: a window reaching further back is incomplete */
  historyFrom?: number;
  sources: ReportSource[];
  notes: string[];
}

export interface ReportInput {
  history: History;
  now: number;
  since: number;
  notes?: string[];
}

export function buildReport({ history: h, now, since, notes = [] }: ReportInput): Report {
  const from = now - since;
  const sources = new Map<string, ReportSource>();
  const dests = new Map<string, Map<string, ReportDest>>();
  const sure = new Map<string, boolean>();
  for (const hit of h.hits) {
    const t = hit.last ?? hit.at;
    if (t < from || hit.at > now + 60) continue;
    const kind = hit.src === HOST ? 'host' : hit.who.length ? 'container' : 'unknown';
    const key = kind === 'host' ? HOST : kind === 'container' ? `c:${hit.who.join('|')}` : `ip:${hit.src}`;
    let src = sources.get(key);
    if (!src) {
      const containers = hit.who.map((id) => h.containers.get(id) ?? { id, name: id.slice(0, 12), image: '', state: 'unknown', lastRunning: 0 });
      src = { kind, label: kind === 'host' ? 'host' : kind === 'container' ? containers.map((c) => c.name).join(' or ') : hit.src, containers, ips: [], sure: true, count: 0, destinations: [] };
      sources.set(key, src);
      dests.set(key, new Map());
    }
    if (hit.src !== HOST && !src.ips.includes(hit.src)) src.ips.push(hit.src);
    sure.set(key, (sure.get(key) ?? true) && (kind !== 'container' || hit.sure === true));
    src.count += hit.n;
    const dkey = `${hit.dst}|${hit.proto}|${hit.port}`;
    // Not known exactly: the collection that first saw it, or the last attempt of that collection if earlier.
    const first = hit.first ?? Math.min(hit.at, t);
    const d = dests.get(key)!.get(dkey);
    if (!d) {
      dests.get(key)!.set(dkey, {
        dst: hit.dst,
        proto: hit.proto,
        port: hit.port,
        names: [...(hit.names ?? [])],
        count: hit.n,
        refused: hit.mode === 'enforce' ? hit.n : 0,
        audited: hit.mode === 'audit' ? hit.n : 0,
        first,
        firstExact: hit.first !== undefined,
        last: t,
        lastExact: hit.last !== undefined,
      });
      continue;
    }
    d.count += hit.n;
    if (hit.mode === 'enforce') d.refused += hit.n;
    if (hit.mode === 'audit') d.audited += hit.n;
    if (first < d.first) Object.assign(d, { first, firstExact: hit.first !== undefined });
    if (t > d.last) Object.assign(d, { last: t, lastExact: hit.last !== undefined });
    // Newer hits name it better (the gate log of the time): their names first.
    for (const n of hit.names ?? []) if (!d.names.some((x) => x.name === n.name)) d.names.unshift(n);
  }
  const order = { container: 0, host: 1, unknown: 2 } as const;
  const out = [...sources.entries()].map(([key, s]) => ({
    ...s,
    sure: sure.get(key) ?? true,
    ips: s.ips.sort(compareIp),
    destinations: [...dests.get(key)!.values()].sort((a, b) => b.count - a.count || compareIp(a.dst, b.dst) || a.proto.localeCompare(b.proto) || Number(a.port) - Number(b.port)),
  }));
  out.sort((a, b) => order[a.kind] - order[b.kind] || a.label.localeCompare(b.label) || compareIp(a.ips[0] ?? '0.0.0.0', b.ips[0] ?? '0.0.0.0'));
  const oldest = h.hits.reduce<number | undefined>((m, x) => (m === undefined || x.at < m ? x.at : m), undefined);
  return {
    from,
    to: now,
    since,
    ...(h.collectedAt !== undefined ? { collectedAt: h.collectedAt } : {}),
    ...(oldest !== undefined ? { historyFrom: oldest } : {}),
    sources: out,
    notes,
  };
}

export const iso = (t: number) => new Date(Math.round(t) * 1000).toISOString().replace(/\.000Z$/, 'Z');

/** "443/tcp", "53/udp", "icmp echo-request", "gre". */
export function portText(proto: string, port: string): string {
  if (['tcp', 'udp', 'sctp', 'dccp', 'udplite'].includes(proto)) return `${port}/${proto}`;
  return port === '0' ? proto : `${proto} ${port}`;
}

export function durationText(sec: number): string {
  if (sec % 86400 === 0) return `${sec / 86400}d`;
  if (sec % 3600 === 0) return `${sec / 3600}h`;
  if (sec % 60 === 0) return `${sec / 60}m`;
  return `${sec}s`;
}

function describeContainer(c: ContainerRef): string {
  const parts: string[] = [];
  if (c.project || c.service) parts.push(`compose ${c.project ?? '?'}/${c.service ?? '?'}`);
  if (c.image) parts.push(`image ${c.image}`);
  parts.push(`id ${c.id.slice(0, 12)}`);
  if (c.state !== 'running') parts.push(c.state === 'unknown' ? 'state unknown' : c.state);
  return parts.join('; ');
}

function modeText(d: ReportDest): string {
  const unknown = d.count - d.refused - d.audited;
  const parts = [...(d.refused ? [`${d.refused} refused`] : []), ...(d.audited ? [`${d.audited} let through (audit)`] : []), ...(unknown ? [`${unknown} mode unknown`] : [])];
  return parts.join(', ');
}

function table(rows: string[][]): string[] {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => `  ${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!))).join('  ')}`.trimEnd());
}

/** The report for people. */
export function renderReportText(r: Report): string {
  const out: string[] = [];
  out.push(`egressfw report: connections refused, or let through by audit mode, from ${iso(r.from)} to ${iso(r.to)} (last ${durationText(r.since)})`);
  out.push(r.collectedAt !== undefined ? `last collection: ${iso(r.collectedAt)}` : 'nothing collected yet');
  if (!r.sources.length) out.push('', 'no refused connections in this window');
  for (const s of r.sources) {
    out.push('');
    if (s.kind === 'container') {
      const head = s.containers.length > 1 ? `container ${s.label} (IP ${s.ips.join(', ')} changed hands between snapshots: either made these attempts)` : `container ${s.label} (${describeContainer(s.containers[0]!)})`;
      out.push(`${head}${s.sure ? '' : ' [attributed by the nearest Docker snapshot, more than a minute from the attempt]'}`);
      if (s.containers.length > 1) for (const c of s.containers) out.push(`  ${c.name}: ${describeContainer(c)}`);
    } else if (s.kind === 'host') out.push('host (the machine itself)');
    else out.push(`unattributed source ${s.label} (no Docker snapshot saw a container with this IP: it came and went between snapshots, or it is not a container)`);
    const rows = [['DESTINATION', 'PORT', 'NAME', 'COUNT', 'FIRST SEEN', 'LAST SEEN', 'MODE']];
    for (const d of s.destinations) {
      rows.push([
        d.dst,
        portText(d.proto, d.port),
        d.names.length ? d.names.map((n) => `${n.name}${n.via === 'gate' ? ' (gate)' : ''}`).join(', ') : '-',
        String(d.count),
        `${d.firstExact ? '' : '~'}${iso(d.first)}`,
        `${d.lastExact ? '' : '~'}${iso(d.last)}`,
        modeText(d),
      ]);
    }
    out.push(...table(rows));
  }
  out.push('');
  out.push('~ the time of the collection that first saw it (first seen) or saw its count grow (last seen): the attempt was at or before it.');
  out.push('  Collections run with every `egressfw report`/`suggest` and in the daemon (see docs/rollout.md).');
  for (const n of r.notes) out.push(`note: ${n}`);
  // names come from the DNS gate's log, container names and compose labels from Docker
  return printLines(out);
}

/** The report for machines: times as unix seconds and ISO text. */
export function reportJson(r: Report) {
  return {
    version: 1,
    from: iso(r.from),
    to: iso(r.to),
    sinceSeconds: r.since,
    collectedAt: r.collectedAt !== undefined ? iso(r.collectedAt) : null,
    historyFrom: r.historyFrom !== undefined ? iso(r.historyFrom) : null,
    sources: r.sources.map((s) => ({
      kind: s.kind,
      label: s.label,
      ips: s.ips,
      sure: s.sure,
      count: s.count,
      containers: s.containers.map((c) => ({ id: c.id, name: c.name, image: c.image, project: c.project ?? null, service: c.service ?? null, state: c.state })),
      destinations: s.destinations.map((d) => ({
        ip: d.dst,
        proto: d.proto,
        port: d.port,
        names: d.names,
        count: d.count,
        refused: d.refused,
        audited: d.audited,
        firstSeen: iso(d.first),
        firstSeenExact: d.firstExact,
        lastSeen: iso(d.last),
        lastSeenExact: d.lastExact,
      })),
    })),
    notes: r.notes,
  };
}

/** Refusals per policy, then per compose service (or container name) within it: who needs what (issue 18). */
export interface PolicyGroup {
  policy: string;
  count: number;
  services: { service: string; count: number; destinations: number }[];
}

/**
 * Pure: the report's container sources grouped by the policy `policyOf` gives each container
 * (the config's assignment today) and by compose service. Sources an address shared between
 * containers left unattributed are under "(unattributed)".
 */
export function groupByPolicy(r: Report, policyOf: (c: ContainerRef) => string): PolicyGroup[] {
  const groups = new Map<string, Map<string, { count: number; destinations: Set<string> }>>();
  for (const s of r.sources) {
    if (s.kind !== 'container') continue;
    const one = s.containers.length === 1 ? s.containers[0]! : null;
    const policy = one ? policyOf(one) : '(unattributed)';
    const service = one ? (one.project && one.service ? `${one.project}/${one.service}` : one.name) : s.label;
    const g = groups.get(policy) ?? groups.set(policy, new Map()).get(policy)!;
    const e = g.get(service) ?? g.set(service, { count: 0, destinations: new Set() }).get(service)!;
    e.count += s.count;
    for (const d of s.destinations) e.destinations.add(`${d.dst}|${d.proto}|${d.port}`);
  }
  return [...groups]
    .map(([policy, g]) => ({
      policy,
      count: [...g.values()].reduce((n, e) => n + e.count, 0),
      services: [...g].map(([service, e]) => ({ service, count: e.count, destinations: e.destinations.size })).sort((a, b) => b.count - a.count || a.service.localeCompare(b.service)),
    }))
    .sort((a, b) => b.count - a.count || a.policy.localeCompare(b.policy));
}

export function groupsText(groups: PolicyGroup[]): string[] {
  if (!groups.length) return [];
  const out = ['', 'Refusals per policy and service'];
  for (const g of groups) {
    out.push(`  policy ${g.policy}: ${g.count} attempts`);
    for (const s of g.services) out.push(`    ${s.service}: ${s.count} attempts to ${s.destinations} destinations`);
  }
  return out;
}
