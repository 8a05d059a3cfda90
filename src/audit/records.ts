import { parseIp, type Family } from '../net/ip.js';

/**
 * One element of a kernel record set, as read: a (source, destination,
 * protocol, port) tuple of connections that were refused, or would have been
 * (audit), with its counter. Pure parsers of the tools' own output.
 */
export interface KernelRecord {
  family: Family;
  /** container-side source address (canonical text), or HOST for the host's own connections */
  src: string;
  dst: string;
  /** tcp, udp, icmp, gre, ... or a protocol number */
  proto: string;
  /** destination port; 0 for protocols without ports; ICMP: the type as ipset names it */
  port: string;
  /** NEW packets counted: connection attempts */
  packets: number;
  bytes: number;
  /** seconds from the kernel's last update of the element to the read (nft: `update` refreshes the timeout) */
  lastAgo?: number;
  /** seconds from the element's creation to the read (ipset: `-j SET` without --exist never refreshes it) */
  addedAgo?: number;
  /**
   * the kernel's own port value when `port` was normalised: nft's `th dport` reads two bytes of any
   * transport header, for ICMP its checksum; the element is tracked by it, reported as port 0
   */
  rawPort?: string;
}

/** Protocols with ports at `th dport`; for the others the value means nothing. */
export const PORT_PROTOS = new Set(['tcp', 'udp', 'sctp', 'dccp', 'udplite']);

export const HOST = 'host';

/** What the report groups and the history tracks counters by. */
export const recordKey = (r: { src: string; dst: string; proto: string; port: string }) => `${r.src}|${r.dst}|${r.proto}|${r.port}`;

export interface SetRead {
  records: KernelRecord[];
  /** elements in the set, and how many it can hold (a full set stops recording new tuples) */
  elements: number;
  size: number | undefined;
}

export class RecordParseError extends Error {}

const asNumber = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : typeof v === 'string' && /^[0-9]+$/.test(v) ? Number(v) : undefined);

/**
 * `nft -j list set inet egressfw refused4|refused6`: elements
 * `saddr . daddr . l4proto . dport` with counter and expires (seconds; the
 * set's timeout minus expires is how long ago the element was last updated).
 * Accepts nft 1.0 (`{"elem": {"val": {"concat": [...]}, "expires", "counter"}}`)
 * and bare concat elements (no per-element data).
 */
export function parseNftRefusedSet(text: string): SetRead {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new RecordParseError(`nft printed no valid JSON (${(e as Error).message})`);
  }
  const items = (doc as { nftables?: unknown[] })?.nftables;
  if (!Array.isArray(items)) throw new RecordParseError('nft JSON has no "nftables" array');
  const set = items.map((i) => (i as { set?: Record<string, unknown> }).set).find((s) => s !== undefined);
  if (!set) throw new RecordParseError('nft JSON lists no set');
  const timeout = asNumber(set.timeout);
  const elems = Array.isArray(set.elem) ? (set.elem as unknown[]) : [];
  const records: KernelRecord[] = [];
  for (const raw of elems) {
    const wrapped = (raw as { elem?: Record<string, unknown> }).elem;
    const val = (wrapped ? wrapped.val : raw) as { concat?: unknown[] } | undefined;
    const parts = val?.concat;
    if (!Array.isArray(parts) || parts.length !== 4) continue;
    const src = parseIp(String(parts[0]));
    const dst = parseIp(String(parts[1]));
    if (!src || !dst || src.family !== dst.family) continue;
    const counter = (wrapped?.counter ?? {}) as { packets?: unknown; bytes?: unknown };
    const expires = asNumber(wrapped?.expires);
    const elTimeout = asNumber(wrapped?.timeout) ?? timeout;
    const proto = String(parts[2]);
    const port = String(asNumber(parts[3]) ?? parts[3]);
    const rec: KernelRecord = { family: src.family, src: src.text, dst: dst.text, proto, port, packets: asNumber(counter.packets) ?? 0, bytes: asNumber(counter.bytes) ?? 0 };
    if (!PORT_PROTOS.has(proto) && port !== '0') Object.assign(rec, { port: '0', rawPort: port });
    if (expires !== undefined && elTimeout !== undefined) rec.lastAgo = Math.max(0, elTimeout - expires);
    records.push(rec);
  }
  return { records, elements: elems.length, size: asNumber(set.size) };
}

/**
 * `ipset save egressfw-refused-host-v4|-v6`: `add NAME ADDR,PROTO:PORT timeout
 * N packets P bytes B` (ICMP as icmp:echo-request). The set's timeout minus
 * the element's remaining timeout is how long ago it was added.
 */
export function parseIpsetRefusedSet(text: string, name: string): SetRead {
  const records: KernelRecord[] = [];
  let setTimeout: number | undefined;
  let size: number | undefined;
  let elements = 0;
  for (const line of text.split('\n')) {
    const words = line.trim().split(/\s+/);
    if (words[1] !== name) continue;
    const opt = (key: string) => {
      const i = words.indexOf(key, 2);
      return i > 0 ? asNumber(words[i + 1]) : undefined;
    };
    if (words[0] === 'create') {
      setTimeout = opt('timeout');
      size = opt('maxelem');
      continue;
    }
    if (words[0] !== 'add' || !words[2]) continue;
    elements++;
    const m = /^([^,]+),([^:]+):(.+)$/.exec(words[2]);
    const dst = m ? parseIp(m[1]!) : null;
    if (!m || !dst) continue;
    const rec: KernelRecord = { family: dst.family, src: HOST, dst: dst.text, proto: m[2]!, port: m[3]!, packets: opt('packets') ?? 0, bytes: opt('bytes') ?? 0 };
    const left = opt('timeout');
    if (left !== undefined && setTimeout !== undefined) rec.addedAgo = Math.max(0, setTimeout - left);
    records.push(rec);
  }
  return { records, elements, size };
}

/**
 * The mode of the nft forward chain, from `nft -j list chain inet egressfw
 * forward`: its last rule accepts (audit) or rejects/drops (enforce); null
 * when the chain is missing or ends otherwise.
 */
export function nftChainMode(text: string): 'enforce' | 'audit' | null {
  let doc: { nftables?: { rule?: { expr?: Record<string, unknown>[] } }[] };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch {
    return null;
  }
  const rules = (doc.nftables ?? []).map((i) => i.rule).filter((r) => r !== undefined);
  const last = rules.at(-1)?.expr ?? [];
  const verdicts = last.map((e) => Object.keys(e)[0]);
  if (verdicts.includes('accept')) return 'audit';
  if (verdicts.includes('reject') || verdicts.includes('drop')) return 'enforce';
  return null;
}
