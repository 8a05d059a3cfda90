/**
 * What both engines' renderers share: options, object names, the notes on what does not carry
 * over, and the YAML stream (one document per object, the notes as a comment on top). Pure.
 */
import ipaddr from 'ipaddr.js';
import { stringify } from 'yaml';
import type { Config } from '../config/load.js';
import { REFUSED_V4_CIDRS } from '../net/ip.js';
import { HOST_POLICY } from '../policy/assign.js';
import { printable } from '../text.js';

export interface RenderOptions {
  /** namespace of the objects (Cilium) or of the pods they select (Antrea); unused with clusterWide */
  namespace: string;
  /** every namespace but kube-system */
  clusterWide: boolean;
}
export type K8sObject = Record<string, unknown> & { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> } };
export interface Rendered {
  objects: K8sObject[];
  /** engine-specific notes on what does not carry over */
  notes: string[];
}

export const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'egressfw' } as const;
/** a DNS-1123 label: policy names are at most 24 characters, so this stays far below 63 */
export const objectName = (policy: string) => `egressfw-${policy === HOST_POLICY ? 'host' : policy}`;

/** Does network `outer` contain network `inner` (same family)? */
export function cidrContains(outer: string, inner: string): boolean {
  const [oa, op] = ipaddr.parseCIDR(outer);
  const [ia, ip] = ipaddr.parseCIDR(inner);
  return oa.kind() === ia.kind() && ip >= op && ia.match(oa, op);
}

/** Is address `ip` in network `cidr`? */
export function ipInCidr(ip: string, cidr: string): boolean {
  const a = ipaddr.parse(ip);
  const [n, p] = ipaddr.parseCIDR(cidr);
  return a.kind() === n.kind() && a.match(n, p);
}

/** A destination range refused whatever the allowances, minus the holes in it that stay allowed. */
export interface GuardRange {
  cidr: string;
  except?: string[];
}

/**
 * The rebinding guard's ranges (src/net/ip.ts) as few engine rules. IPv4: exactly the guard's.
 * IPv6: the guard's list is hundreds of blocks (IPv4-mapped and NAT64 addresses are judged by the
 * IPv4 address inside); here everything outside global unicast 2000::/3 is refused, and 2001::/23
 * and 2002::/16 whole: slightly narrower (a test checks it covers every block the guard refuses).
 * With ipv6: false, all of IPv6.
 */
export function guardRanges(ipv6: boolean): GuardRange[] {
  return [...REFUSED_V4_CIDRS.map((cidr) => ({ cidr })), ...(ipv6 ? [{ cidr: '::/0', except: ['2000::/3'] }, { cidr: '2001::/23' }, { cidr: '2002::/16' }] : [{ cidr: '::/0' }])];
}

/** Pure: what the config says that no Kubernetes object can, whatever the engine. */
export function commonNotes(config: Config): string[] {
  const notes: string[] = [
    "the host's own traffic (ufw, chain EGRESSFW-HOST) is not exported: these objects restrict pods; a node's own egress needs the engine's host policies, written by hand",
    'traffic to other pods and Services in the cluster (a database, a cache) is refused by these objects unless another allowance in them covers it: egressfw never judged traffic on one Docker network; add those peers by hand (narrower until then)',
    'DNS goes to the cluster DNS (pods labelled k8s-app=kube-dns in kube-system) on port 53, not to dns.servers; with NodeLocal DNSCache, allow its address by hand',
  ];
  if (config.mode === 'audit') notes.push('mode: audit does not carry over: the objects enforce (watch first with the engine\'s own audit or logging: Cilium\'s policy audit mode, Antrea\'s enableLogging)');
  if (config.proxy.services.length || config.proxy.wildcards.length) {
    notes.push(`proxy (${[...config.proxy.services, ...config.proxy.wildcards].join(', ')}): egressfw proxy's compose override and nginx proxies do not carry over; proxy.wildcards are not exported (narrower): list them under allow to export them`);
  }
  if (!config.containers.enabled) notes.push('containers.enabled is false: this host does not judge containers at all; the objects still restrict the pods they select (narrower)');
  if (config.containers.exemptFrom.length) notes.push(`containers.exemptFrom (${config.containers.exemptFrom.join(', ')}): interfaces are not a pod property; not exported (narrower)`);
  notes.push(
    config.ipv6
      ? "rebinding guard: a name's answers in private and special-purpose ranges are refused (unless allowPrivate) by an explicit deny; for IPv6 everything outside 2000::/3, and 2001::/23 and 2002::/16 whole (IPv4-mapped and NAT64 addresses included): slightly narrower than this host"
      : 'ipv6: false: every IPv6 destination is refused, as on this host',
  );
  notes.push('staleGrace and dns.minTtl/maxTtl do not carry over: the engines follow the DNS answers\' TTLs');
  return notes;
}

/** YAML comment lines: every line printable (no terminal escapes) and prefixed, so no note can end the comment. */
const comment = (lines: string[]) => lines.map((l) => `# ${printable(l)}`.trimEnd()).join('\n');

/** Pure: the header comment and one YAML document per object. */
export function yamlStream(objects: K8sObject[], header: string[], notes: string[]): string {
  const top = comment([...header, ...(notes.length ? ['', 'Does not carry over the same way:', ...notes.map((n) => `- ${n}`)] : [])]);
  const docs = objects.map((o) => `---\n${stringify(o, { lineWidth: 0, aliasDuplicateObjects: false })}`);
  return `${top}\n${docs.join('')}`;
}
