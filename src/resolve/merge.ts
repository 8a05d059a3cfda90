import { compareIp, parseIp, type Family } from '../net/ip.js';
import type { IpState, State } from '../state-file.js';
import { MAX_ADDRESSES, type DomainResolution, type FamilyResult } from './resolver.js';

export type IpSource = 'answer' | 'stale' | 'last-known-good';
export interface AllowedIp {
  ip: string;
  family: Family;
  source: IpSource;
  /** unix seconds after which a stale IP is dropped (answers: when the TTL expires) */
  until: number;
}
export interface AllowedDomain {
  name: string;
  status: string;
  detail: string;
  ips: AllowedIp[];
}

function familyOf(ip: string): Family {
  return parseIp(ip)?.family ?? 4;
}

/**
 * Pure: previous state + this round's answers -> new state and the allowed IPs.
 * - a family whose lookup failed keeps every IP it had (last-known-good: a DNS
 *   outage must not become an outage of the apps);
 * - an IP missing from a good answer stays allowed until lastSeen + max(ttl, staleGrace)
 *   (round-robin DNS, clients that cached it, long-lived connections);
 * - names no longer in the config are forgotten.
 */
export function mergeResolutions(
  prev: State,
  resolutions: DomainResolution[],
  now: number,
  staleGrace: number,
  status: (r: DomainResolution) => string,
  /** addresses kept per name and family: the answer's first, then the most recently seen (MAX_ADDRESSES at most) */
  maxPerName: number = MAX_ADDRESSES,
): { state: State; allowed: AllowedDomain[] } {
  const cap = Math.min(MAX_ADDRESSES, maxPerName);
  const state: State = { ...prev, version: 1, domains: {} };
  const allowed: AllowedDomain[] = [];
  for (const r of resolutions) {
    const before = prev.domains[r.name]?.ips ?? {};
    const ips: Record<string, IpState> = {};
    const out: AllowedIp[] = [];
    const word = status(r);
    const details: string[] = [];
    for (const [family, result] of [
      [4, r.v4],
      [6, r.v6],
    ] as [Family, FamilyResult | null][]) {
      // Most recently seen first, so a cap keeps the freshest (ties by address: stable output).
      const old = Object.entries(before)
        .filter(([ip]) => familyOf(ip) === family)
        .sort(([a, x], [b, y]) => y.lastSeen - x.lastSeen || compareIp(a, b));
      if (result === null) continue; // family turned off: its IPs go
      const rr = family === 4 ? 'A' : 'AAAA';
      let room = cap;
      if (!result.ok) {
        details.push(`${rr}: ${result.detail}`);
        for (const [ip, s] of old) {
          if (room-- <= 0) break;
          ips[ip] = s;
          out.push({ ip, family, source: 'last-known-good', until: s.lastSeen + Math.max(s.ttl, staleGrace) });
        }
        continue;
      }
      if (result.dropped || result.addresses.length > cap) {
        const more = (result.dropped ?? 0) + Math.max(0, result.addresses.length - cap);
        details.push(`${rr}: ${more} more addresses than dns.maxAddresses (${cap}) in the answer; kept the lowest`);
      }
      for (const a of result.addresses) {
        if (room-- <= 0) break;
        ips[a.ip] = { firstSeen: before[a.ip]?.firstSeen ?? now, lastSeen: now, ttl: a.ttl };
        out.push({ ip: a.ip, family, source: 'answer', until: now + a.ttl });
      }
      for (const [ip, s] of old) {
        if (ips[ip]) continue;
        const until = s.lastSeen + Math.max(s.ttl, staleGrace);
        if (now < until && room-- > 0) {
          ips[ip] = s;
          out.push({ ip, family, source: 'stale', until });
        }
      }
    }
    const hadOk = word === 'ok' || word === 'nodata';
    const lastOk = hadOk ? now : prev.domains[r.name]?.lastOk;
    state.domains[r.name] = { ips, status: word, ...(lastOk !== undefined ? { lastOk } : {}) };
    out.sort((a, b) => compareIp(a.ip, b.ip));
    allowed.push({ name: r.name, status: word, detail: details.join('; '), ips: out });
  }
  return { state, allowed };
}

/** Earliest moment an answer's TTL runs out or a stale IP should be dropped: when to refresh next. */
export function nextRefreshAt(allowed: AllowedDomain[]): number | undefined {
  let at: number | undefined;
  for (const d of allowed) for (const ip of d.ips) if (at === undefined || ip.until < at) at = ip.until;
  return at;
}
