import type { Family } from '../net/ip.js';
import { HOST_CHAIN, REFUSED_HOST_SET, refusedHostSetType } from './kernel-names.js';

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

/** `ipset restore` line creating the host record set of one family. */
export function refusedSetCreateLine(family: Family): string {
  return `create ${REFUSED_HOST_SET[family]} ${refusedHostSetType(family)}`;
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
