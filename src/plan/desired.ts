import type { Config } from '../config/load.js';
import { hostAuditRules, type Mode } from './audit-rules.js';
import type { Port } from '../config/schema.js';
import { ipSortKey, parseCidr, sortByKey, type Family } from '../net/ip.js';
import type { AllowedDomain } from '../resolve/merge.js';
import { gateUfwRules } from './gate.js';
import { buildNftDesired, nftSetMembers, type NftDesired } from './nft.js';
import { allowedFor, buildPolicyDesired, type InventoryContainer } from './policies.js';
import { policiesInUse } from '../policy/assign.js';
import { CHAIN, FORWARD_MARK_HEX, HOST_CHAIN, SET, UFW_FORWARD, UFW_OUTPUT, BLOCK_BEGIN, BLOCK_END } from './kernel-names.js';

/** The kernel state one sync aims for, per family. Rule lines are in iptables-save's own canonical form. */
export interface Desired {
  sets: Record<Family, string[]>;
  /** egressfw's nftables table (containers), or null when containers are not managed */
  nft: NftDesired | null;
  /** EGRESSFW-HOST rules (host output), or null when the host is not managed */
  hostRules: Record<Family, string[]> | null;
  /** ufw: outgoing policy and the marked block for before.rules/before6.rules */
  ufw: { outgoing: 'deny' | 'reject'; blocks: Record<Family, string>; enable: boolean } | null;
}

const c = (text: string) => (/\s/.test(text) ? `"${text}"` : text);
const comment = (what: string) => `-m comment --comment ${c(`egressfw ${what}`)}`;

/** ipset member text: "203.0.113.7,tcp:443" (host) or "192.0.2.0/24,udp:53" (network). */
export function setEntry(cidrOrIp: string, port: Port): string {
  const parsed = parseCidr(cidrOrIp)!;
  const full = parsed.family === 4 ? 32 : 128;
  const addr = parsed.prefix === full ? parsed.text.split('/')[0]! : parsed.text;
  return `${addr},${port.proto}:${port.port}`;
}

/** Set members in a stable order: address (family, numeric), networks before hosts, then proto, port. */
export function sortEntries(entries: Iterable<string>): string[] {
  return sortByKey(entries, (e) => {
    const comma = e.indexOf(',');
    const addr = e.slice(0, comma);
    const [proto, port] = e.slice(comma + 1).split(':') as [string, string];
    const slash = addr.indexOf('/');
    const prefix = slash < 0 ? '999' : addr.slice(slash + 1).padStart(3, '0');
    return `${ipSortKey(slash < 0 ? addr : addr.slice(0, slash))}${prefix}${proto}${port.padStart(5, '0')}`;
  });
}

export interface DnsServer {
  host: string;
  port: number;
}

const DNS_PORTS = (port: number): Port[] => [
  { port, proto: 'tcp' },
  { port, proto: 'udp' },
];

export function desiredSets(config: Pick<Config, 'domains' | 'cidrs' | 'ipv6'>, allowed: AllowedDomain[], dns: DnsServer[]): Record<Family, string[]> {
  const sets: Record<Family, Set<string>> = { 4: new Set(), 6: new Set() };
  const ports = new Map(config.domains.map((d) => [d.name, d.ports]));
  // One resolution serves every list (src/plan/policies.ts): each takes its own names, private addresses only where it allows them.
  for (const d of allowedFor(config, allowed)) for (const ip of d.ips) for (const p of ports.get(d.name) ?? []) sets[ip.family].add(setEntry(ip.ip, p));
  for (const r of config.cidrs) for (const p of r.ports) sets[r.family].add(setEntry(r.cidr, p));
  // The resolvers must stay reachable for the host (egressfw itself) and for containers (Docker's DNS forwards from their netns).
  for (const s of dns) {
    const fam = parseCidr(s.host)?.family;
    if (fam) for (const p of DNS_PORTS(s.port)) sets[fam].add(setEntry(s.host, p));
  }
  // `ipv6: false`: nothing at all is allowed over IPv6 (the IPv6 rules still block).
  return { 4: sortEntries(sets[4]), 6: config.ipv6 ? sortEntries(sets[6]) : [] };
}

function dnsRule(chain: string, s: DnsServer, proto: 'tcp' | 'udp'): string {
  const full = parseCidr(s.host)!;
  return `-A ${chain} -d ${full.text} -p ${proto} -m ${proto} --dport ${s.port} ${comment('dns')} -j ACCEPT`;
}

function hostDnsRules(family: Family, dns: DnsServer[]): string[] {
  return dns.filter((s) => parseCidr(s.host)?.family === family).flatMap((s) => [dnsRule(HOST_CHAIN, s, 'udp'), dnsRule(HOST_CHAIN, s, 'tcp')]);
}

function hostRules(family: Family, dns: DnsServer[], mode: Mode): string[] {
  // Last: record what is not allowed (both modes); audit then accepts it (src/plan/audit-rules.ts).
  return [...hostDnsRules(family, dns), `-A ${HOST_CHAIN} -m set --match-set ${SET[family]} dst,dst ${comment('allowed')} -j ACCEPT`, ...hostAuditRules(family, mode)];
}

/**
 * The ufw block's forward line: what egressfw's nft table allowed (marked FORWARD_MARK there) passes
 * ufw's FORWARD policy DROP, which on Docker's nftables backend would drop it after our accept.
 * It names only a mark, so it loads at boot before egressfw ran, and passes nothing until the table marks.
 */
export function ufwForwardRule(family: Family): string {
  return `-A ${UFW_FORWARD[family]} -m mark --mark ${FORWARD_MARK_HEX}/${FORWARD_MARK_HEX} ${comment('forward')} -j ACCEPT`;
}

/**
 * ufw's before6.rules accepts outgoing ICMPv6 echo-request in ufw6-before-output, ahead of the jump
 * to EGRESSFW-HOST at the end of that chain: the host could ping any IPv6 address (a data channel).
 * Inserted at the top of the chain instead (`-I ... 1`, ip6tables-restore keeps the order of the file),
 * enforce mode only, it refuses them as IPv4 already is (ufw's before.rules accepts no echo-request
 * out). Only type 128: neighbour discovery, router solicitation, MLD and echo replies are other types,
 * and loopback (`-o lo`, the host's own addresses too) stays ufw's to accept.
 */
export const UFW_PING6_RULE = `-I ${UFW_OUTPUT[6]} 1 ! -o lo -p ipv6-icmp -m icmp6 --icmpv6-type 128 ${comment('ping6')} -j REJECT --reject-with icmp6-adm-prohibited`;

/**
 * The marked block for before.rules. It only declares EGRESSFW-HOST, lets DNS
 * through and hooks the chain: it references no ipset, so ufw always loads it
 * (at boot before egressfw ran, too) and the host is closed, not open, until
 * egressfw fills the chain. `containers`: egressfw's table judges forwarded traffic (see ufwForwardRule).
 */
export function ufwBlock(family: Family, dns: DnsServer[], gatePort?: number, containers = false, mode: Mode = 'enforce'): string {
  return [
    `${BLOCK_BEGIN} (written by egressfw: change the egressfw config and run \`egressfw sync\`, not this block)`,
    `:${HOST_CHAIN} - [0:0]`,
    ...(family === 6 && mode === 'enforce' ? [UFW_PING6_RULE] : []),
    ...hostDnsRules(family, dns),
    // DNS gate: containers' redirected DNS reaches it through ufw's INPUT (only redirected connections).
    ...(gatePort !== undefined ? gateUfwRules(family, gatePort) : []),
    ...(containers ? [ufwForwardRule(family)] : []),
    `-A ${UFW_OUTPUT[family]} ${comment('host')} -j ${HOST_CHAIN}`,
    BLOCK_END,
  ].join('\n');
}

/** The jump into the pre-0.2 EGRESSFW chain: recognised so it can be removed. */
export const JUMP_RULE_SPEC = `${comment('jump')} -j ${CHAIN}`;

/**
 * `containers`: the running containers (Docker's inventory), read only when policies are in use:
 * they fill the source -> policy map. Absent there, the map is empty: every container gets nothing.
 */
export function buildDesired(config: Config, allowed: AllowedDomain[], dns: DnsServer[], containers: InventoryContainer[] = []): Desired {
  const per = <T>(f: (fam: Family) => T): Record<Family, T> => ({ 4: f(4), 6: f(6) });
  const sets = desiredSets(config, allowed, dns);
  const dnsFor = (f: Family) => (f === 6 && !config.ipv6 ? [] : dns);
  const policies = config.containers.enabled && policiesInUse(config)
    ? buildPolicyDesired(config, containers, (list) => nftSetMembers(desiredSets({ ...list, ipv6: config.ipv6 }, allowed, dns)))
    : null;
  return {
    sets,
    nft: config.containers.enabled ? buildNftDesired(config, sets, policies) : null,
    hostRules: config.host.enabled ? per((f) => hostRules(f, dnsFor(f), config.mode)) : null,
    ufw: config.host.enabled ? { outgoing: config.host.outgoing, blocks: per((f) => ufwBlock(f, dnsFor(f), config.dns.gate.enabled && config.containers.enabled ? config.dns.gate.port : undefined, config.containers.enabled, config.mode)), enable: config.host.enableUfw } : null,
  };
}
