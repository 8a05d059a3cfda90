import ipaddr from 'ipaddr.js';
import { parseCidr, parseIp, REFUSED_V4_CIDRS, type Family } from '../net/ip.js';
import type { Config } from '../config/load.js';
import { hostModeOf } from './audit-rules.js';
import type { Desired, DnsServer } from './desired.js';
import { HOST_CHAIN, NFT, POLICY_NFT } from './kernel-names.js';
import type { NftObserved } from './nft.js';
import { policyObjects } from './policies.js';
import { HOST_POLICY } from '../policy/assign.js';
import type { Observed } from './observed.js';

/**
 * Flows opened before a sync (pure). Both rule sets accept `ct state
 * established` first, so a connection the new rules refuse keeps flowing as
 * long as conntrack keeps its entry (a TCP one 5 days by default, a UDP one as
 * long as replies come). After each apply, sync lists the tracked flows
 * (`conntrack -L -o save`), this module judges each against the rules just
 * applied, and the refused ones are deleted (`conntrack -R`: one batch of -D lines):
 * their next packet is then a new connection, and the rules refuse it.
 *
 * Judged exactly as the kernel would judge the flow's first packet now, and
 * only where that is certain; a flow it cannot judge is kept:
 * - host: flows from a local address, against EGRESSFW-HOST (DNS to the
 *   resolvers, the allowlist set) and every other ACCEPT rule of OUTPUT and
 *   ufw's output chains (`ufw allow out ...`: a condition this module does not
 *   read counts as matching, so such a rule keeps the flow);
 * - containers: flows from an address on a local bridge, against the forward
 *   chain (exemptFrom, the DNS gate's DNS rules, the SNI proxy's wildcard
 *   rule, the allow sets and the gate's answers in the kernel now).
 * Never cut: flows to a local address (inbound, replies to published ports,
 * the DNS gate), DNAT'ed flows (published ports), flows to a local segment
 * (container to container, the host's LAN), multicast, broadcast and
 * link-local destinations, routed sources that are not containers
 * (VPN clients, a LAN this host routes for), protocols other than
 * tcp/udp/icmp/icmpv6/sctp/dccp/udplite.
 */

export const FLOW_PROTOS = ['tcp', 'udp', 'udplite', 'sctp', 'dccp', 'icmp', 'icmpv6'] as const;
export type FlowProto = (typeof FLOW_PROTOS)[number];
const PORTED = new Set<string>(['tcp', 'udp', 'udplite', 'sctp', 'dccp']);

/** One tracked connection, original direction (who opened it) and what the reply direction says. */
export interface Flow {
  family: Family;
  proto: FlowProto;
  src: string;
  dst: string;
  /** ported protocols */
  sport?: number;
  dport?: number;
  /** icmp / icmpv6 */
  icmp?: { type: number; code: number; id: number };
  /** reply direction: a reply source other than dst means the flow was DNAT'ed */
  replySrc: string;
  replyDst: string;
  /**
   * set by refusedFlows on a container flow: the bridge segment it comes from (e.g. 198.51.100.64/26),
   * when no other local segment lies inside it: every flow from there to the same destination is judged alike
   */
  srcNet?: string;
}

const int = (s: string | undefined, max: number): number | undefined => (s !== undefined && /^(0|[1-9][0-9]{0,9})$/.test(s) && Number(s) <= max ? Number(s) : undefined);

/**
 * Pure: `conntrack -L -o save` text -> flows. Every address and number is
 * validated here, so only canonical addresses and integers ever reach the
 * delete command line; a line that does not parse is skipped (counted).
 */
export function parseConntrackSave(text: string): { flows: Flow[]; skipped: number } {
  const flows: Flow[] = [];
  let skipped = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith('-A ')) {
      if (line.trim()) skipped++;
      continue;
    }
    const t = line.trim().split(/\s+/);
    const opt = new Map<string, string>();
    for (let i = 1; i < t.length; i++) if (t[i]!.startsWith('-') && t[i + 1] !== undefined && !t[i + 1]!.startsWith('-')) opt.set(t[i]!, t[++i]!);
    const src = parseIp(opt.get('-s') ?? '');
    const dst = parseIp(opt.get('-d') ?? '');
    // the reply tuple: -r/-q, or -g (dst-nat: the reply comes from there) / -n (src-nat: it goes there)
    const rs = parseIp(opt.get('-r') ?? opt.get('-g') ?? '');
    const rd = parseIp(opt.get('-q') ?? opt.get('-n') ?? '');
    const proto = opt.get('-p') as FlowProto | undefined;
    if (!src || !dst || !rs || !rd || src.family !== dst.family || !proto || !(FLOW_PROTOS as readonly string[]).includes(proto)) {
      skipped++;
      continue;
    }
    const flow: Flow = { family: src.family, proto, src: src.text, dst: dst.text, replySrc: rs.text, replyDst: rd.text };
    if (PORTED.has(proto)) {
      const sport = int(opt.get('--sport'), 65535);
      const dport = int(opt.get('--dport'), 65535);
      if (sport === undefined || dport === undefined) {
        skipped++;
        continue;
      }
      Object.assign(flow, { sport, dport });
    } else {
      const k = proto === 'icmpv6' ? '--icmpv6' : '--icmp';
      const type = int(opt.get(`${k}-type`), 255);
      const code = int(opt.get(`${k}-code`), 255);
      const id = int(opt.get(`${k}-id`), 65535);
      if (type === undefined || code === undefined || id === undefined) {
        skipped++;
        continue;
      }
      flow.icmp = { type, code, id };
    }
    flows.push(flow);
  }
  return { flows, skipped };
}

/** A local interface: its name, kind (`bridge`, `veth`, ... or '' when `ip` says none) and addresses with prefix lengths. */
export interface LocalIface {
  name: string;
  kind: string;
  addrs: { ip: string; prefix: number; family: Family }[];
}

/** Pure: `ip -j -d addr show` JSON -> interfaces. */
export function parseIpAddrJson(text: string): LocalIface[] {
  const doc = JSON.parse(text) as { ifname?: unknown; linkinfo?: { info_kind?: unknown }; addr_info?: { family?: unknown; local?: unknown; prefixlen?: unknown }[] }[];
  const out: LocalIface[] = [];
  for (const l of Array.isArray(doc) ? doc : []) {
    if (typeof l.ifname !== 'string') continue;
    const addrs: LocalIface['addrs'] = [];
    for (const a of l.addr_info ?? []) {
      const ip = typeof a.local === 'string' ? parseIp(a.local) : null;
      const max = ip?.family === 4 ? 32 : 128;
      if (ip && typeof a.prefixlen === 'number' && Number.isInteger(a.prefixlen) && a.prefixlen >= 0 && a.prefixlen <= max) addrs.push({ ip: ip.text, prefix: a.prefixlen, family: ip.family });
    }
    out.push({ name: l.ifname, kind: typeof l.linkinfo?.info_kind === 'string' ? l.linkinfo.info_kind : '', addrs });
  }
  return out;
}

/** What the host rules accept now (null: the host is not managed or not enforcing: nothing of it is cut). */
export interface HostRules {
  /** the resolvers EGRESSFW-HOST lets through, per family (none for IPv6 with `ipv6: false`) */
  dns: Record<Family, DnsServer[]>;
  /** the allowlist set, ipset members: "203.0.113.7,tcp:443", "192.0.2.0/24,udp:53" */
  sets: Record<Family, string[]>;
  /** every other `-j ACCEPT` rule of OUTPUT and ufw's output chains, as iptables-save prints them */
  otherAccepts: Record<Family, string[]>;
}

/** What the forward chain accepts now (null: containers are not managed, or audit mode). */
export interface ContainerRules {
  /** the allow sets, nft elements: "203.0.113.7 . tcp . 443", "192.0.2.0/24 . udp . 53" */
  sets: Record<Family, string[]>;
  /** the DNS gate's answers in the kernel now (same element syntax) */
  gate: Record<Family, string[]>;
  /** the DNS gate is on: DNS and DoT that were not redirected to it are refused */
  gateOn: boolean;
  exemptFrom: string[];
  /** the SNI proxy's wildcard rule, when configured */
  proxy: { bridge: string; ports: number[] } | null;
  /**
   * per-workload policies in use: source address (canonical) -> what its policy's chain accepts;
   * a source the map does not know gets nothing, as in the kernel. null: no policies.
   */
  bySource: Map<string, { sets: Record<Family, string[]>; gate: Record<Family, string[]> }> | null;
}

export interface FlowJudgeInput {
  flows: Flow[];
  ifaces: LocalIface[];
  host: HostRules | null;
  containers: ContainerRules | null;
}

export interface FlowVerdicts {
  host: Flow[];
  containers: Flow[];
}

type Net = [ipaddr.IPv4 | ipaddr.IPv6, number];
// Parsed once per address (a table of 10,000 flows names far fewer): bounded like src/net/ip.ts's memo.
const parsed = new Map<string, ipaddr.IPv4 | ipaddr.IPv6>();
const addr = (ip: string) => {
  let a = parsed.get(ip);
  if (!a) {
    if (parsed.size >= 100_000) parsed.clear();
    a = ipaddr.parse(ip);
    parsed.set(ip, a);
  }
  return a;
};
const inNet = (ip: ipaddr.IPv4 | ipaddr.IPv6, [n, len]: Net) => ip.kind() === n.kind() && ip.match(n as never, len);

/** Exact members by "ip|proto|port", networks scanned (an allowlist has few). */
class Allowed {
  private exact = new Set<string>();
  private nets: { net: Net; key: string }[] = [];
  add(cidrOrIp: string, proto: string, port: string): void {
    const c = parseCidr(cidrOrIp);
    if (!c) return;
    const full = c.family === 4 ? 32 : 128;
    if (c.prefix === full) this.exact.add(`${c.text.split('/')[0]}|${proto}|${port}`);
    else this.nets.push({ net: ipaddr.parseCIDR(c.text), key: `${proto}|${port}` });
  }
  has(ip: string, proto: string, port: number): boolean {
    if (this.exact.has(`${ip}|${proto}|${port}`)) return true;
    if (!this.nets.length) return false;
    const a = addr(ip);
    return this.nets.some((n) => n.key === `${proto}|${port}` && inNet(a, n.net));
  }
}

function ipsetAllowed(entries: string[]): Allowed {
  const a = new Allowed();
  for (const e of entries) {
    const m = /^([^,]+),([a-z]+):([0-9]+)$/.exec(e);
    if (m) a.add(m[1]!, m[2]!, m[3]!);
  }
  return a;
}

function nftAllowed(elements: string[]): Allowed {
  const a = new Allowed();
  for (const e of elements) {
    const [ip, proto, port] = e.split(' . ');
    if (ip && proto && port && /^[0-9]+$/.test(port)) a.add(ip, proto, port);
  }
  return a;
}

/** Destinations no rule of egressfw is about: multicast, broadcast, link-local. */
function unjudgedDestination(ip: string): boolean {
  const r = addr(ip).range();
  return r === 'multicast' || r === 'broadcast' || r === 'linkLocal';
}

const splitRule = (rule: string): string[] => rule.match(/"(?:[^"\\]|\\.)*"|\S+/g) ?? [];

/**
 * Could this `-j ACCEPT` rule have accepted the flow's first packet? Reads
 * -s/-d, -p, --sport/--dport, --dports/--sports (multiport), --ctstate and
 * -o lo; any other condition (an interface, a limit, a negation, a module it
 * does not know) counts as matching: such a rule keeps the flow.
 */
export function ruleMayAccept(rule: string, f: Flow): boolean {
  const t = splitRule(rule);
  if (t[t.indexOf('-j') + 1] !== 'ACCEPT' || !t.includes('-j')) return false;
  const ports = (spec: string, port: number | undefined) =>
    port !== undefined &&
    spec.split(',').some((p) => {
      const [lo, hi] = p.split(':').map(Number);
      return hi === undefined ? port === lo : port >= lo! && port <= hi;
    });
  const within = (spec: string, ip: string) => {
    const c = parseCidr(spec);
    return c !== null && c.family === f.family && inNet(addr(ip), ipaddr.parseCIDR(c.text));
  };
  for (let i = 2; i < t.length; i++) {
    const k = t[i]!;
    const v = t[i + 1] ?? '';
    switch (k) {
      case '-j':
      case '-m':
      case '--comment':
        i++;
        break;
      case '-s':
        if (!within(v, f.src)) return false;
        i++;
        break;
      case '-d':
        if (!within(v, f.dst)) return false;
        i++;
        break;
      case '-p':
        if (v !== f.proto && !(v === 'ipv6-icmp' && f.proto === 'icmpv6')) return false;
        i++;
        break;
      case '--dport':
      case '--dports':
        if (!ports(v, f.dport)) return false;
        i++;
        break;
      case '--sport':
      case '--sports':
        if (!ports(v, f.sport)) return false;
        i++;
        break;
      case '--ctstate':
        // the flow's first packet was NEW: ufw's RELATED,ESTABLISHED rule is why it still flows, not why it began
        if (!v.split(',').includes('NEW')) return false;
        i++;
        break;
      case '-o':
        if (v === 'lo') return false; // loopback: local destinations are never judged here
        i++;
        break;
      default:
        return true; // a condition not read here: assume it matches, keep the flow
    }
  }
  return true;
}

/**
 * Pure: the flows the rules just applied refuse, for the host and for
 * containers. Everything else (see the module comment) is kept.
 */
export function refusedFlows({ flows, ifaces, host, containers }: FlowJudgeInput): FlowVerdicts {
  const out: FlowVerdicts = { host: [], containers: [] };
  if (!host && !containers) return out;
  const local = new Set<string>();
  const segments: { net: Net; iface: LocalIface }[] = [];
  for (const i of ifaces) {
    for (const a of i.addrs) {
      local.add(a.ip);
      const c = parseCidr(`${a.ip}/${a.prefix}`);
      if (c && a.prefix > 0) segments.push({ net: ipaddr.parseCIDR(c.text), iface: i });
    }
  }
  // longest prefix first: the interface an address is on
  segments.sort((x, y) => y.net[1] - x.net[1]);
  const segmentAt = (ip: string) => {
    const a = addr(ip);
    return segments.find((s) => inNet(a, s.net));
  };
  const segmentOf = (ip: string) => segmentAt(ip)?.iface;
  // A bridge's segment names all its flows in one delete, unless another local segment lies inside it.
  const segmentNet = (seg: (typeof segments)[number]) =>
    segments.some((o) => o !== seg && o.net[1] > seg.net[1] && inNet(o.net[0], seg.net)) ? undefined : `${seg.net[0].toString()}/${seg.net[1]}`;
  const isLocal = (ip: string) => local.has(ip) || addr(ip).range() === 'loopback';

  const hostAllowed = host ? { 4: ipsetAllowed(host.sets[4]), 6: ipsetAllowed(host.sets[6]) } : null;
  type Lookup = Record<Family, ReturnType<typeof nftAllowed>>;
  const lookups = (l: { sets: Record<Family, string[]>; gate: Record<Family, string[]> }): { allowed: Lookup; gate: Lookup } => ({
    allowed: { 4: nftAllowed(l.sets[4]), 6: nftAllowed(l.sets[6]) },
    gate: { 4: nftAllowed(l.gate[4]), 6: nftAllowed(l.gate[6]) },
  });
  const topLevel = containers ? lookups(containers) : null;
  // With policies, a container is judged by its own policy's sets (parsed once per policy, shared by its sources).
  const perPolicy = new Map<object, { allowed: Lookup; gate: Lookup }>();
  const rulesFor = (src: string): { allowed: Lookup; gate: Lookup } | null => {
    if (!containers?.bySource) return topLevel;
    const p = containers.bySource.get(parseIp(src)?.text ?? src);
    if (!p) return null; // unmapped: the kernel gives it nothing
    let l = perPolicy.get(p);
    if (!l) perPolicy.set(p, (l = lookups(p)));
    return l;
  };
  const exempt = (containers?.exemptFrom ?? []).map((p) => (p.endsWith('+') ? (n: string) => n.startsWith(p.slice(0, -1)) : (n: string) => n === p));
  const refusedV4 = REFUSED_V4_CIDRS.map((c) => ipaddr.parseCIDR(c) as Net);

  const hostRefuses = (f: Flow): boolean => {
    if (!host || segmentOf(f.dst)) return false; // the host's own segments (its LAN, its containers) are left alone
    const port = f.dport ?? 0;
    if (host.dns[f.family].some((s) => parseIp(s.host)?.text === f.dst && s.port === port && (f.proto === 'udp' || f.proto === 'tcp'))) return false;
    if (f.dport !== undefined && hostAllowed![f.family].has(f.dst, f.proto, f.dport)) return false;
    return !host.otherAccepts[f.family].some((r) => ruleMayAccept(r, f));
  };

  for (const f of flows) {
    if (isLocal(f.dst) || unjudgedDestination(f.dst)) continue; // inbound, loopback, the gate; multicast and the like
    if (f.replySrc !== f.dst) continue; // DNAT'ed: a published port (or another redirect)
    const port = f.dport ?? 0;
    if (isLocal(f.src)) {
      if (hostRefuses(f)) out.host.push(f);
      continue;
    }
    if (!containers) continue;
    const fromSeg = segmentAt(f.src);
    const from = fromSeg?.iface;
    if (!fromSeg || !from || from.kind !== 'bridge' || exempt.some((m) => m(from.name))) continue; // not a container (or exempt)
    const to = segmentOf(f.dst);
    if (to && to.kind === 'bridge') continue; // container to container (one bridge or two): Docker's isolation decides
    const dnsLike = (f.proto === 'udp' || f.proto === 'tcp') && (port === 53 || port === 853);
    if (!(containers.gateOn && dnsLike)) {
      const p = containers.proxy;
      if (p && from.name === p.bridge && f.family === 4 && f.proto === 'tcp' && p.ports.includes(port) && !refusedV4.some((n) => inNet(addr(f.dst), n))) continue;
      const r = rulesFor(f.src);
      if (f.dport !== undefined && r && (r.allowed[f.family].has(f.dst, f.proto, f.dport) || r.gate[f.family].has(f.dst, f.proto, f.dport))) continue;
    }
    // The segment holds the bridge's own (host) address too: one delete for the whole segment only when the
    // host's rules refuse the same destination as well. With policies, containers of one segment differ: one line each.
    const srcNet = containers.bySource ? undefined : segmentNet(fromSeg);
    const own = from.addrs.find((a) => a.family === f.family)?.ip;
    out.containers.push(srcNet && own && hostRefuses({ ...f, src: own }) ? { ...f, srcNet } : f);
  }
  return out;
}

/**
 * Pure: `conntrack -R FILE` input deleting these flows. Each line is a filter
 * (conntrack dumps the table once per line, so one line per flow would cost
 * O(flows x tracked)): one per source (a host address, or a container's
 * bridge segment with --mask-src), destination, protocol and port (ICMP:
 * type and code); the reply source equal to the destination (-r) leaves
 * DNAT'ed flows out. Whatever matches a line is judged exactly like the flow
 * it came from (the judgement depends on nothing else), so only refused flows
 * go. Only parsed, canonical values reach it.
 */
export function conntrackDeleteBatch(flows: Flow[]): string {
  const lines = new Set<string>();
  for (const f of flows) {
    let src = `-s ${f.src}`;
    if (f.srcNet) {
      const [net, len] = ipaddr.parseCIDR(f.srcNet);
      const mask = net.kind() === 'ipv4' ? ipaddr.IPv4.subnetMaskFromPrefixLength(len) : ipaddr.IPv6.subnetMaskFromPrefixLength(len);
      src = `-s ${net.toString()} --mask-src ${mask.toString()}`;
    }
    const k = f.proto === 'icmpv6' ? '--icmpv6' : '--icmp';
    const what = f.icmp ? `${k}-type ${f.icmp.type} ${k}-code ${f.icmp.code}` : `--dport ${f.dport}`;
    lines.add(`-D -f ipv${f.family} ${src} -d ${f.dst} -r ${f.dst} -p ${f.proto} ${what}\n`);
  }
  return [...lines].join('');
}

/**
 * Pure: what the rules just applied accept, from the config, the desired
 * state and the kernel read back after the apply (the gate's answers, ufw's
 * other output rules, whether EGRESSFW-HOST is hooked and enforcing).
 */
export function appliedRules(
  config: Config,
  desired: Desired,
  dns: DnsServer[],
  after: Observed,
  scope: 'full' | 'containers-only',
): { host: HostRules | null; containers: ContainerRules | null } {
  const per = <T>(f: (fam: Family) => T): Record<Family, T> => ({ 4: f(4), 6: f(6) });
  const enforcing = config.mode === 'enforce';
  const hostOn =
    enforcing && desired.hostRules !== null && scope === 'full' && after.ufw?.enabled === true && hostModeOf(after.tables[4].chains.get(HOST_CHAIN) ?? []) === 'enforce';
  const outputAccepts = (f: Family) =>
    [...after.tables[f].chains].filter(([name]) => name === 'OUTPUT' || /^ufw6?-.*output/.test(name)).flatMap(([, rules]) => rules.filter((r) => / -j ACCEPT\b/.test(r)));
  const host: HostRules | null = hostOn
    ? { dns: per((f) => dns.filter((s) => parseIp(s.host)?.family === f && (f === 4 || config.ipv6))), sets: desired.sets, otherAccepts: per(outputAccepts) }
    : null;
  const p = config.proxy;
  const containers: ContainerRules | null =
    enforcing && desired.nft
      ? {
          sets: desired.nft.sets,
          gate: per((f) => after.nft?.sets.get(NFT.gate[f]) ?? []),
          gateOn: config.dns.gate.enabled,
          exemptFrom: config.containers.exemptFrom,
          proxy: p.wildcards.length ? { bridge: p.egressBridge, ports: [...new Set([...p.tlsPorts, ...p.httpPorts])] } : null,
          bySource: policySources(desired, after),
        }
      : null;
  return { host, containers };
}

/** Pure: with policies in use, each mapped source and what its policy's chain accepts (static sets as applied, gate sets as read back). */
function policySources(desired: Desired, after: Observed): ContainerRules['bySource'] {
  const pol = desired.nft?.policies;
  if (!pol) return null;
  const byPolicy = new Map<string, { sets: Record<Family, string[]>; gate: Record<Family, string[]> }>();
  const of = (policy: string) => {
    let r = byPolicy.get(policy);
    if (!r) {
      const o = policyObjects(policy);
      const staticSet = (f: Family) => (policy === HOST_POLICY ? desired.nft!.sets[f] : (pol.sets[o.allow[f]] ?? []));
      r = { sets: { 4: staticSet(4), 6: staticSet(6) }, gate: { 4: after.nft?.sets.get(o.gate[4]) ?? [], 6: after.nft?.sets.get(o.gate[6]) ?? [] } };
      byPolicy.set(policy, r);
    }
    return r;
  };
  const out = new Map<string, { sets: Record<Family, string[]>; gate: Record<Family, string[]> }>();
  for (const f of [4, 6] as Family[]) {
    for (const member of pol.map[f]) {
      // "198.51.100.66 : jump pol-ci"
      const m = /^(\S+) : (?:jump|goto) (\S+)$/.exec(member);
      const chain = m && pol.chains.find((c) => c.name === m[2]);
      const ip = m && parseIp(m[1]!);
      if (chain && ip) out.set(ip.text, of(chain.policy));
    }
  }
  return out;
}

/**
 * Pure: what the forward chain accepts now, read from egressfw's table alone (no plan, no DNS): for the
 * DNS gate's reload, which takes elements out of the gate sets and then cuts what they carried. With
 * policies, every policy's sets count for every source (a flow that any of them allows is kept: the
 * cut is only ever narrower than the kernel's judgement). null: nothing to judge (audit mode, no table).
 */
export function kernelContainerRules(config: Config, nft: NftObserved | null): ContainerRules | null {
  if (config.mode !== 'enforce' || !config.containers.enabled || !nft) return null;
  const sets: Record<Family, string[]> = { 4: [], 6: [] };
  const gate: Record<Family, string[]> = { 4: [], 6: [] };
  const pol = POLICY_NFT.chainPrefix;
  for (const [name, members] of nft.sets) {
    for (const f of [4, 6] as Family[]) {
      if (name === NFT.allow[f] || (name.startsWith(pol) && name.endsWith(`-allow${f}`))) sets[f].push(...members);
      if (name === NFT.gate[f] || (name.startsWith(pol) && name.endsWith(`-gate${f}`))) gate[f].push(...members);
    }
  }
  const p = config.proxy;
  return {
    sets,
    gate,
    gateOn: config.dns.gate.enabled,
    exemptFrom: config.containers.exemptFrom,
    proxy: p.wildcards.length ? { bridge: p.egressBridge, ports: [...new Set([...p.tlsPorts, ...p.httpPorts])] } : null,
    bySource: null,
  };
}

/** A flow to one of these `ip . proto . port` (the elements a reload took out), by destination. */
export const toElements = (elements: { ip: string; proto: string; port: number }[]) => {
  const keys = new Set(elements.map((e) => `${parseIp(e.ip)?.text ?? e.ip}|${e.proto}|${e.port}`));
  return (f: Flow) => f.dport !== undefined && keys.has(`${f.dst}|${f.proto}|${f.dport}`);
};
