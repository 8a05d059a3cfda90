/**
 * What the Public Suffix List (ICANN and private sections, as tldts bundles
 * it) holds below a zone. A wildcard's zone must be inside one registrable
 * domain: under "amazonaws.com" the list has hundreds of suffixes (each
 * "compute-1.amazonaws.com" name is anyone's EC2 address), so "*.amazonaws.com"
 * spans many owners. tldts's API answers "what is the suffix of this name" but
 * not "are there suffixes below this zone", so both questions walk its trie
 * here (and the bundle carries the list once, not twice). Pure.
 */
import * as trie from 'tldts/dist/cjs/src/data/trie.js';

let labelStart: Uint32Array | null = null;
/** where each edge's label starts in labelText (tldts derives the same at load; done here only when asked) */
function starts(): Uint32Array {
  if (labelStart) return labelStart;
  const s = new Uint32Array(trie.edgeLength.length);
  for (let e = 0, at = 0; e < s.length; e++) {
    s[e] = at;
    at += trie.edgeLength[e]!;
  }
  return (labelStart = s);
}
const label = (e: number) => trie.labelText.slice(starts()[e], starts()[e]! + trie.edgeLength[e]!);
const edges = function* (node: number) {
  for (let e = trie.edgeStart[node]!; e < trie.edgeStart[node + 1]!; e++) yield e;
};

/** The trie node for `name` below `root` (labels matched exactly, "*" only as the label "*"), or -1. */
function nodeOf(root: number, labels: readonly string[]): number {
  let node = root;
  for (let i = labels.length - 1; i >= 0; i--) {
    let next = -1;
    for (const e of edges(node)) {
      if (label(e) === labels[i]) {
        next = trie.edgeChild[e]!;
        break;
      }
    }
    if (next < 0) return -1;
    node = next;
  }
  return node;
}
const isRule = (root: number, labels: readonly string[]) => {
  const n = nodeOf(root, labels);
  return n >= 0 && trie.nodeFlags[n]! !== 0;
};

/**
 * Is `name` itself a public suffix (the list's longest matching rule covers all of it)?
 * Yes when the list has the rule "name" or "*.parent" and no exception "!name"; a single
 * label is one by the list's default rule "*".
 */
export function isPublicSuffix(name: string): boolean {
  const labels = name.split('.');
  if (labels.length === 1) return true;
  if (isRule(trie.exceptionsRoot, labels)) return false;
  return isRule(trie.rulesRoot, labels) || isRule(trie.rulesRoot, ['*', ...labels.slice(1)]);
}

/**
 * Suffixes the list holds strictly below `zone` (lowercase ASCII, no trailing dot): their
 * number and up to `examples` of them ("*.compute.amazonaws.com" for a wildcard rule).
 */
export function suffixesBelow(zone: string, examples = 2): { count: number; examples: string[] } {
  const node = nodeOf(trie.rulesRoot, zone.split('.'));
  if (node < 0) return { count: 0, examples: [] };
  const out = { count: 0, examples: [] as string[] };
  const walk = (n: number, below: string) => {
    for (const e of edges(n)) {
      const name = `${label(e)}.${below}`;
      if (trie.nodeFlags[trie.edgeChild[e]!]) {
        out.count++;
        if (out.examples.length < examples) out.examples.push(name);
      }
      walk(trie.edgeChild[e]!, name);
    }
  };
  walk(node, zone);
  return out;
}

/**
 * Services that answer any name below them with the IP written in the name
 * ("203-0-113-7.sslip.io"): not on the list (one operator owns each), yet a wildcard
 * under one reaches every address. The ones known here; see docs/dns-gate.md for the limit.
 */
export const IP_ECHO_ZONES = ['nip.io', 'sslip.io', 'xip.io', 'traefik.me', 'nip.direct'] as const;

export function ipEchoZone(zone: string): string | undefined {
  return IP_ECHO_ZONES.find((z) => zone === z || zone.endsWith(`.${z}`));
}
