/**
 * Per-workload policies in the kernel (issue 18). Pure.
 *
 * When policies are in use, the forward chain no longer accepts by the
 * top-level sets. It looks the packet's source up in a verdict map
 * (`ip saddr vmap @policy4`, `ip6 saddr vmap @policy6`): a mapped container
 * jumps to its policy's chain, which accepts what that policy's sets allow
 * and otherwise returns. Everything else falls through to the record and
 * reject rules: a source the map does not know (a container that just
 * started, an address Docker handed to another container, anything that is
 * not a container) gets nothing. Closed by construction, whatever Docker's
 * subnets are. Per packet: one hash lookup by source, then the policy's own
 * four set lookups, whatever the number of containers or policies.
 */
import type { AllowList, Config } from '../config/load.js';
import { forbiddenReason, parseIp, type Family } from '../net/ip.js';
import type { AllowedDomain } from '../resolve/merge.js';
import { assignPolicy, COMPOSE_PROJECT, COMPOSE_SERVICE, HOST_POLICY, NO_POLICY, type Assignment } from '../policy/assign.js';
import { FAMILIES, NFT, POLICY_NFT } from './kernel-names.js';
import type { NftRule } from './nft.js';

/** A running container as the inventory (Docker's API, or its events) gives it. */
export interface InventoryContainer {
  id: string;
  /** without Docker's leading "/" */
  name: string;
  labels: Readonly<Record<string, string>>;
  /** every address on every network, plain (no prefix length) */
  addresses: string[];
}

/** One container, its policy and why: listed by plan and status. */
export interface ContainerAssignment extends Assignment {
  id: string;
  name: string;
  project?: string;
  service?: string;
  addresses: string[];
}

export interface PolicyChain {
  name: string;
  /** "host" or a defined policy's name */
  policy: string;
  rules: NftRule[];
}

export interface PolicyDesired {
  /** pol-host, then one per defined policy (config order: sorted by name) */
  chains: PolicyChain[];
  /** static allow sets of the defined policies: name -> nft elements (sync rewrites them) */
  sets: Record<string, string[]>;
  /** the gate's sets of the defined policies (declared, never flushed) */
  gateSets: string[];
  /** verdict map members: "198.51.100.66 : jump pol-ci" (canonical address, sorted) */
  map: Record<Family, string[]>;
  assignments: ContainerAssignment[];
  /** containers given nothing for a reason the operator should fix (unknown policy name, an address claimed twice) */
  warnings: string[];
}

/** The chain a policy's containers jump to, and the sets it reads: "host" uses the top-level ones. */
export function policyObjects(policy: string): { chain: string; allow: Record<Family, string>; gate: Record<Family, string> } {
  if (policy === HOST_POLICY) return { chain: POLICY_NFT.chain(HOST_POLICY), allow: NFT.allow, gate: NFT.gate };
  return { chain: POLICY_NFT.chain(policy), allow: { 4: POLICY_NFT.allow(policy, 4), 6: POLICY_NFT.allow(policy, 6) }, gate: { 4: POLICY_NFT.gate(policy, 4), 6: POLICY_NFT.gate(policy, 6) } };
}

export function policyChainRules(policy: string): NftRule[] {
  const o = policyObjects(policy);
  return [
    { tag: 'allowed', text: `ip daddr . meta l4proto . th dport @${o.allow[4]} accept` },
    { tag: 'allowed6', text: `ip6 daddr . meta l4proto . th dport @${o.allow[6]} accept` },
    { tag: 'gate', text: `ip daddr . meta l4proto . th dport @${o.gate[4]} accept` },
    { tag: 'gate6', text: `ip6 daddr . meta l4proto . th dport @${o.gate[6]} accept` },
  ];
}

/** The forward chain's lookups by source, in place of the top-level accepts. */
export const POLICY_FORWARD_RULES: NftRule[] = [
  { tag: 'policy', text: `ip saddr vmap @${POLICY_NFT.map[4]}` },
  { tag: 'policy6', text: `ip6 saddr vmap @${POLICY_NFT.map[6]}` },
];

/**
 * Every name any list allows, for one resolution (state.json keeps one entry per name):
 * the private-address guard is lifted if any list lifts it for the name, and put back per list
 * by `allowedFor`.
 */
export function resolvedNames(config: Pick<Config, 'domains' | 'policies'>): { name: string; allowPrivate: boolean }[] {
  const out = new Map<string, boolean>();
  for (const l of [config, ...config.policies]) for (const d of l.domains) out.set(d.name, (out.get(d.name) ?? false) || d.allowPrivate);
  return [...out].map(([name, allowPrivate]) => ({ name, allowPrivate })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The answers one list may use: its own names, private addresses only where its entry allows them. */
export function allowedFor(list: Pick<AllowList, 'domains'>, allowed: AllowedDomain[]): AllowedDomain[] {
  const mine = new Map(list.domains.map((d) => [d.name, d.allowPrivate]));
  return allowed
    .filter((d) => mine.has(d.name))
    .map((d) => (mine.get(d.name) ? d : { ...d, ips: d.ips.filter((i) => forbiddenReason({ text: i.ip, family: i.family }) === null) }));
}

/** Pure: containers -> their policies and the map members. One address claimed by two containers of different policies gets nothing. */
export function assignContainers(config: Pick<Config, 'policies' | 'containers'>, containers: InventoryContainer[]): Pick<PolicyDesired, 'map' | 'assignments' | 'warnings'> {
  const assignments: ContainerAssignment[] = [];
  const warnings: string[] = [];
  const byAddr = new Map<string, { family: Family; chain: string | null; names: string[] }>();
  for (const c of [...containers].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id))) {
    const a = assignPolicy(config, c);
    const addresses = c.addresses.map((x) => parseIp(x)?.text).filter((x): x is string => !!x);
    assignments.push({
      id: c.id,
      name: c.name,
      ...(c.labels[COMPOSE_PROJECT] ? { project: c.labels[COMPOSE_PROJECT] } : {}),
      ...(c.labels[COMPOSE_SERVICE] ? { service: c.labels[COMPOSE_SERVICE] } : {}),
      addresses,
      ...a,
    });
    if (a.unknown !== undefined) warnings.push(`container ${c.name}: ${a.by} names policy "${a.unknown}", which the config does not define: it gets nothing`);
    const chain = a.policy === NO_POLICY ? null : policyObjects(a.policy).chain;
    for (const ip of addresses) {
      const family = parseIp(ip)!.family;
      const had = byAddr.get(ip);
      if (!had) byAddr.set(ip, { family, chain, names: [c.name] });
      else {
        had.names.push(c.name);
        if (had.chain !== chain) had.chain = null;
      }
    }
  }
  const map: Record<Family, string[]> = { 4: [], 6: [] };
  for (const [ip, e] of byAddr) {
    if (e.names.length > 1 && e.chain === null) warnings.push(`address ${ip} is reported for ${e.names.join(', ')} with different policies: it gets nothing`);
    if (e.chain) map[e.family].push(mapElement(ip, e.chain));
  }
  for (const f of FAMILIES) map[f].sort();
  return { map, assignments, warnings };
}

export const mapElement = (ip: string, chain: string): string => `${ip} : jump ${chain}`;

/**
 * Pure: the whole policy part of the table. `setsOf` builds a list's static set members the
 * same way the top-level sets are built (src/plan/desired.ts), so a name means the same everywhere.
 */
export function buildPolicyDesired(
  config: Pick<Config, 'policies' | 'containers'>,
  containers: InventoryContainer[],
  setsOf: (list: AllowList) => Record<Family, string[]>,
): PolicyDesired {
  const chains: PolicyChain[] = [HOST_POLICY, ...config.policies.map((p) => p.name)].map((policy) => ({ name: policyObjects(policy).chain, policy, rules: policyChainRules(policy) }));
  const sets: Record<string, string[]> = {};
  const gateSets: string[] = [];
  for (const p of config.policies) {
    const o = policyObjects(p.name);
    const members = setsOf(p);
    for (const f of FAMILIES) {
      sets[o.allow[f]] = members[f];
      gateSets.push(o.gate[f]);
    }
  }
  return { chains, sets, gateSets, ...assignContainers(config, containers) };
}

/** Docker's container list (src/system/docker.ts) -> the inventory: every address on every network. */
export function inventoryOf(containers: { id: string; name: string; labels: Record<string, string>; networks: { ipv4: string | null; ipv6: string | null }[] }[]): InventoryContainer[] {
  return containers.map((c) => ({ id: c.id, name: c.name.replace(/^\//, ''), labels: c.labels, addresses: c.networks.flatMap((n) => [n.ipv4, n.ipv6].filter((x): x is string => !!x)) }));
}
