// The benchmark's allowlist: N names under bench.test, each with 1-4 A and 1-4 AAAA records, drawn from a
// seeded PRNG (the same on every machine). Addresses are documentation ranges only.
import { prng } from './util.js';

export const ZONE = 'bench.test';
export const SEED = 20_240_601;

/** IPv4 documentation ranges (host addresses .1-.254): 762 addresses, so names share IPv4 addresses (as CDNs do). */
const V4_POOL: string[] = ['192.0.2', '198.51.100', '203.0.113'].flatMap((p) => Array.from({ length: 254 }, (_, i) => `${p}.${i + 1}`));

export interface Records {
  A: string[];
  AAAA: string[];
}

export const nameOf = (i: number) => `d${String(i).padStart(5, '0')}.${ZONE}`;

/** Records of name i; `version` > 0 gives different answers (a DNS change). Independent of the list size. */
export function recordsOf(i: number, version = 0): Records {
  const r = prng(SEED + i * 7919 + version * 104_729);
  const nA = 1 + Math.floor(r() * 4);
  const nAAAA = 1 + Math.floor(r() * 4);
  const A = new Set<string>();
  while (A.size < nA) A.add(V4_POOL[Math.floor(r() * V4_POOL.length)]!);
  // unique per name and version, in canonical form (no zero groups): 2001:db8:1V00:<i+1>::<k+1>
  if (i >= 0xffff) throw new Error('allowlist: at most 65,534 names');
  const AAAA = Array.from({ length: nAAAA }, (_, k) => `2001:db8:${(0x1000 + version * 0x100).toString(16)}:${(i + 1).toString(16)}::${(k + 1).toString(16)}`);
  return { A: [...A], AAAA };
}

/** Which names change in the "5 % of the answers changed" refresh (seeded; at least one). */
export function changedNames(n: number): Set<number> {
  const r = prng(SEED ^ 0x5eed);
  const want = Math.max(1, Math.round(n * 0.05));
  const out = new Set<number>();
  while (out.size < want) out.add(Math.floor(r() * n));
  return out;
}

/** dnsmasq --addn-hosts text for names 0..total-1, with `changed` names at version 1. */
export function hostsFile(total: number, changed: Set<number> = new Set()): string {
  const lines: string[] = [];
  for (let i = 0; i < total; i++) {
    const rec = recordsOf(i, changed.has(i) ? 1 : 0);
    for (const a of [...rec.A, ...rec.AAAA]) lines.push(`${a} ${nameOf(i)}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The distinct IPs the first n names resolve to (what a per-IP rule set would have to list). */
export function uniqueIps(n: number): { v4: string[]; v6: string[] } {
  const v4 = new Set<string>();
  const v6 = new Set<string>();
  for (let i = 0; i < n; i++) {
    const rec = recordsOf(i);
    rec.A.forEach((a) => v4.add(a));
    rec.AAAA.forEach((a) => v6.add(a));
  }
  return { v4: [...v4], v6: [...v6] };
}

export interface ConfigOpts {
  dnsServer: string;
  minTtl?: string;
  refresh?: string;
}

/** egressfw config for the first n names, port 443, host (ufw) and containers managed. */
export function configYaml(n: number, o: ConfigOpts): string {
  return [
    'dns:',
    `  servers: [${o.dnsServer}]`,
    ...(o.minTtl ? [`  minTtl: ${o.minTtl}`] : []),
    'host:',
    '  enabled: true',
    ...(o.refresh ? ['schedule:', `  refresh: "${o.refresh}"`] : []),
    'allow:',
    ...Array.from({ length: n }, (_, i) => `  - domain: ${nameOf(i)}`),
    '',
  ].join('\n');
}
