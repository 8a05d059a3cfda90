import { parseCidr, type Family } from '../net/ip.js';
import { setEntry, sortEntries, UFW_PING6_RULE } from './desired.js';
import { PreconditionError } from '../errors.js';
import { BLOCK_BEGIN, BLOCK_END, HOST_CHAIN, REFUSED_HOST_SET, SET, TMP_SET, UFW_FORWARD, UFW_OUTPUT } from './kernel-names.js';
import type { NftObserved } from './nft.js';

/** What is in the kernel and ufw files now. Parsed from the tools' own output by pure functions. */
export interface Observed {
  /** false: could not read (not root): the plan assumes nothing of egressfw is installed */
  readable: boolean;
  /** recordExists: the host's record set of refused connections (src/plan/audit-rules.ts) is there */
  sets: Record<Family, { exists: boolean; entries: string[]; tmpExists: boolean; recordExists: boolean }>;
  tables: Record<Family, FilterTable>;
  /** egressfw's nftables table; null: it does not exist */
  nft: NftObserved | null;
  ufw: UfwObserved | null;
  /** net.ipv4.ip_forward / net.ipv6.conf.all.forwarding; absent or null: not read */
  forwarding?: Record<Family, boolean | null>;
}

export interface FilterTable {
  /** chain name -> its rules as iptables-save prints them ("-A CHAIN ...") */
  chains: Map<string, string[]>;
  /** built-in chain name -> its policy (ACCEPT, DROP) */
  policies: Map<string, string>;
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
  const policies = new Map<string, string>();
  let inFilter = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) inFilter = line === '*filter';
    if (!inFilter) continue;
    const decl = /^:(\S+) /.exec(line);
    if (decl) chains.set(decl[1]!, chains.get(decl[1]!) ?? []);
    const policy = /^:(\S+) (ACCEPT|DROP) /.exec(line);
    if (policy) policies.set(policy[1]!, policy[2]!);
    const rule = /^-A (\S+) /.exec(line);
    if (rule) {
      const list = chains.get(rule[1]!) ?? [];
      list.push(line.trimEnd());
      chains.set(rule[1]!, list);
    }
  }
  return { chains, policies };
}

/** A /proc/sys boolean ("1\n") -> true/false; null when it could not be read. */
export function parseSysctlFlag(text: string | null): boolean | null {
  const v = text?.trim();
  return v === '1' ? true : v === '0' ? false : null;
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

// Any line that looks like one of our markers counts, so a stray or hand-typed one is never skipped.
const MARKER = /^\s*#\s*(BEGIN|END)\s+EGRESSFW\b/i;
const UFW_OUTPUT_CHAINS = new Set(Object.values(UFW_OUTPUT));
/** the DNS gate's lines: redirected container DNS through ufw's INPUT (src/plan/gate.ts) */
const UFW_INPUT_CHAINS = new Set(['ufw-before-input', 'ufw6-before-input']);
/** the forward line: what egressfw's table marked passes ufw's FORWARD DROP (src/plan/desired.ts) */
const UFW_FORWARD_CHAINS = new Set<string>(Object.values(UFW_FORWARD));
/** A line egressfw writes inside its block: the chain declaration or a rule carrying our comment. */
function ourLine(line: string): boolean {
  if (line === `:${HOST_CHAIN} - [0:0]`) return true;
  // the one insert: the ping6 refusal at the top of ufw6-before-output (src/plan/desired.ts UFW_PING6_RULE)
  if (line === UFW_PING6_RULE) return true;
  const m = /^-A (\S+) .*-m comment --comment "?egressfw[ "]/.exec(line);
  return m !== null && (m[1] === HOST_CHAIN || UFW_OUTPUT_CHAINS.has(m[1] as never) || UFW_INPUT_CHAINS.has(m[1]!) || UFW_FORWARD_CHAINS.has(m[1]!));
}

/**
 * The marked block of a before.rules text, or null when there is none.
 * Everything between the markers is replaced or deleted by sync and
 * uninstall, so anything but exactly one well-formed block (one BEGIN, one
 * END after it, only our lines between) stops egressfw with the file and
 * line: a stray marker must never take the user's own rules with it.
 */
export function extractBlock(text: string, file = 'before.rules'): string | null {
  const lines = text.split('\n');
  const begins: number[] = [];
  const ends: number[] = [];
  lines.forEach((l, i) => {
    const m = MARKER.exec(l);
    if (m) (m[1]!.toUpperCase() === 'BEGIN' ? begins : ends).push(i);
  });
  if (begins.length === 0 && ends.length === 0) return null;
  const at = (list: number[]) => list.map((i) => i + 1).join(', ');
  const fix = 'Fix the file by hand (keep your own rules outside the markers; delete stray marker lines), then run egressfw again. Nothing was changed.';
  const stop = (where: string, what: string) => new PreconditionError(`${file} ${where}: ${what}. ${fix}`);
  if (begins.length > 1 || ends.length > 1) {
    throw stop(`lines ${at([...begins, ...ends].sort((a, b) => a - b))}`, `egressfw keeps exactly one block there, found ${begins.length} "${BLOCK_BEGIN}" and ${ends.length} "${BLOCK_END}" lines`);
  }
  const [b] = begins;
  const [e] = ends;
  if (b === undefined) throw stop(`line ${e! + 1}`, `"${BLOCK_END}" without "${BLOCK_BEGIN}"`);
  if (e === undefined) throw stop(`line ${b + 1}`, `"${BLOCK_BEGIN}" without "${BLOCK_END}"`);
  if (e < b) throw stop(`line ${e + 1}`, `"${BLOCK_END}" comes before "${BLOCK_BEGIN}" (line ${b + 1})`);
  if (!lines[b]!.startsWith(BLOCK_BEGIN)) throw stop(`line ${b + 1}`, `${JSON.stringify(lines[b])} is not a marker egressfw writes`);
  if (lines[e] !== BLOCK_END) throw stop(`line ${e + 1}`, `${JSON.stringify(lines[e])} is not a marker egressfw writes`);
  for (let i = b + 1; i < e; i++) {
    if (!ourLine(lines[i]!)) throw stop(`line ${i + 1}`, `${JSON.stringify(lines[i]!.slice(0, 200))} is inside the egressfw block but not written by egressfw`);
  }
  return lines.slice(b, e + 1).join('\n');
}

export function nothingInstalled(): Observed {
  const emptySet = { exists: false, entries: [], tmpExists: false, recordExists: false };
  const table = (): FilterTable => ({ chains: new Map([['FORWARD', []]]), policies: new Map() });
  return { readable: false, sets: { 4: { ...emptySet }, 6: { ...emptySet } }, tables: { 4: table(), 6: table() }, nft: null, ufw: null };
}

export function setState(names: Set<string>, saves: Record<Family, string>): Observed['sets'] {
  const one = (f: Family) => ({ exists: names.has(SET[f]), entries: parseIpsetSave(saves[f], SET[f]), tmpExists: names.has(TMP_SET[f]), recordExists: names.has(REFUSED_HOST_SET[f]) });
  return { 4: one(4), 6: one(6) };
}
