import ipaddr from 'ipaddr.js';

export type Family = 4 | 6;

export interface Ip {
  /** canonical text: dotted quad, or RFC 5952 compressed IPv6 (what ipset prints) */
  text: string;
  family: Family;
}

export interface Cidr {
  /** canonical network text, host bits cleared, e.g. 192.0.2.0/24 */
  text: string;
  family: Family;
  prefix: number;
}

/**
 * Pure functions of one string, called for every address of every sync (thousands
 * per round, and again inside every sort comparison): remember their answers.
 * Bounded, so a long-running daemon never grows it without limit. Cached objects
 * are frozen: callers share them.
 */
function memo<T>(fn: (s: string) => T, max = 200_000): (s: string) => T {
  const cache = new Map<string, T>();
  return (s) => {
    const hit = cache.get(s);
    if (hit !== undefined || cache.has(s)) return hit as T;
    if (cache.size >= max) cache.clear();
    const v = fn(s);
    cache.set(s, v !== null && typeof v === 'object' ? Object.freeze(v) : v);
    return v;
  };
}

/**
 * Strict IP parse: only plain dotted-quad IPv4 (no hex, octal or short forms
 * that inet_aton would accept) and IPv6 without zone ids. Returns the
 * canonical form or null.
 */
export const parseIp: (input: string) => Ip | null = memo((input) => {
  // One family check per input: ipaddr's validators throw (slowly) on the other family's text.
  if (!input.includes(':')) {
    return ipaddr.IPv4.isValidFourPartDecimal(input) ? { text: ipaddr.IPv4.parse(input).toString(), family: 4 } : null;
  }
  if (!input.includes('%') && ipaddr.IPv6.isValid(input)) {
    return { text: ipaddr.IPv6.parse(input).toString(), family: 6 };
  }
  return null;
});

export const parseCidr: (input: string) => Cidr | null = memo((input) => {
  const slash = input.indexOf('/');
  const ip = parseIp(slash < 0 ? input : input.slice(0, slash));
  if (!ip) return null;
  const max = ip.family === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = input.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return null;
    prefix = Number(p);
    if (prefix > max) return null;
  }
  const network =
    ip.family === 4
      ? ipaddr.IPv4.networkAddressFromCIDR(`${ip.text}/${prefix}`)
      : ipaddr.IPv6.networkAddressFromCIDR(`${ip.text}/${prefix}`);
  return { text: `${network.toString()}/${prefix}`, family: ip.family, prefix };
});

type Range = [string, string];
// Answers in these ranges are refused unless the entry sets allowPrivate:
// a public name pointing here is DNS rebinding or a metadata-service grab.
const FORBIDDEN_V4: Range[] = [
  ['0.0.0.0/8', 'unspecified'],
  ['10.0.0.0/8', 'private'],
  ['100.64.0.0/10', 'carrier-grade NAT (incl. 100.100.100.200 metadata)'],
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link-local (incl. 169.254.169.254 metadata)'],
  ['172.16.0.0/12', 'private'],
  ['192.0.0.0/24', 'IETF protocol assignments'],
  ['192.168.0.0/16', 'private'],
  ['224.0.0.0/4', 'multicast'],
  ['240.0.0.0/4', 'reserved/broadcast'],
];
const FORBIDDEN_V6: Range[] = [
  ['::/128', 'unspecified'],
  ['::1/128', 'loopback'],
  ['fe80::/10', 'link-local'],
  ['fc00::/7', 'unique-local (incl. fd00:ec2::254 metadata)'],
  ['ff00::/8', 'multicast'],
];

const parsedV4 = FORBIDDEN_V4.map(([c, why]) => [ipaddr.IPv4.parseCIDR(c), why] as const);
const parsedV6 = FORBIDDEN_V6.map(([c, why]) => [ipaddr.IPv6.parseCIDR(c), why] as const);

/** Why an answer address is refused (a short reason), or null if it is public. */
export function forbiddenReason(ip: Ip): string | null {
  return forbiddenMemo(ip.text);
}

const forbiddenMemo = memo((text: string) => forbiddenUncached({ text, family: text.includes(':') ? 6 : 4 }));

function forbiddenUncached(ip: Ip): string | null {
  if (ip.family === 4) {
    const a = ipaddr.IPv4.parse(ip.text);
    for (const [range, why] of parsedV4) if (a.match(range)) return why;
    return null;
  }
  const a = ipaddr.IPv6.parse(ip.text);
  // IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::/96) carry an IPv4 target: judge that.
  if (a.isIPv4MappedAddress()) {
    const inner = forbiddenReason({ text: a.toIPv4Address().toString(), family: 4 });
    return inner ? `IPv4-mapped ${inner}` : null;
  }
  if (a.match(ipaddr.IPv6.parseCIDR('64:ff9b::/96'))) {
    const b = a.toByteArray().slice(12);
    const inner = forbiddenReason({ text: b.join('.'), family: 4 });
    return inner ? `NAT64-embedded ${inner}` : null;
  }
  for (const [range, why] of parsedV6) if (a.match(range)) return why;
  return null;
}

/**
 * A string that sorts like compareIp (family, then numeric): computed once per
 * item, so sorting thousands of entries does not re-parse on every comparison.
 */
export function ipSortKey(ip: string): string {
  const bytes = bytesOf(ip);
  let hex = bytes.length === 4 ? '4' : '6';
  for (const b of bytes) hex += (b < 16 ? '0' : '') + b.toString(16);
  return hex;
}

/** Sort by a key computed once per item (decorate, sort, undecorate). */
export function sortByKey<T>(items: Iterable<T>, key: (item: T) => string): T[] {
  return [...items]
    .map((item) => [key(item), item] as const)
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([, item]) => item);
}

const bytesOf = memo((ip: string) => ipaddr.parse(ip.split('/')[0]!).toByteArray());

/** Sort key: family first, then numeric order (stable, byte-identical output). */
export function compareIp(a: string, b: string): number {
  const pa = bytesOf(a);
  const pb = bytesOf(b);
  if (pa.length !== pb.length) return pa.length - pb.length;
  for (let i = 0; i < pa.length; i++) if (pa[i] !== pb[i]) return pa[i]! - pb[i]!;
  return a < b ? -1 : a > b ? 1 : 0;
}
