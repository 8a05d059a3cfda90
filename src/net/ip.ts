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

/*
 * The DNS rebinding guard: answers in these blocks are refused unless the entry sets
 * allowPrivate, because a public name pointing there is DNS rebinding or a grab at a
 * metadata service or an internal network.
 *
 * Derived block by block from IANA's special-purpose address registries: every block whose
 * "Globally Reachable" is False is refused, every block marked True is accepted, even inside
 * a refused one (longest prefix wins):
 *   https://www.iana.org/assignments/iana-ipv4-special-registry/ (RFC 6890, RFC 8190)
 *   https://www.iana.org/assignments/iana-ipv6-special-registry/ (updated 2024-10-22)
 * Read through the search tool's stored copies of those pages, and for the full record table
 * a machine copy generated from IANA's CSVs (Wireshark's epan/iana-ip-data.c). Blocks from
 * other IANA registries: 224.0.0.0/4 (IPv4 multicast address space) and, from the IPv6
 * address space registry (https://www.iana.org/assignments/ipv6-address-space/), everything
 * outside 2000::/3 Global Unicast: "Reserved by IETF", fec0::/10 (deprecated site-local,
 * RFC 3879) and ff00::/8 multicast. That also covers ::/96 (IPv4-compatible, deprecated),
 * ::ffff:0:0:0/96 (IPv4-translated, RFC 2765), 100:0:0:1::/64 and 5f00::/16.
 *
 * Decisions where the registries leave room:
 * - Documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32,
 *   3fff::/20) stay ACCEPTED: they are not routed on the internet, so an answer there reaches
 *   nothing, and the lab's fake internet (test/lab) is built from them.
 * - IPv4-mapped (::ffff:0:0/96) and NAT64 (64:ff9b::/96, RFC 6052) addresses carry an IPv4
 *   target at a fixed place: they are judged by that IPv4 (as Python's ipaddress does for
 *   mapped ones). Local-use NAT64 (64:ff9b:1::/48, RFC 8215) is refused whole: where the IPv4
 *   sits depends on the operator's prefix length.
 * - 6to4 (2002::/16, "N/A" in the registry) is refused whole rather than judged by its
 *   embedded IPv4: it is deprecated (RFC 7526), and whatever relay or encapsulator is on the
 *   path decides where the packet really goes, so an IPv6 allowance would open an IPv4 path
 *   the guard cannot see. Likewise its relay anycast 192.88.99.0/24, and Teredo (2001::/32,
 *   "N/A"), whose IPv4 endpoint is obfuscated, falls inside the refused 2001::/23.
 * - 168.63.129.16 (Azure WireServer) is not special to IANA but is a cloud metadata endpoint.
 */
type Verdict = 'refuse' | 'accept' | 'embedded-v4';
type Block = readonly [cidr: string, verdict: Verdict, reason: string];

const V4_BLOCKS: Block[] = [
  ['0.0.0.0/8', 'refuse', 'unspecified ("this network")'],
  ['10.0.0.0/8', 'refuse', 'private'],
  ['100.64.0.0/10', 'refuse', 'carrier-grade NAT (incl. 100.100.100.200 metadata)'],
  ['127.0.0.0/8', 'refuse', 'loopback'],
  ['168.63.129.16/32', 'refuse', 'Azure WireServer metadata'],
  ['169.254.0.0/16', 'refuse', 'link-local (incl. 169.254.169.254 metadata)'],
  ['172.16.0.0/12', 'refuse', 'private'],
  ['192.0.0.0/24', 'refuse', 'IETF protocol assignments'],
  ['192.0.0.9/32', 'accept', 'Port Control Protocol anycast (globally reachable)'],
  ['192.0.0.10/32', 'accept', 'TURN anycast (globally reachable)'],
  ['192.0.2.0/24', 'accept', 'documentation (TEST-NET-1)'],
  ['192.31.196.0/24', 'accept', 'AS112-v4 (globally reachable)'],
  ['192.52.193.0/24', 'accept', 'AMT (globally reachable)'],
  ['192.88.99.0/24', 'refuse', 'deprecated 6to4 relay anycast'],
  ['192.168.0.0/16', 'refuse', 'private'],
  ['192.175.48.0/24', 'accept', 'AS112 direct delegation (globally reachable)'],
  ['198.18.0.0/15', 'refuse', 'benchmarking'],
  ['198.51.100.0/24', 'accept', 'documentation (TEST-NET-2)'],
  ['203.0.113.0/24', 'accept', 'documentation (TEST-NET-3)'],
  ['224.0.0.0/4', 'refuse', 'multicast'],
  ['240.0.0.0/4', 'refuse', 'reserved (incl. 255.255.255.255 broadcast)'],
];

const V6_BLOCKS: Block[] = [
  ['::/3', 'refuse', 'reserved by the IETF (not global unicast)'],
  ['4000::/2', 'refuse', 'reserved by the IETF (not global unicast)'],
  ['8000::/1', 'refuse', 'reserved by the IETF (not global unicast)'],
  ['::/128', 'refuse', 'unspecified'],
  ['::1/128', 'refuse', 'loopback'],
  ['::ffff:0:0/96', 'embedded-v4', 'IPv4-mapped'],
  ['64:ff9b::/96', 'embedded-v4', 'NAT64-embedded'],
  ['64:ff9b:1::/48', 'refuse', 'local-use NAT64'],
  ['100::/64', 'refuse', 'discard-only'],
  ['2001::/23', 'refuse', 'IETF protocol assignments'],
  ['2001::/32', 'refuse', 'Teredo'],
  ['2001:1::1/128', 'accept', 'Port Control Protocol anycast (globally reachable)'],
  ['2001:1::2/128', 'accept', 'TURN anycast (globally reachable)'],
  ['2001:1::3/128', 'accept', 'DNS-SD SRP anycast (globally reachable)'],
  ['2001:2::/48', 'refuse', 'benchmarking'],
  ['2001:3::/32', 'accept', 'AMT (globally reachable)'],
  ['2001:4:112::/48', 'accept', 'AS112-v6 (globally reachable)'],
  ['2001:10::/28', 'refuse', 'deprecated ORCHID'],
  ['2001:20::/28', 'accept', 'ORCHIDv2 (globally reachable)'],
  ['2001:30::/28', 'accept', 'Drone Remote ID DETs (globally reachable)'],
  ['2001:db8::/32', 'accept', 'documentation'],
  ['2002::/16', 'refuse', '6to4'],
  ['2620:4f:8000::/48', 'accept', 'AS112 direct delegation (globally reachable)'],
  ['3fff::/20', 'accept', 'documentation'],
  ['5f00::/16', 'refuse', 'SRv6 SIDs'],
  ['fc00::/7', 'refuse', 'unique-local (incl. fd00:ec2::254 metadata)'],
  ['fe80::/10', 'refuse', 'link-local'],
  ['fec0::/10', 'refuse', 'site-local (deprecated)'],
  ['ff00::/8', 'refuse', 'multicast'],
];

interface Parsed {
  first: bigint;
  last: bigint;
  prefix: number;
  verdict: Verdict;
  reason: string;
}

function toBig(bytes: number[]): bigint {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  return n;
}

function parseBlocks(blocks: Block[], bits: number): Parsed[] {
  return blocks
    .map(([cidr, verdict, reason]) => {
      const [addr, prefix] = ipaddr.parseCIDR(cidr);
      const first = toBig(addr.toByteArray());
      const size = 1n << BigInt(bits - prefix);
      if (first % size !== 0n) throw new Error(`${cidr}: host bits set`);
      return { first, last: first + size - 1n, prefix, verdict, reason };
    })
    .sort((a, b) => b.prefix - a.prefix); // longest prefix first: the first match wins
}

const V4 = parseBlocks(V4_BLOCKS, 32);
const V6 = parseBlocks(V6_BLOCKS, 128);

const matchBlock = (blocks: Parsed[], n: bigint) => blocks.find((b) => n >= b.first && n <= b.last);

/** Why an answer address is refused (a short reason), or null if it is accepted. */
export function forbiddenReason(ip: Ip): string | null {
  return forbiddenMemo(ip.text);
}

const forbiddenMemo = memo((text: string): string | null => {
  const n = toBig(bytesOf(text));
  if (!text.includes(':')) {
    const b = matchBlock(V4, n);
    return b?.verdict === 'refuse' ? b.reason : null;
  }
  const b = matchBlock(V6, n);
  if (!b || b.verdict === 'accept') return null;
  if (b.verdict === 'refuse') return b.reason;
  const v4 = matchBlock(V4, n & 0xffffffffn);
  return v4?.verdict === 'refuse' ? `${b.reason} ${v4.reason}` : null;
});

/** [first, last] ranges -> the fewest CIDRs covering exactly them (merged, sorted). */
function rangesToCidrs(ranges: [bigint, bigint][], bits: number): string[] {
  const sorted = [...ranges].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const merged: [bigint, bigint][] = [];
  for (const [f, l] of sorted) {
    const prev = merged[merged.length - 1];
    if (prev && f <= prev[1] + 1n) prev[1] = l > prev[1] ? l : prev[1];
    else merged.push([f, l]);
  }
  const out: string[] = [];
  for (let [start, end] of merged) {
    while (start <= end) {
      let size = 1n;
      let prefix = bits;
      while (prefix > 0 && start % (size * 2n) === 0n && start + size * 2n - 1n <= end) {
        size *= 2n;
        prefix--;
      }
      out.push(`${bigToText(start, bits)}/${prefix}`);
      start += size;
    }
  }
  return out;
}

/** Split the address space at every block edge; each piece takes the verdict of its longest matching block. */
function refusedRanges(blocks: Parsed[], inner?: [bigint, bigint][]): [bigint, bigint][] {
  const edges = [...new Set(blocks.flatMap((b) => [b.first, b.last + 1n]))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const out: [bigint, bigint][] = [];
  for (let i = 0; i + 1 < edges.length; i++) {
    const [lo, hi] = [edges[i]!, edges[i + 1]! - 1n];
    const b = matchBlock(blocks, lo);
    if (b?.verdict === 'refuse') out.push([lo, hi]);
    else if (b?.verdict === 'embedded-v4' && inner) {
      // The IPv4 in the low 32 bits: the block's copy of every refused IPv4 range.
      for (const [f, l] of inner) out.push([b.first + f, b.first + l]);
    }
  }
  return out;
}

const refusedV4 = refusedRanges(V4);
const refusedV6 = refusedRanges(V6, refusedV4);

function bigToText(n: bigint, bits: number): string {
  const bytes: number[] = [];
  for (let i = bits / 8 - 1; i >= 0; i--) bytes.push(Number((n >> BigInt(i * 8)) & 0xffn));
  return ipaddr.fromByteArray(bytes).toString();
}

/**
 * The lowest address of a network that the guard would refuse as an answer, with the
 * reason, or null when the network holds none (config warnings for allow[].cidr).
 */
export function refusedExample(c: Cidr): { ip: string; reason: string } | null {
  const bits = c.family === 4 ? 32 : 128;
  const first = toBig(bytesOf(c.text));
  const last = first + (1n << BigInt(bits - c.prefix)) - 1n;
  let lowest: bigint | undefined;
  for (const [f, l] of c.family === 4 ? refusedV4 : refusedV6) {
    if (f > last || l < first) continue;
    const x = f > first ? f : first;
    if (lowest === undefined || x < lowest) lowest = x;
  }
  if (lowest === undefined) return null;
  const ip = bigToText(lowest, bits);
  return { ip, reason: forbiddenReason({ text: ip, family: c.family })! };
}

/**
 * Destinations the rebinding guard refuses, as CIDRs (canonical text, merged, sorted), for
 * rules that cannot ask forbiddenReason per address: e.g. the SNI proxy's wildcard rule,
 * which lets the proxy reach any address on its ports, must not reach these.
 */
export const REFUSED_V4_CIDRS: readonly string[] = Object.freeze(rangesToCidrs(refusedV4, 32));
export const REFUSED_V6_CIDRS: readonly string[] = Object.freeze(rangesToCidrs(refusedV6, 128));

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
