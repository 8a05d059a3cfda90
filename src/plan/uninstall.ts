import type { Family } from '../net/ip.js';
import type { State } from '../state-file.js';
import { JUMP_RULE_SPEC } from './desired.js';
import { CHAIN, DOCKER_USER, FAMILIES, HOST_CHAIN, NFT_TABLE_REF, REFUSED_HOST_SET, SET, TMP_SET, UFW_FILE } from './kernel-names.js';
import { extractBlock, type Observed } from './observed.js';
import { removeBlock, ufwPolicyWord } from './ufw-file.js';
import { DELETE_TABLE } from './nft.js';

export interface UninstallPlan {
  /** first: jumps out, EGRESSFW gone, EGRESSFW-HOST emptied (ufw may still hook it) */
  iptables: Record<Family, string | null>;
  ufw: { files: { file: string; text: string }[]; commands: string[][] } | null;
  /** after ufw let go of it: EGRESSFW-HOST removed */
  iptablesAfterUfw: Record<Family, string | null>;
  ipsetDestroy: string[];
  /** `nft -f` text deleting egressfw's table, or null */
  nft: string | null;
  /** one line per thing removed or restored, for people */
  steps: string[];
}

const wrap = (lines: string[]) => (lines.length ? ['*filter', ...lines, 'COMMIT', ''].join('\n') : null);

/**
 * Pure: how to remove everything egressfw added and put back what it
 * changed (ufw's outgoing policy and enabled state as first found, a
 * DOCKER-USER it created if nothing else uses it), from the observed kernel.
 */
export function planUninstall(observed: Observed, original: State['original']): UninstallPlan {
  const steps: string[] = [];
  const iptables: Record<Family, string | null> = { 4: null, 6: null };
  const after: Record<Family, string | null> = { 4: null, 6: null };
  for (const f of FAMILIES) {
    const t = observed.tables[f];
    const tool = f === 4 ? 'iptables' : 'ip6tables';
    const lines: string[] = [];
    for (const parent of [DOCKER_USER, 'FORWARD']) {
      const ours = (t.chains.get(parent) ?? []).filter((r) => r.endsWith(` ${JUMP_RULE_SPEC}`));
      for (const r of ours) lines.push(r.replace(/^-A /, '-D '));
      if (ours.length) steps.push(`${tool}: remove the jump to ${CHAIN} from ${parent}`);
    }
    if (t.chains.has(CHAIN)) {
      lines.push(`-F ${CHAIN}`, `-X ${CHAIN}`);
      steps.push(`${tool}: remove chain ${CHAIN}`);
    }
    const du = t.chains.get(DOCKER_USER);
    const duLeft = (du ?? []).filter((r) => !r.endsWith(` ${JUMP_RULE_SPEC}`));
    const duReferenced = [...t.chains.values()].some((rules) => rules.some((r) => r.endsWith(`-j ${DOCKER_USER}`)));
    if (du && original?.createdChains?.includes(`${DOCKER_USER}/${f}`) && duLeft.length === 0 && !duReferenced) {
      lines.push(`-X ${DOCKER_USER}`);
      steps.push(`${tool}: remove ${DOCKER_USER} (egressfw created it; nothing else uses it)`);
    }
    if (t.chains.has(HOST_CHAIN)) {
      lines.push(`-F ${HOST_CHAIN}`);
      after[f] = wrap([`-F ${HOST_CHAIN}`, `-X ${HOST_CHAIN}`]);
      steps.push(`${tool}: remove chain ${HOST_CHAIN}`);
    }
    iptables[f] = wrap(lines);
  }

  let ufw: UninstallPlan['ufw'] = null;
  const u = observed.ufw;
  if (u) {
    const files: { file: string; text: string }[] = [];
    const commands: string[][] = [];
    for (const f of FAMILIES) {
      if (extractBlock(u.files[f], UFW_FILE[f]) === null) continue;
      files.push({ file: UFW_FILE[f], text: removeBlock(u.files[f]) });
      steps.push(`ufw: remove the egressfw block from ${UFW_FILE[f]}`);
    }
    const was = original?.ufwOutputPolicy;
    if (was && was !== u.outputPolicy) {
      commands.push(['ufw', 'default', ufwPolicyWord(was), 'outgoing']);
      steps.push(`ufw: default outgoing back to ${ufwPolicyWord(was)}`);
    }
    if (original?.ufwEnabled === false && u.enabled) {
      commands.push(['ufw', '--force', 'disable']);
      steps.push('ufw: disable again (egressfw enabled it)');
    } else if (u.enabled && files.length && !commands.length) commands.push(['ufw', 'reload']); // `ufw default` reloads itself
    if (files.length || commands.length) ufw = { files, commands };
  }

  const ipsetDestroy = FAMILIES.flatMap((f) => [
    ...(observed.sets[f].tmpExists ? [TMP_SET[f]] : []),
    ...(observed.sets[f].exists ? [SET[f]] : []),
    ...(observed.sets[f].recordExists ? [REFUSED_HOST_SET[f]] : []),
  ]);
  for (const s of ipsetDestroy) steps.push(`ipset: destroy ${s}`);
  const nft = observed.nft ? DELETE_TABLE : null;
  if (nft) steps.unshift(`nft: delete table ${NFT_TABLE_REF} (container rules, gate and record sets)`);
  return { iptables, ufw, iptablesAfterUfw: after, ipsetDestroy, nft, steps };
}
