import { parseCidr, type Family } from '../net/ip.js';
import { setEntry, sortEntries } from './desired.js';
import { BLOCK_BEGIN, BLOCK_END, SET, TMP_SET } from './names.js';
import type { NftObserved } from './nft.js';

/** What is in the kernel and ufw files now. Parsed from the tools' own output by pure functions. */
export interface Observed {
  /** false: could not read (not root): the plan assumes nothing of egressfw is installed */
  readable: boolean;
  sets: Record<Family, { exists: boolean; entries: string[]; tmpExists: boolean }>;
  tables: Record<Family, FilterTable>;
  /** egressfw's nftables table; null: it does not exist */
  nft: NftObserved | null;
  ufw: UfwObserved | null;
}

export interface FilterTable {
  /** chain name -> its rules as iptables-save prints them ("-A CHAIN ...") */
  chains: Map<string, string[]>;
}

export interface UfwObserved {
  enabled: boolean;
  /** DEFAULT_OUTPUT_POLICY from /etc/default/ufw: ACCEPT, DROP or REJECT */
  outputPolicy: string;
  files: Record<Family, string>;
}

/** `iptables-save -t filter` text -> chains and their rules. */
export function parseIptablesSave(text: string): FilterTable {
  const chains = new Map<string, string[]>();
  let inFilter = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) inFilter = line === '*filter';
    if (!inFilter) continue;
    const decl = /^:(\S+) /.exec(line);
    if (decl) chains.set(decl[1]!, chains.get(decl[1]!) ?? []);
    const rule = /^-A (\S+) /.exec(line);
    if (rule) {
      const list = chains.get(rule[1]!) ?? [];
      list.push(line.trimEnd());
      chains.set(rule[1]!, list);
    }
  }
  return { chains };
}

/** `ipset save NAME` text -> canonical sorted members (ipset prints in hash order). */
export function parseIpsetSave(text: string, name: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^add (\S+) (\S+?),(tcp|udp):([0-9]+)$/.exec(line.trim());
    if (!m || m[1] !== name) continue;
    const cidr = parseCidr(m[2]!);
    if (cidr) out.push(setEntry(cidr.text, { proto: m[3] as 'tcp' | 'udp', port: Number(m[4]) }));
  }
  return sortEntries(out);
}

/** Names of all sets from `ipset list -n`. */
export function parseIpsetNames(text: string): Set<string> {
  return new Set(text.split('\n').map((l) => l.trim()).filter(Boolean));
}

export function parseUfwDefaults(text: string): string {
  const m = /^DEFAULT_OUTPUT_POLICY="?([A-Z]+)"?/m.exec(text);
  return m?.[1] ?? 'ACCEPT';
}

export function parseUfwEnabled(ufwConf: string): boolean {
  return /^ENABLED=yes/m.test(ufwConf);
}

/** The marked block of a before.rules text, or null. */
export function extractBlock(text: string): string | null {
  const start = text.indexOf(`\n${BLOCK_BEGIN}`);
  const end = text.indexOf(`\n${BLOCK_END}`);
  if (start < 0 || end < start) return null;
  return text.slice(start + 1, end + 1 + BLOCK_END.length);
}

export function nothingInstalled(): Observed {
  const emptySet = { exists: false, entries: [], tmpExists: false };
  const table = (): FilterTable => ({ chains: new Map([['FORWARD', []]]) });
  return { readable: false, sets: { 4: { ...emptySet }, 6: { ...emptySet } }, tables: { 4: table(), 6: table() }, nft: null, ufw: null };
}

export function setState(names: Set<string>, saves: Record<Family, string>): Observed['sets'] {
  const one = (f: Family) => ({ exists: names.has(SET[f]), entries: parseIpsetSave(saves[f], SET[f]), tmpExists: names.has(TMP_SET[f]) });
  return { 4: one(4), 6: one(6) };
}
