/**
 * Which policy a DNS query's source has, for the gate (issue 18). The gate reads the kernel's own
 * source -> policy map (policy4/policy6, written by sync and the daemon): what the gate answers
 * and what the packet path allows are decided by the same table, with no second copy to drift.
 * Why not a file from the daemon: the map is already there, always current, and `nft -j list map`
 * of a thousand members takes a few milliseconds.
 */
import { parseIp } from '../net/ip.js';
import { NFT, POLICY_NFT } from '../plan/kernel-names.js';
import { parseNftList } from '../plan/nft.js';
import { HOST_POLICY } from '../policy/assign.js';

/** A decision is never taken on a snapshot older than this: an address Docker reuses is seen within it. */
export const MAX_AGE_MS = 1000;

/** Pure: `nft -j list map` texts (policy4, policy6) -> address -> policy name ("host" for pol-host). */
export function parseSourceMap(texts: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const t of texts) {
    if (!t.trim()) continue;
    for (const members of parseNftList(t).maps.values()) {
      for (const m of members) {
        const [addr, verdict] = m.split(' : ');
        const chain = verdict?.replace(/^jump /, '') ?? '';
        if (addr && chain.startsWith(POLICY_NFT.chainPrefix)) out.set(addr, chain.slice(POLICY_NFT.chainPrefix.length));
      }
    }
  }
  return out;
}

export interface SourcesDeps {
  /** the two maps' listings ('' for a map that is not there) */
  readMaps: () => Promise<string[]>;
  /** this host's own addresses (its queries get the host's list) */
  localAddresses: () => string[];
  nowMs: () => number;
}

export class SourcePolicies {
  private map = new Map<string, string>();
  private readAt = -Infinity;
  private reading: Promise<void> | null = null;

  constructor(private readonly deps: SourcesDeps) {}

  /**
   * The one decision: the policy whose list answers this source, or null (REFUSED). The host
   * (loopback, its own addresses) gets the host's list; a source the map does not know gets nothing.
   */
  async policyOf(client: string): Promise<string | null> {
    const ip = parseIp(client.replace(/^::ffff:(?=\d+\.)/, ''))?.text;
    if (!ip) return null;
    if (ip.startsWith('127.') || ip === '::1') return HOST_POLICY;
    if (this.deps.nowMs() - this.readAt > MAX_AGE_MS) await this.refresh();
    const p = this.map.get(ip);
    if (p !== undefined) return p;
    if (this.deps.localAddresses().includes(ip)) return HOST_POLICY;
    return null;
  }

  /** One read at a time; queries meanwhile wait for it. */
  refresh(): Promise<void> {
    this.reading ??= this.deps
      .readMaps()
      .then((texts) => {
        this.map = parseSourceMap(texts);
        this.readAt = this.deps.nowMs();
      })
      .finally(() => {
        this.reading = null;
      });
    return this.reading;
  }
}

export const MAP_LIST_ARGV = (f: 4 | 6) => ['nft', '-j', 'list', 'map', NFT.family, NFT.table, POLICY_NFT.map[f]];
