import type { Family } from '../net/ip.js';

/** Every kernel object egressfw owns. Nothing else is ever flushed or declared. */
export const SET = { 4: 'egressfw-v4', 6: 'egressfw-v6' } as const satisfies Record<Family, string>;
/** Temporary set filled by `ipset restore`, then swapped with the live one (atomic for packets). */
export const TMP_SET = { 4: 'egressfw-v4-new', 6: 'egressfw-v6-new' } as const satisfies Record<Family, string>;
/** The iptables chain of egressfw before 0.2 (containers judged from DOCKER-USER): only removed now. */
export const CHAIN = 'EGRESSFW';
export const HOST_CHAIN = 'EGRESSFW-HOST';
export const DOCKER_USER = 'DOCKER-USER';
export const UFW_OUTPUT = { 4: 'ufw-before-output', 6: 'ufw6-before-output' } as const satisfies Record<Family, string>;
export const UFW_FILE = { 4: '/etc/ufw/before.rules', 6: '/etc/ufw/before6.rules' } as const satisfies Record<Family, string>;
export const BLOCK_BEGIN = '# BEGIN EGRESSFW';
export const BLOCK_END = '# END EGRESSFW';
export const COMMENT_PREFIX = 'egressfw';
export const FAMILIES: Family[] = [4, 6];

/** egressfw's own nftables table (family inet) for container egress, its base chain and sets. */
export const NFT = {
  table: 'egressfw',
  chain: 'forward',
  allow: { 4: 'allow4', 6: 'allow6' },
  gate: { 4: 'gate4', 6: 'gate6' },
  refused: { 4: 'refused4', 6: 'refused6' },
} as const satisfies { table: string; chain: string; allow: Record<Family, string>; gate: Record<Family, string>; refused: Record<Family, string> };

/**
 * Per-workload policies (issue 18), in the same table: a verdict map per family from container
 * source address to its policy's chain, and per defined policy its own allow and gate sets.
 * Policy names are at most 24 of [a-z0-9-] (src/config/schema.ts), so these stay valid nft names;
 * "pol-host" is the chain of containers given the top-level list (it reads allow4/6, gate4/6).
 */
export const POLICY_NFT = {
  map: { 4: 'policy4', 6: 'policy6' } as const satisfies Record<Family, string>,
  chainPrefix: 'pol-',
  chain: (policy: string): string => `pol-${policy}`,
  allow: (policy: string, f: Family): string => `pol-${policy}-allow${f}`,
  gate: (policy: string, f: Family): string => `pol-${policy}-gate${f}`,
};
