import { createHash } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import type { Config } from '../config/load.js';
import { parseCidr, REFUSED_V4_CIDRS, type Family } from '../net/ip.js';
import { NFT, NFT_CHAIN_SPEC, NFT_SET_TYPES, NFT_TABLE_REF } from './kernel-names.js';
import { gateForwardRules, gateHostChain, gateHostSourceChain, gateInputChain, gateNatChain, type GateChain } from './gate.js';

/**
 * Container egress lives in egressfw's own nftables table. It hooks `forward`
 * itself, so it does not depend on Docker's chains (DOCKER-USER, DOCKER-FORWARD,
 * or Docker's nftables backend, which has no DOCKER-USER), Docker can never
 * reorder it, and a reject here is final whatever other tables say.
 *
 * It judges every forwarded connection that is not a reply, not an inbound
 * connection to a published port (DNAT), and not between two hosts of one
 * segment (container to container on a bridge). So a network is covered from
 * the moment it exists, whatever its bridge is called.
 */
export interface NftRule {
  /** short name, unique in the chain; with a hash of the text it is the rule's comment */
  tag: string;
  /** rule text without the comment, in nft syntax */
  text: string;
}

export interface NftDesired {
  /** members of the static allow sets, nft element syntax: "203.0.113.7 . tcp . 443", "192.0.2.0/24 . udp . 53" */
  sets: Record<Family, string[]>;
  rules: NftRule[];
  /** the DNS gate's base chains (src/plan/gate.ts); empty when the gate is off */
  gate: GateChain[];
}

/** Sets sync rewrites (the others belong to the gate and the kernel's recording). */
export const STATIC_SETS: Record<Family, string> = NFT.allow;

const CHAIN_DECL = `type ${NFT_CHAIN_SPEC.type} hook ${NFT_CHAIN_SPEC.hook} priority filter - 1; policy ${NFT_CHAIN_SPEC.policy};`;


/** "203.0.113.7,tcp:443" (ipset member) -> "203.0.113.7 . tcp . 443" (nft element). */
export function nftElement(ipsetEntry: string): string {
  const comma = ipsetEntry.indexOf(',');
  const [proto, port] = ipsetEntry.slice(comma + 1).split(':');
  return `${ipsetEntry.slice(0, comma)} . ${proto} . ${port}`;
}

/** Transport protocols with ports. */
const PORTED = '{ tcp, udp, sctp, dccp, udplite }';

export function forwardRules(config: Config): NftRule[] {
  const rules: NftRule[] = [
    { tag: 'replies', text: 'ct state established,related accept' },
    // Inbound to a published port: Docker DNAT'ed it. Not egress.
    { tag: 'published', text: 'ct status dnat accept' },
    // The destination is reached through the interface the packet came in on: two hosts of one
    // segment (container to container on one bridge). Never true for a way out of the host.
    { tag: 'same-segment', text: 'fib daddr . iif oif exists accept' },
  ];
  const exempt = config.containers.exemptFrom;
  // One rule each: a trailing "+" (iptables style) is nft's "*" wildcard.
  exempt.forEach((i, n) => rules.push({ tag: `exempt-${n}`, text: `iifname "${i.replace(/\+$/, '*')}" accept` }));
  // DNS gate: DNS and DNS-over-TLS leave only through the gate (before any accept by destination).
  if (config.dns.gate.enabled) rules.push(...gateForwardRules());
  const p = config.proxy;
  if (p.wildcards.length) {
    const ports = [...new Set([...p.tlsPorts, ...p.httpPorts])].sort((a, b) => a - b).join(', ');
    // SNI proxy with wildcard names: no IP list exists for them; only the proxy is on this bridge, and it enforces the names.
    // Never inside: the rebinding guard's refused ranges (private, metadata, CGNAT, ...) stay closed to it.
    rules.push({ tag: 'proxy-wildcards', text: `iifname "${p.egressBridge}" ip daddr != { ${REFUSED_V4_CIDRS.join(', ')} } tcp dport { ${ports} } accept` });
  }
  rules.push(
    { tag: 'allowed', text: `ip daddr . meta l4proto . th dport @${NFT.allow[4]} accept` },
    { tag: 'allowed6', text: `ip6 daddr . meta l4proto . th dport @${NFT.allow[6]} accept` },
    { tag: 'gate', text: `ip daddr . meta l4proto . th dport @${NFT.gate[4]} accept` },
    { tag: 'gate6', text: `ip6 daddr . meta l4proto . th dport @${NFT.gate[6]} accept` },
    // Counted in the kernel, in both modes: what was (or would have been) refused, per source.
    // Port 0 for protocols without ports: `th dport` would read ICMP's checksum, one element per ping.
    { tag: 'record', text: `ct state new meta l4proto ${PORTED} update @${NFT.refused[4]} { ip saddr . ip daddr . meta l4proto . th dport }` },
    { tag: 'record-noport', text: `ct state new meta l4proto != ${PORTED} update @${NFT.refused[4]} { ip saddr . ip daddr . meta l4proto . 0 }` },
    { tag: 'record6', text: `ct state new meta l4proto ${PORTED} update @${NFT.refused[6]} { ip6 saddr . ip6 daddr . meta l4proto . th dport }` },
    { tag: 'record6-noport', text: `ct state new meta l4proto != ${PORTED} update @${NFT.refused[6]} { ip6 saddr . ip6 daddr . meta l4proto . 0 }` },
  );
  if (config.mode === 'audit') rules.push({ tag: 'audit', text: 'accept' });
  else {
    // Fail fast: a reset or an ICMP error, never a hang.
    rules.push({ tag: 'reject-tcp', text: 'meta l4proto tcp reject with tcp reset' }, { tag: 'reject', text: 'reject with icmpx admin-prohibited' });
  }
  return rules;
}

/** The comment that identifies a rule: its tag and a hash of its text, so a changed rule reads as changed. */
export function ruleComment(r: NftRule): string {
  return `egressfw ${r.tag} ${createHash('sha256').update(r.text).digest('hex').slice(0, 8)}`;
}

/**
 * An nft interval set refuses overlapping members ("File exists"), where ipset
 * kept both: drop members inside a network listed for the same proto and port.
 */
export function withoutCovered(elements: string[]): string[] {
  const nets = new Map<string, [ipaddr.IPv4 | ipaddr.IPv6, number][]>();
  for (const e of elements) {
    const [addr, proto, port] = e.split(' . ');
    if (!addr!.includes('/')) continue;
    const key = `${proto}:${port}`;
    nets.set(key, [...(nets.get(key) ?? []), ipaddr.parseCIDR(addr!)]);
  }
  if (!nets.size) return elements;
  return elements.filter((e) => {
    const [addr, proto, port] = e.split(' . ');
    const [ip, len] = addr!.includes('/') ? ipaddr.parseCIDR(addr!) : [ipaddr.parse(addr!), Infinity];
    return !(nets.get(`${proto}:${port}`) ?? []).some(([n, l]) => l < len && n.kind() === ip.kind() && ip.match([n, l] as [typeof ip, number]));
  });
}

export function buildNftDesired(config: Config, ipsetSets: Record<Family, string[]>): NftDesired {
  const gate = config.dns.gate.enabled
    ? [
        gateNatChain({ port: config.dns.gate.port, exemptInterfaces: config.containers.exemptFrom }),
        gateInputChain({ port: config.dns.gate.port }),
        // the host's own DNS too, when egressfw restricts the host
        ...(config.host.enabled ? [gateHostChain({ port: config.dns.gate.port }), gateHostSourceChain({ port: config.dns.gate.port })] : []),
      ]
    : [];
  return { sets: { 4: withoutCovered(ipsetSets[4].map(nftElement)), 6: withoutCovered(ipsetSets[6].map(nftElement)) }, rules: forwardRules(config), gate };
}

const T = NFT_TABLE_REF;

/**
 * One `nft -f` transaction (all or nothing): declare what is missing, then
 * rewrite what differs. Dynamic sets (gate, records) are declared, never flushed.
 */
export function renderNftScript(want: NftDesired, what: { sets: Family[]; chain: boolean; dropChains?: string[] }): string {
  const lines = [`add table ${T}`];
  for (const [name, type] of Object.entries(NFT_SET_TYPES)) lines.push(`add set ${T} ${name} { ${type} }`);
  lines.push(`add chain ${T} ${NFT.chain} { ${CHAIN_DECL} }`);
  for (const f of what.sets) {
    lines.push(`flush set ${T} ${STATIC_SETS[f]}`);
    // Chunks keep each line short; still one transaction.
    for (let i = 0; i < want.sets[f].length; i += 500) lines.push(`add element ${T} ${STATIC_SETS[f]} { ${want.sets[f].slice(i, i + 500).join(', ')} }`);
  }
  if (what.chain) {
    lines.push(`flush chain ${T} ${NFT.chain}`);
    for (const r of want.rules) lines.push(`add rule ${T} ${NFT.chain} ${r.text} comment "${ruleComment(r)}"`);
    // The gate's chains go with the forward chain: rewritten (or removed) together.
    const wanted = new Set(want.gate.map((c) => c.name));
    for (const c of want.gate) {
      lines.push(`add chain ${T} ${c.name} { ${c.decl} }`, `flush chain ${T} ${c.name}`);
      for (const r of c.rules) lines.push(`add rule ${T} ${c.name} ${r.text} comment "${ruleComment(r)}"`);
    }
    // gate turned off: its chains go (flush first: a chain with rules cannot be deleted)
    for (const name of what.dropChains ?? []) if (!wanted.has(name)) lines.push(`flush chain ${T} ${name}`, `delete chain ${T} ${name}`);
  }
  return `${lines.join('\n')}\n`;
}

export const DELETE_TABLE = `delete table ${T}\n`;

// ---------------------------------------------------------------------------
// reading it back: `nft -j list table inet egressfw`

export interface NftObserved {
  chain: { type?: string; hook?: string; prio?: number; policy?: string } | null;
  /** comments of the forward chain's rules, in order ('' for a rule without one) */
  ruleComments: string[];
  /** the DNS gate's chains (name -> base chain spec and rule comments), when present */
  gateChains: Map<string, { spec: { type?: string; hook?: string; prio?: number; policy?: string }; ruleComments: string[] }>;
  /** set name -> canonical members (static sets) or count (others); absent: no such set */
  sets: Map<string, string[]>;
  /** the listing itself, to put the table back if a later step of the same sync fails */
  raw: unknown[];
}

type Json = Record<string, unknown>;

function elemText(v: unknown): string | null {
  if (typeof v === 'string' || typeof v === 'number') return String(v);
  if (v && typeof v === 'object') {
    const o = v as Json;
    if (o.prefix) {
      const p = o.prefix as { addr: string; len: number };
      return `${p.addr}/${p.len}`;
    }
    if (o.elem) return elemText((o.elem as Json).val);
    if (o.concat) {
      const parts = (o.concat as unknown[]).map(elemText);
      return parts.some((x) => x === null) ? null : parts.join(' . ');
    }
  }
  return null;
}

/** "2001:DB8::1 . tcp . 443" -> canonical address text, so comparisons do not depend on nft's printing. */
export function canonicalElement(text: string): string {
  const [addr, ...rest] = text.split(' . ');
  const c = parseCidr(addr!);
  if (!c) return text;
  const full = c.family === 4 ? 32 : 128;
  return [c.prefix === full ? c.text.split('/')[0] : c.text, ...rest].join(' . ');
}

/** Pure: parse the JSON listing. */
export function parseNftList(jsonText: string): NftObserved {
  const doc = JSON.parse(jsonText) as { nftables?: Json[] };
  const items = doc.nftables ?? [];
  const out: NftObserved = { chain: null, ruleComments: [], gateChains: new Map(), sets: new Map(), raw: [] };
  const isGate = (name: unknown) => (NFT.gateChains as readonly string[]).includes(String(name));
  for (const item of items) {
    if (item.metainfo) continue;
    out.raw.push(item);
    if (item.set) {
      const s = item.set as Json;
      const elems = ((s.elem as unknown[]) ?? []).map(elemText).filter((x): x is string => x !== null);
      out.sets.set(String(s.name), elems.map(canonicalElement).sort());
    } else if (item.chain) {
      const c = item.chain as Json;
      const spec = { type: c.type as string, hook: c.hook as string, prio: c.prio as number, policy: c.policy as string };
      if (c.name === NFT.chain) out.chain = spec;
      else if (isGate(c.name)) out.gateChains.set(String(c.name), { spec, ruleComments: out.gateChains.get(String(c.name))?.ruleComments ?? [] });
    } else if (item.rule) {
      const r = item.rule as Json;
      const comment = typeof r.comment === 'string' ? r.comment : '';
      if (r.chain === NFT.chain) out.ruleComments.push(comment);
      else if (isGate(r.chain)) {
        const g = out.gateChains.get(String(r.chain)) ?? { spec: {}, ruleComments: [] };
        g.ruleComments.push(comment);
        out.gateChains.set(String(r.chain), g);
      }
    }
  }
  return out;
}

/**
 * Pure: an nft JSON batch that puts the table back exactly as listed
 * (delete and re-create in one transaction), the gate's answers included;
 * only the kernel's records of refused connections start again.
 */
export function restoreBatch(raw: unknown[] | null): string {
  const table = { family: NFT.family, name: NFT.table };
  const cmds: unknown[] = [{ add: { table } }, { delete: { table } }];
  if (raw) {
    for (const item of raw as Json[]) {
      const [kind, body] = Object.entries(item)[0] as [string, Json];
      const copy: Json = { ...body };
      delete copy.handle;
      // The gate's answers go back with their timeouts (checked: nft takes "expires" back); records start again.
      if (kind === 'set' && (Object.values(NFT.refused) as string[]).includes(String(copy.name))) delete copy.elem;
      cmds.push({ add: { [kind]: copy } });
    }
  }
  return JSON.stringify({ nftables: cmds });
}
