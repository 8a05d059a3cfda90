import type { Family } from '../net/ip.js';

/**
 * The kernel-names contract: every kernel object egressfw owns, with the
 * types of its sets. The planner writes them, observe() and the audit reader
 * read them back, the gate's writer fills its sets: all from here. Nothing
 * else is ever flushed or declared.
 */

export const FAMILIES: Family[] = [4, 6];

// --- host side: ufw + iptables + ipset

/** The host's allowlist sets (`ipset`, hash:net,port). */
export const SET = { 4: 'egressfw-v4', 6: 'egressfw-v6' } as const satisfies Record<Family, string>;
/** Temporary set filled by `ipset restore`, then swapped with the live one (atomic for packets). */
export const TMP_SET = { 4: 'egressfw-v4-new', 6: 'egressfw-v6-new' } as const satisfies Record<Family, string>;
/** The iptables chain of egressfw before 0.2 (containers judged from DOCKER-USER): only removed now. */
export const CHAIN = 'EGRESSFW';
export const HOST_CHAIN = 'EGRESSFW-HOST';
export const DOCKER_USER = 'DOCKER-USER';
export const UFW_OUTPUT = { 4: 'ufw-before-output', 6: 'ufw6-before-output' } as const satisfies Record<Family, string>;
/** ufw's forward path, where egressfw's block accepts what egressfw's own table marked (Docker's nftables backend). */
export const UFW_FORWARD = { 4: 'ufw-before-forward', 6: 'ufw6-before-forward' } as const satisfies Record<Family, string>;
/**
 * The packet mark egressfw's forward chain ORs onto what it allows, so an iptables FORWARD policy DROP behind
 * its table (ufw's, on Docker's nftables backend) lets exactly that through. One bit, 0x10000000, chosen clear of
 * Docker (overlay encryption 0xD0C4E3, swarm's small IPVS marks), wg-quick (0xca6c), kube-proxy and flannel
 * (0x4000, 0x8000), Cilium's magic marks (0x0F00, 0x1D00), Tailscale (0xff0000), AWS VPC CNI (0x80) and
 * Istio (0x539). Only Cilium's and Calico's identity bits (upper 16) can overlap: neither runs beside a lone dockerd.
 */
export const FORWARD_MARK = 0x10000000;
export const FORWARD_MARK_HEX = `0x${FORWARD_MARK.toString(16)}`;
/**
 * The verdict for what egressfw allows: accept, and OR in FORWARD_MARK, which egressfw's ufw block
 * accepts in ufw's forward path. An accept in one base chain is not final: on Docker's nftables
 * backend an iptables FORWARD policy DROP (ufw's) behind this table would drop it. Where nothing
 * drops behind (policy ACCEPT) the mark is read by nobody. Every chain's accept by destination uses it
 * (the forward chain's and each policy's).
 */
export const FORWARD_PASS = `meta mark set meta mark or ${FORWARD_MARK_HEX} accept`;
export const UFW_FILE = { 4: '/etc/ufw/before.rules', 6: '/etc/ufw/before6.rules' } as const satisfies Record<Family, string>;
export const BLOCK_BEGIN = '# BEGIN EGRESSFW';
export const BLOCK_END = '# END EGRESSFW';

const IPSET_FAMILY = { 4: 'inet', 6: 'inet6' } as const satisfies Record<Family, string>;
/** The type of an allowlist set (and of its temporary twin), as `ipset restore`'s `create` line takes it. */
export const allowHostSetType = (f: Family, maxelem: number) => `hash:net,port family ${IPSET_FAMILY[f]} hashsize 1024 maxelem ${maxelem}`;

/** The host's record of refused connections: hash:ip,port with counters and a timeout, one per family; never swapped or flushed by sync (that would lose records). */
export const REFUSED_HOST_SET = { 4: 'egressfw-refused-host-v4', 6: 'egressfw-refused-host-v6' } as const satisfies Record<Family, string>;
/** 7 days: an element is dropped that long after it was first added (the host rules never refresh it). */
export const REFUSED_TIMEOUT_SEC = 604800;
export const REFUSED_MAXELEM = 65536;
/** The type of a host record set, as `ipset restore`'s `create` line takes it. */
export const refusedHostSetType = (f: Family) =>
  `hash:ip,port family ${IPSET_FAMILY[f]} hashsize 1024 maxelem ${REFUSED_MAXELEM} timeout ${REFUSED_TIMEOUT_SEC} counters`;

// --- containers: egressfw's own nftables table

/** egressfw's own nftables table for container egress, its base chain, its sets and the DNS gate's chains. */
export const NFT = {
  family: 'inet',
  table: 'egressfw',
  chain: 'forward',
  /** static allowlist, rewritten by sync */
  allow: { 4: 'allow4', 6: 'allow6' },
  /** the DNS gate's answers, per-element timeouts; never flushed by sync */
  gate: { 4: 'gate4', 6: 'gate6' },
  /** the kernel's records of refused connections */
  refused: { 4: 'refused4', 6: 'refused6' },
  /** every chain the gate may own: removed when the gate is turned off */
  gateChains: ['gate-dns', 'gate-input', 'gate-host', 'gate-host-src'],
} as const satisfies {
  family: string;
  table: string;
  chain: string;
  allow: Record<Family, string>;
  gate: Record<Family, string>;
  refused: Record<Family, string>;
  gateChains: readonly string[];
};

/** "inet egressfw": how nft commands name the table. */
export const NFT_TABLE_REF = `${NFT.family} ${NFT.table}`;

/** Elements a gate set holds at most (ip . proto . port each). */
export const GATE_SET_SIZE = 65536;

/** Each set's declaration (inside `{ }`). */
export const NFT_SET_TYPES: Record<string, string> = {
  [NFT.allow[4]]: 'type ipv4_addr . inet_proto . inet_service; flags interval;',
  [NFT.allow[6]]: 'type ipv6_addr . inet_proto . inet_service; flags interval;',
  // The DNS gate adds what it answered, each with its own timeout; sync never flushes these.
  // Capped: a flood of answers fills the set (the gate then answers SERVFAIL), never the kernel's memory.
  [NFT.gate[4]]: `type ipv4_addr . inet_proto . inet_service; size ${GATE_SET_SIZE}; flags timeout;`,
  [NFT.gate[6]]: `type ipv6_addr . inet_proto . inet_service; size ${GATE_SET_SIZE}; flags timeout;`,
  // Every refused (or, in audit mode, would-be-refused) new connection: source . destination . proto . port, counted.
  [NFT.refused[4]]: 'type ipv4_addr . ipv4_addr . inet_proto . inet_service; size 65536; flags dynamic,timeout; timeout 7d; counter;',
  [NFT.refused[6]]: 'type ipv6_addr . ipv6_addr . inet_proto . inet_service; size 65536; flags dynamic,timeout; timeout 7d; counter;',
};

/** The forward base chain, as `nft -j list` reads it back (priority filter - 1 = -1). */
export const NFT_CHAIN_SPEC = { type: 'filter', hook: 'forward', prio: -1, policy: 'accept' } as const;

// --- per-workload policies (issue 18), in the same table

/**
 * A verdict map per family from container source address to its policy's chain, and per defined
 * policy its own allow and gate sets (typed as allow4/6 and gate4/6). Policy names are at most 24
 * of [a-z0-9-] (src/config/schema.ts), so these stay valid nft names; "pol-host" is the chain of
 * containers given the top-level list (it reads allow4/6, gate4/6).
 */
export const POLICY_NFT = {
  map: { 4: 'policy4', 6: 'policy6' } as const satisfies Record<Family, string>,
  chainPrefix: 'pol-',
  chain: (policy: string): string => `pol-${policy}`,
  allow: (policy: string, f: Family): string => `pol-${policy}-allow${f}`,
  gate: (policy: string, f: Family): string => `pol-${policy}-gate${f}`,
};
export const POLICY_MAP_TYPE: Record<Family, string> = { 4: 'type ipv4_addr : verdict;', 6: 'type ipv6_addr : verdict;' };
/** A policy set's declaration: the same type as the top-level set it stands in for. */
export const policySetType = (name: string): string => NFT_SET_TYPES[`${name.includes('-gate') ? 'gate' : 'allow'}${name.endsWith('6') ? 6 : 4}`]!;
