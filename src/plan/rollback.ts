import type { Family } from '../net/ip.js';
import { JUMP_RULE_SPEC } from './desired.js';
import type { Plan } from './diff.js';
import { CHAIN, DOCKER_USER, HOST_CHAIN, TMP_SET } from './kernel-names.js';
import type { Observed } from './observed.js';
import { createLine } from './render.js';
import { ufwPolicyWord } from './ufw-file.js';


/**
 * Pure: per touched set, what puts it back as it was: an ipset restore text
 * (old members via temp set + swap) or null, meaning "destroy it" (it did not
 * exist before). Run after the iptables rollback, which drops the references.
 */
export function rollbackIpset(plan: Plan, before: Observed): { family: Family; name: string; restore: string | null }[] {
  const out: { family: Family; name: string; restore: string | null }[] = [];
  for (const op of plan.ops) {
    // a record set is only ever created (it did not exist): destroy it
    if (op.kind === 'record-set') out.push({ family: op.family, name: op.name, restore: null });
    if (op.kind !== 'set') continue;
    const old = before.sets[op.family];
    if (!old.exists) {
      out.push({ family: op.family, name: op.name, restore: null });
      continue;
    }
    const tmp = TMP_SET[op.family];
    const lines = [createLine(tmp, op.family, old.entries.length)];
    for (const e of old.entries) lines.push(`add ${tmp} ${e}`);
    lines.push(`swap ${tmp} ${op.name}`, `destroy ${tmp}`);
    out.push({ family: op.family, name: op.name, restore: `${lines.join('\n')}\n` });
  }
  return out;
}

/**
 * Pure: one iptables-restore transaction that undoes a family's chain and
 * jump operations: old rules back, jumps back at their old positions, chains
 * this plan created removed (EGRESSFW-HOST is only emptied: ufw may hook it).
 */
export function rollbackIptables(plan: Plan, before: Observed, family: Family): string | null {
  const table = before.tables[family];
  const decls: string[] = [];
  const rules: string[] = [];
  const drop: string[] = [];
  for (const op of plan.ops) {
    if (!('family' in op) || op.family !== family) continue;
    if (op.kind === 'chain') {
      const old = table.chains.get(op.chain);
      decls.push(`:${op.chain} - [0:0]`);
      if (old) rules.push(...old);
      else if (op.chain !== HOST_CHAIN) drop.push(op.chain);
    } else if (op.kind === 'legacy') {
      // The old chain back with its rules, then the jumps at their old positions.
      if (op.dropChain) decls.push(`:${CHAIN} - [0:0]`), rules.push(...(table.chains.get(CHAIN) ?? []));
      for (const parent of [DOCKER_USER, 'FORWARD']) {
        (table.chains.get(parent) ?? []).forEach((r, i) => {
          if (op.deleteRules.includes(r.replace(/^-A /, '-D '))) rules.push(`-I ${parent} ${i + 1} ${JUMP_RULE_SPEC}`);
        });
      }
    }
  }
  for (const chain of drop) rules.push(`-F ${chain}`, `-X ${chain}`);
  if (!decls.length && !rules.length) return null;
  return ['*filter', ...decls, ...rules, 'COMMIT', ''].join('\n');
}

export interface UfwRollback {
  files: { file: string; text: string }[];
  /** argv lists, in order */
  commands: string[][];
  /** after those: a reload re-declared EGRESSFW-HOST from the block (DNS only); its old rules back, per family */
  refill: Record<Family, string | null>;
}

/** Pure: how to put ufw back: old file texts, old policy, disable if we enabled it, reload. */
export function rollbackUfw(plan: Plan, before: Observed): UfwRollback | null {
  const ufw = before.ufw;
  const ops = plan.ops.filter((o) => o.kind.startsWith('ufw-'));
  if (!ufw || ops.length === 0) return null;
  const files: UfwRollback['files'] = [];
  const commands: string[][] = [];
  for (const op of ops) {
    if (op.kind === 'ufw-block') files.push({ file: op.file, text: ufw.files[op.family] });
    if (op.kind === 'ufw-outgoing') commands.push(['ufw', 'default', ufwPolicyWord(ufw.outputPolicy), 'outgoing']);
    if (op.kind === 'ufw-enable') commands.push(['ufw', '--force', 'disable']);
  }
  if (ufw.enabled) commands.push(['ufw', 'reload']);
  const refill = (f: Family) => {
    const old = before.tables[f].chains.get(HOST_CHAIN);
    if (!commands.length) return null;
    // It did not exist before: the reload left it unhooked; remove it.
    return ['*filter', `:${HOST_CHAIN} - [0:0]`, ...(old ?? [`-X ${HOST_CHAIN}`]), 'COMMIT', ''].join('\n');
  };
  return { files, commands, refill: { 4: refill(4), 6: refill(6) } };
}
