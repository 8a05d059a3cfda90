import type { Family } from '../net/ip.js';
import { HOST_CHAIN } from './kernel-names.js';

/**
 * Audit mode and the record of refused connections, host side (pure).
 *
 * Containers are recorded by the nftables table `inet egressfw` (sets
 * refused4/refused6, `update` with a per-element counter). The host stays on
 * ufw + iptables, so its record is an ipset written from the end of
 * EGRESSFW-HOST, where a NEW connection ends up when it is neither DNS to the
 * resolvers nor on the allowlist: in enforce it then falls through to ufw's
 * reject/deny policy, in audit it is accepted.
 *
 * Why ipset `-j SET` and not NFLOG: no user space per packet, nothing lost
 * while no daemon runs (cron installs), bounded kernel memory, and Node cannot
 * open a netlink socket without a native addon. Measured side by side in
 * scripts/bench/audit-recording.ts.
 */

export type Mode = 'enforce' | 'audit';

/** hash:ip,port with counters and a timeout, one per family; never swapped or flushed by sync (that would lose records). */
export const REFUSED_HOST_SET = { 4: 'egressfw-refused-host-v4', 6: 'egressfw-refused-host-v6' } as const satisfies Record<Family, string>;
/** 7 days: an element is dropped that long after it was first added (the host rules never refresh it). */
export const REFUSED_TIMEOUT_SEC = 604800;
export const REFUSED_MAXELEM = 65536;

/** The containers' records in the nft table (written by the lead's chain; read here). */
export const NFT_TABLE = { family: 'inet', name: 'egressfw' } as const;
export const REFUSED_NFT_SET = { 4: 'refused4', 6: 'refused6' } as const satisfies Record<Family, string>;
export const NFT_FORWARD_CHAIN = 'forward';

const INET = { 4: 'inet', 6: 'inet6' } as const;

/** `ipset restore` line creating the host record set of one family. */
export function refusedSetCreateLine(family: Family): string {
  return `create ${REFUSED_HOST_SET[family]} hash:ip,port family ${INET[family]} hashsize 1024 maxelem ${REFUSED_MAXELEM} timeout ${REFUSED_TIMEOUT_SEC} counters`;
}

/**
 * `ipset restore` lines for the record sets that do not exist yet (`existing`:
 * names from `ipset list -n`; omitted: both). An existing set is left alone,
 * even with other parameters: its records are worth more than its shape.
 */
export function refusedSetCreateLines(existing: ReadonlySet<string> = new Set()): string[] {
  return ([4, 6] as Family[]).filter((f) => !existing.has(REFUSED_HOST_SET[f])).map(refusedSetCreateLine);
}

/** For uninstall: the record sets to destroy (after EGRESSFW-HOST, which references them, is gone). */
export function refusedSetsToDestroy(existing: ReadonlySet<string>): string[] {
  return ([4, 6] as Family[]).map((f) => REFUSED_HOST_SET[f]).filter((n) => existing.has(n));
}

const RECORD_COMMENT = 'egressfw refused-record';
const AUDIT_COMMENT = 'egressfw audit';

/**
 * The last rules of EGRESSFW-HOST, in iptables-save's canonical form (so the
 * planner's compare with the kernel is exact). One rule records: the set match
 * counts the packet on the element when it is there (counters are updated on a
 * found element even though `!` then makes the rule not match); when it is not,
 * `-j SET` adds it, and an added element starts at 1 packet. So every NEW packet
 * is counted exactly once, and the set's lock is taken only for new tuples.
 * NEW only: replies and the rest of an allowed connection never reach here, and
 * one attempt is one count (with `host.outgoing: deny`, TCP SYN retransmissions
 * count too). Audit accepts what enforce leaves to ufw's reject/deny policy.
 */
export function hostAuditRules(family: Family, mode: Mode): string[] {
  const set = REFUSED_HOST_SET[family];
  return [
    `-A ${HOST_CHAIN} -m conntrack --ctstate NEW -m set ! --match-set ${set} dst,dst -m comment --comment "${RECORD_COMMENT}" -j SET --add-set ${set} dst,dst`,
    ...(mode === 'audit' ? [`-A ${HOST_CHAIN} -m comment --comment "${AUDIT_COMMENT}" -j ACCEPT`] : []),
  ];
}

/**
 * The mode EGRESSFW-HOST is in, from its rules as iptables-save prints them:
 * null when it does not record (not installed, or a ufw reload re-declared it
 * and egressfw has not refilled it yet).
 */
export function hostModeOf(rules: readonly string[]): Mode | null {
  const records = rules.some((r) => r.includes(`--comment "${RECORD_COMMENT}"`));
  if (!records) return null;
  return rules.at(-1)?.includes(`--comment "${AUDIT_COMMENT}"`) ? 'audit' : 'enforce';
}
