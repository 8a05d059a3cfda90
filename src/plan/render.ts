import type { Family } from '../net/ip.js';
import type { Op, Plan } from './diff.js';
import { allowHostSetType, CHAIN, NFT_TABLE_REF, TMP_SET } from './kernel-names.js';
import { DELETE_TABLE, renderNftScript } from './nft.js';
import { refusedSetCreateLine } from './audit-rules.js';

/** Room to grow: at least ipset's default 65536, else the next power of two above twice the entries. */
export function maxelemFor(n: number): number {
  let m = 65536;
  while (m < n * 2) m *= 2;
  return m;
}

export function createLine(name: string, family: Family, n: number): string {
  return `create ${name} ${allowHostSetType(family, maxelemFor(n))}`;
}

/**
 * `ipset restore` text. An existing set is never edited in place: the new
 * members go into a temporary set that is then swapped in, so packets see
 * either the old list or the new one, never a half-written one.
 */
export function renderIpset(plan: Plan): string | null {
  const lines: string[] = [];
  for (const op of plan.ops) {
    if (op.kind === 'record-set') lines.push(refusedSetCreateLine(op.family));
    if (op.kind !== 'set') continue;
    const target = op.exists ? TMP_SET[op.family] : op.name;
    if (op.exists && op.tmpExists) lines.push(`destroy ${TMP_SET[op.family]}`);
    lines.push(createLine(target, op.family, op.entries.length));
    for (const e of op.entries) lines.push(`add ${target} ${e}`);
    if (op.exists) lines.push(`swap ${TMP_SET[op.family]} ${op.name}`, `destroy ${TMP_SET[op.family]}`);
  }
  return lines.length ? `${lines.join('\n')}\n` : null;
}

/** One `iptables-restore --noflush` transaction per family: all or nothing. */
export function renderIptables(plan: Plan, family: Family): string | null {
  const decls: string[] = [];
  const rules: string[] = [];
  for (const op of plan.ops) {
    if ('family' in op && op.family !== family) continue;
    if (op.kind === 'chain') {
      // Declaring a chain under --noflush creates it, or empties it if it exists: then refill.
      decls.push(`:${op.chain} - [0:0]`);
      rules.push(...op.rules);
    } else if (op.kind === 'legacy') {
      rules.push(...op.deleteRules);
      if (op.dropChain) rules.push(`-F ${CHAIN}`, `-X ${CHAIN}`);
    }
  }
  if (!decls.length && !rules.length) return null;
  return ['*filter', ...decls, ...rules, 'COMMIT', ''].join('\n');
}

/** The `nft -f` transaction for the container table, or null. */
export function renderNft(plan: Plan): string | null {
  for (const op of plan.ops) {
    if (op.kind === 'nft') return renderNftScript(op.want, { sets: op.sets, chain: op.chain, dropChains: op.dropChains, policy: op.policy });
    if (op.kind === 'nft-delete') return DELETE_TABLE;
  }
  return null;
}

export interface UfwStep {
  say: string;
  argv?: string[];
  /** for file writes: the lines removed/added, diff style */
  diff?: string[];
}

export function ufwSteps(plan: Plan): UfwStep[] {
  const steps: UfwStep[] = [];
  for (const op of plan.ops) {
    switch (op.kind) {
      case 'ufw-block':
        steps.push({
          say: `${op.before ? 'update' : 'add'} the egressfw block in ${op.file} (backup kept as ${op.file}.egressfw-backup)`,
          diff: [...(op.before ?? '').split('\n').filter(Boolean).map((l) => `- ${l}`), ...op.after.split('\n').map((l) => `+ ${l}`)],
        });
        break;
      case 'ufw-outgoing':
        steps.push({ say: `outgoing policy ${op.from} -> ${op.to} (previous value recorded for uninstall)`, argv: ['ufw', 'default', op.to, 'outgoing'] });
        break;
      case 'ufw-enable':
        steps.push({ say: 'enable ufw (host.enableUfw is set)', argv: ['ufw', '--force', 'enable'] });
        break;
      case 'ufw-reload':
        steps.push({ say: 'reload ufw so it loads the new block', argv: ['ufw', 'reload'] });
        break;
    }
  }
  return steps;
}

/** The policy part of an nft op, for people. */
function describePolicyOps(op: Extract<Op, { kind: 'nft' }>): string[] {
  const p = op.policy;
  const out: string[] = [];
  for (const name of p.sets) out.push(`${name}: ${op.want.policies?.sets[name]?.length ?? 0} entries`);
  if (p.chains.length) out.push(`write policy chains ${p.chains.join(', ')}`);
  const add = p.mapAdd[4].length + p.mapAdd[6].length;
  const del = p.mapDelete[4].length + p.mapDelete[6].length;
  if (add || del) out.push(`policy map: +${add} -${del} container addresses`);
  if (p.dropMaps) out.push('remove the policy maps (no policies in use)');
  if (p.dropChains.length) out.push(`remove ${p.dropChains.join(', ')}`);
  if (p.dropSets.length) out.push(`remove sets ${p.dropSets.join(', ')}`);
  return out;
}

/** One line per operation, for people. */
export function describeOp(op: Op): string {
  switch (op.kind) {
    case 'set':
      return `${op.exists ? 'replace' : 'create'} ipset ${op.name}: ${op.entries.length} entries (+${op.added.length} -${op.removed.length})`;
    case 'record-set':
      return `create ipset ${op.name} (records refused host connections; kept across syncs)`;
    case 'chain':
      return `${op.family === 4 ? 'iptables' : 'ip6tables'}: write chain ${op.chain} (${op.rules.length} rules; ${op.reason})`;
    case 'nft': {
      const what = [
        ...(op.create ? [`create table ${NFT_TABLE_REF}`] : []),
        ...op.sets.map((f) => `allow${f}: ${op.want.sets[f].length} entries (+${op.added[f]} -${op.removed[f]})`),
        ...(op.chain ? [`write chain forward (${op.want.rules.length} rules)`] : []),
        ...(op.chain && op.want.gate.length ? [`write DNS gate chains ${op.want.gate.map((c) => c.name).join(', ')}`] : []),
        ...(op.dropChains.length ? [`remove ${op.dropChains.join(', ')} (dns.gate off)`] : []),
        ...describePolicyOps(op),
      ];
      return `nft: ${what.length ? what.join('; ') : 'declare missing sets'} (${op.reason})`;
    }
    case 'nft-delete':
      return `nft: delete table ${NFT_TABLE_REF} (containers.enabled is false)`;
    case 'legacy':
      return `${op.family === 4 ? 'iptables' : 'ip6tables'}: remove the pre-0.2 container chain ${CHAIN}${op.deleteRules.length ? ` and its ${op.deleteRules.length} jump${op.deleteRules.length > 1 ? 's' : ''}` : ''} (the nftables table replaces it)`;
    case 'ufw-block':
      return `ufw: ${op.before ? 'update' : 'add'} the egressfw block in ${op.file}`;
    case 'ufw-outgoing':
      return `ufw: default outgoing ${op.from} -> ${op.to}`;
    case 'ufw-enable':
      return 'ufw: enable';
    case 'ufw-reload':
      return 'ufw: reload';
  }
}
