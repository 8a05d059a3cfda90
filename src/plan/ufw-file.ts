import { extractBlock } from './observed.js';

/**
 * Pure: put `block` into a before.rules text, replacing an existing marked
 * block or inserting it just before the COMMIT of the *filter section (after
 * ufw's own loopback and established-connection accepts). Returns null when
 * the file has no *filter ... COMMIT to hook into.
 */
export function upsertBlock(text: string, block: string): string | null {
  const old = extractBlock(text);
  if (old !== null) return text.replace(old, block);
  const lines = text.split('\n');
  const filter = lines.findIndex((l) => l.trim() === '*filter');
  if (filter < 0) return null;
  const commit = lines.findIndex((l, i) => i > filter && l.trim() === 'COMMIT');
  if (commit < 0) return null;
  lines.splice(commit, 0, block, '');
  return lines.join('\n');
}

/** Pure: the text with the marked block (and the blank line after it) removed. */
export function removeBlock(text: string): string {
  const old = extractBlock(text);
  if (old === null) return text;
  return text.replace(`${old}\n\n`, '').replace(`${old}\n`, '').replace(old, '');
}

/** iptables policy (as /etc/default/ufw and the kernel say it) -> ufw's word for it; unknown: allow, ufw's own default. */
const UFW_POLICY_WORD: Record<string, 'allow' | 'deny' | 'reject'> = { ACCEPT: 'allow', DROP: 'deny', REJECT: 'reject' };
export const ufwPolicyWord = (policy: string): 'allow' | 'deny' | 'reject' => UFW_POLICY_WORD[policy] ?? 'allow';
