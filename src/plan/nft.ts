import { createHash } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import type { Config } from '../config/load.js';
import { parseCidr, REFUSED_V4_CIDRS, type Family } from '../net/ip.js';
import { FORWARD_PASS, NFT, NFT_CHAIN_SPEC, NFT_SET_TYPES, NFT_TABLE_REF } from './kernel-names.js';
import { gateForwardRules, gateHostChain, gateHostSourceChain, gateInputChain, gateNatChain, type GateChain } from './gate.js';
import { policiesInUse } from '../policy/assign.js';
import { POLICY_FORWARD_RULES, type PolicyDesired } from './policies.js';
import { POLICY_MAP_TYPE, POLICY_NFT, policySetType } from './kernel-names.js';

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
  /** per-workload policies (src/plan/policies.ts); null when the config uses none: the table is exactly as without them */
  policies: PolicyDesired | null;
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

/** The verdict for what egressfw allows (accept + the forward mark): see FORWARD_PASS in kernel-names.ts. */
export const PASS = FORWARD_PASS;

/** Transport protocols with ports. */
const PORTED = '{ tcp, udp, sctp, dccp, udplite }';

export function forwardRules(config: Config, perPolicy = policiesInUse(config)): NftRule[] {
  const rules: NftRule[] = [
    // Unmarked: ufw's forward path accepts replies itself (RELATED,ESTABLISHED).
    { tag: 'replies', text: 'ct state established,related accept' },
    // Inbound to a published port: Docker DNAT'ed it. Not egress.
    { tag: 'published', text: `ct status dnat ${PASS}` },
    // The destination is reached through the interface the packet came in on: two hosts of one
    // segment (container to container on one bridge). Never true for a way out of the host.
    { tag: 'same-segment', text: `fib daddr . iif oif exists ${PASS}` },
  ];
  const exempt = config.containers.exemptFrom;
  // One rule each: a trailing "+" (iptables style) is nft's "*" wildcard. Unmarked: what the operator
  // routes (a VPN) is not egressfw's to judge, and still meets the operator's own ufw forward rules.
  exempt.forEach((i, n) => rules.push({ tag: `exempt-${n}`, text: `iifname "${i.replace(/\+$/, '*')}" accept` }));
  // DNS gate: DNS and DNS-over-TLS leave only through the gate (before any accept by destination).
  if (config.dns.gate.enabled) rules.push(...gateForwardRules());
  const p = config.proxy;
  if (p.wildcards.length) {
    const ports = [...new Set([...p.tlsPorts, ...p.httpPorts])].sort((a, b) => a - b).join(', ');
    // SNI proxy with wildcard names: no IP list exists for them; only the proxy is on this bridge, and it enforces the names.
    // Never inside: the rebinding guard's refused ranges (private, metadata, CGNAT, ...) stay closed to it.
    rules.push({ tag: 'proxy-wildcards', text: `iifname "${p.egressBridge}" ip daddr != { ${REFUSED_V4_CIDRS.join(', ')} } tcp dport { ${ports} } ${PASS}` });
  }
  // Policies: the source picks the chain (and so the sets); a source the map does not know falls through to the refusal.
  if (perPolicy) rules.push(...POLICY_FORWARD_RULES);
  else {
    rules.push(
      { tag: 'allowed', text: `ip daddr . meta l4proto . th dport @${NFT.allow[4]} ${PASS}` },
      { tag: 'allowed6', text: `ip6 daddr . meta l4proto . th dport @${NFT.allow[6]} ${PASS}` },
      { tag: 'gate', text: `ip daddr . meta l4proto . th dport @${NFT.gate[4]} ${PASS}` },
      { tag: 'gate6', text: `ip6 daddr . meta l4proto . th dport @${NFT.gate[6]} ${PASS}` },
    );
  }
  rules.push(
    // Counted in the kernel, in both modes: what was (or would have been) refused, per source.
    // Port 0 for protocols without ports: `th dport` would read ICMP's checksum, one element per ping.
    { tag: 'record', text: `ct state new meta l4proto ${PORTED} update @${NFT.refused[4]} { ip saddr . ip daddr . meta l4proto . th dport }` },
    { tag: 'record-noport', text: `ct state new meta l4proto != ${PORTED} update @${NFT.refused[4]} { ip saddr . ip daddr . meta l4proto . 0 }` },
    { tag: 'record6', text: `ct state new meta l4proto ${PORTED} update @${NFT.refused[6]} { ip6 saddr . ip6 daddr . meta l4proto . th dport }` },
    { tag: 'record6-noport', text: `ct state new meta l4proto != ${PORTED} update @${NFT.refused[6]} { ip6 saddr . ip6 daddr . meta l4proto . 0 }` },
  );
  // Audit lets through what enforce would refuse, unmarked: it must not open what ufw's forward DROP closed before.
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

/** ipset members -> the members of an nft allow set */
export const nftSetMembers = (ipsetSets: Record<Family, string[]>): Record<Family, string[]> => ({ 4: withoutCovered(ipsetSets[4].map(nftElement)), 6: withoutCovered(ipsetSets[6].map(nftElement)) });

export function buildNftDesired(config: Config, ipsetSets: Record<Family, string[]>, policies: PolicyDesired | null = null): NftDesired {
  const gate = config.dns.gate.enabled
    ? [
        gateNatChain({ port: config.dns.gate.port, exemptInterfaces: config.containers.exemptFrom }),
        gateInputChain({ port: config.dns.gate.port }),
        // the host's own DNS too, when egressfw restricts the host
        ...(config.host.enabled ? [gateHostChain({ port: config.dns.gate.port }), gateHostSourceChain({ port: config.dns.gate.port })] : []),
      ]
    : [];
  return { sets: nftSetMembers(ipsetSets), rules: forwardRules(config, policies !== null), gate, policies };
}

/** What sync changes in the policy part of the table (src/plan/diff.ts decides, renderNftScript writes). */
export interface PolicyOps {
  /** policy static sets to rewrite (flush + add) */
  sets: string[];
  /** policy chains to rewrite (flush + add rules) */
  chains: string[];
  /** map members to delete (by address) and to add ("addr : jump chain"), per family; a changed verdict is both */
  mapDelete: Record<Family, string[]>;
  mapAdd: Record<Family, string[]>;
  /** present but no longer wanted */
  dropChains: string[];
  dropSets: string[];
  dropMaps: boolean;
}

export const NO_POLICY_OPS: PolicyOps = { sets: [], chains: [], mapDelete: { 4: [], 6: [] }, mapAdd: { 4: [], 6: [] }, dropChains: [], dropSets: [], dropMaps: false };

const T = NFT_TABLE_REF;

/**
 * One `nft -f` transaction (all or nothing): declare what is missing, then
 * rewrite what differs. Dynamic sets (gate, records) are declared, never flushed.
 */
export function renderNftScript(want: NftDesired, what: { sets: Family[]; chain: boolean; dropChains?: string[]; policy?: PolicyOps }): string {
  const lines = [`add table ${T}`];
  for (const [name, type] of Object.entries(NFT_SET_TYPES)) lines.push(`add set ${T} ${name} { ${type} }`);
  const pol = want.policies;
  const pops = what.policy ?? NO_POLICY_OPS;
  // Chunks keep each line short; still one transaction.
  const fill = (set: string, elements: string[]) => {
    for (let i = 0; i < elements.length; i += 500) lines.push(`add element ${T} ${set} { ${elements.slice(i, i + 500).join(', ')} }`);
  };
  if (pol) {
    // Declared before anything refers to them: sets, then the chains the map jumps to, then the maps.
    for (const [name] of Object.entries(pol.sets)) lines.push(`add set ${T} ${name} { ${policySetType(name)} }`);
    for (const name of pol.gateSets) lines.push(`add set ${T} ${name} { ${policySetType(name)} }`);
    for (const c of pol.chains) lines.push(`add chain ${T} ${c.name}`);
    for (const f of [4, 6] as Family[]) lines.push(`add map ${T} ${POLICY_NFT.map[f]} { ${POLICY_MAP_TYPE[f]} }`);
  }
  lines.push(`add chain ${T} ${NFT.chain} { ${CHAIN_DECL} }`);
  for (const f of what.sets) {
    lines.push(`flush set ${T} ${STATIC_SETS[f]}`);
    fill(STATIC_SETS[f], want.sets[f]);
  }
  if (pol) {
    for (const name of pops.sets) {
      lines.push(`flush set ${T} ${name}`);
      fill(name, pol.sets[name] ?? []);
    }
    for (const c of pol.chains.filter((x) => pops.chains.includes(x.name))) {
      lines.push(`flush chain ${T} ${c.name}`);
      for (const r of c.rules) lines.push(`add rule ${T} ${c.name} ${r.text} comment "${ruleComment(r)}"`);
    }
  }
  // Members by address; deleted explicitly (not a flush), so a chain that goes in the same transaction is no longer referenced.
  for (const f of [4, 6] as Family[]) {
    for (let i = 0; i < pops.mapDelete[f].length; i += 500) lines.push(`delete element ${T} ${POLICY_NFT.map[f]} { ${pops.mapDelete[f].slice(i, i + 500).join(', ')} }`);
    if (pol) fill(POLICY_NFT.map[f], pops.mapAdd[f]);
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
  // Policies no longer in use, or one policy removed: after the forward chain no longer looks the maps up.
  if (pops.dropMaps) for (const f of [4, 6] as Family[]) lines.push(`delete map ${T} ${POLICY_NFT.map[f]}`);
  for (const name of pops.dropChains) lines.push(`flush chain ${T} ${name}`, `delete chain ${T} ${name}`);
  for (const name of pops.dropSets) lines.push(`delete set ${T} ${name}`);
  return `${lines.join('\n')}\n`;
}

/** Pure: is this `nft monitor tables` line the deletion of egressfw's table ("delete table inet egressfw")? */
export function tableDeleted(line: string): boolean {
  return line.trim() === `delete table ${NFT_TABLE_REF}`;
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
  /** policy chains (pol-*) -> their rule comments */
  policyChains: Map<string, string[]>;
  /** verdict maps (policy4/6) -> canonical members "addr : jump chain", sorted */
  maps: Map<string, string[]>;
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

/** A verdict map member as nft -j lists it, `["198.51.100.66", {"jump": {"target": "pol-a"}}]` -> "198.51.100.66 : jump pol-a". */
function mapElemText(v: unknown): string | null {
  if (!Array.isArray(v) || v.length !== 2) return null;
  const key = elemText(v[0]);
  const verdict = v[1] && typeof v[1] === 'object' ? (Object.entries(v[1] as Json)[0] as [string, Json] | undefined) : undefined;
  if (key === null || !verdict || typeof verdict[1]?.target !== 'string') return null;
  return `${canonicalElement(key)} : ${verdict[0]} ${verdict[1].target}`;
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
  const out: NftObserved = { chain: null, ruleComments: [], gateChains: new Map(), sets: new Map(), policyChains: new Map(), maps: new Map(), raw: [] };
  const isGate = (name: unknown) => (NFT.gateChains as readonly string[]).includes(String(name));
  const isPolicy = (name: unknown) => String(name).startsWith(POLICY_NFT.chainPrefix);
  for (const item of items) {
    if (item.metainfo) continue;
    out.raw.push(item);
    if (item.map) {
      const m = item.map as Json;
      const elems = ((m.elem as unknown[]) ?? []).map(mapElemText).filter((x): x is string => x !== null);
      out.maps.set(String(m.name), elems.sort());
    } else if (item.set) {
      const s = item.set as Json;
      const elems = ((s.elem as unknown[]) ?? []).map(elemText).filter((x): x is string => x !== null);
      out.sets.set(String(s.name), elems.map(canonicalElement).sort());
    } else if (item.chain) {
      const c = item.chain as Json;
      const spec = { type: c.type as string, hook: c.hook as string, prio: c.prio as number, policy: c.policy as string };
      if (c.name === NFT.chain) out.chain = spec;
      else if (isGate(c.name)) out.gateChains.set(String(c.name), { spec, ruleComments: out.gateChains.get(String(c.name))?.ruleComments ?? [] });
      else if (isPolicy(c.name)) out.policyChains.set(String(c.name), out.policyChains.get(String(c.name)) ?? []);
    } else if (item.rule) {
      const r = item.rule as Json;
      const comment = typeof r.comment === 'string' ? r.comment : '';
      if (r.chain === NFT.chain) out.ruleComments.push(comment);
      else if (isPolicy(r.chain)) out.policyChains.set(String(r.chain), [...(out.policyChains.get(String(r.chain)) ?? []), comment]);
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
    // Chains before the maps whose members jump to them; rules last (nft lists maps before chains).
    const rank = (item: Json) => (item.rule ? 3 : item.map ? 2 : item.chain ? 1 : 0);
    const ordered = [...(raw as Json[])].map((item, i) => ({ item, i })).sort((a, b) => rank(a.item) - rank(b.item) || a.i - b.i).map((x) => x.item);
    for (const item of ordered) {
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
