/**
 * Small evaluators of exported objects, written from each engine's documented semantics (not from
 * src/export), and egressfw's own decision for the same question. The equivalence test asks all
 * three: may this workload reach this destination on this port?
 *
 * Cilium (docs.cilium.io policy language; pkg/fqdn/matchpattern): rules that select an endpoint add
 * up; any egress rule puts it in default deny; egressDeny wins over every allow; a toFQDNs name is
 * reachable only if its lookup went through the DNS proxy (a DNS rule with rules.dns allowing it);
 * matchPattern "*" is [-a-zA-Z0-9_]* (one label); CIDR rules match destinations outside the cluster.
 * Antrea (docs/antrea-network-policy.md; pkg/agent/controller/networkpolicy/fqdn.go): a policy's
 * rules in order, the first match decides; fqdn "*" is ".*" (any depth); the agent learns a name's
 * addresses from the DNS responses of the pods it applies to, so their DNS must be allowed.
 */
import ipaddr from 'ipaddr.js';
import type { Config } from '../../src/config/load.js';
import { GatePolicy } from '../../src/gate/policy.js';
import { forbiddenReason, parseIp } from '../../src/net/ip.js';
import { assignPolicy, COMPOSE_PROJECT, COMPOSE_SERVICE, HOST_POLICY, NO_POLICY, policiesInUse } from '../../src/policy/assign.js';

export type Proto = 'tcp' | 'udp';
/** a connection to an address the pod got for `name` (or to a bare address), or a DNS lookup of `name` */
export type Dest = { kind: 'name'; name: string; ip: string } | { kind: 'ip'; ip: string } | { kind: 'lookup'; name: string };
export interface Workload {
  /** compose project / service, and any other labels: the same on the container and the pod */
  project?: string;
  service?: string;
  labels?: Record<string, string>;
  /** the container's name (no pod counterpart) */
  name?: string;
  namespace?: string;
}
export interface Query {
  dest: Dest;
  port: number;
  proto: Proto;
}

type Obj = { kind: string; metadata: { name: string; namespace?: string }; spec?: Rec; specs?: Rec[] };
type Rec = Record<string, any>;

const addrs = new Map<string, ipaddr.IPv4 | ipaddr.IPv6>();
const nets = new Map<string, [ipaddr.IPv4 | ipaddr.IPv6, number]>();
const inCidr = (ip: string, cidr: string) => {
  let a = addrs.get(ip);
  if (!a) addrs.set(ip, (a = ipaddr.parse(ip)));
  let n = nets.get(cidr);
  if (!n) nets.set(cidr, (n = ipaddr.parseCIDR(cidr)));
  return a.kind() === n[0].kind() && a.match(n);
};

export function podLabels(w: Workload, map = { service: 'app.kubernetes.io/name', project: 'app.kubernetes.io/part-of' }): Record<string, string> {
  return { ...(w.labels ?? {}), ...(w.project ? { [map.project]: w.project } : {}), ...(w.service ? { [map.service]: w.service } : {}) };
}

/** Kubernetes label selector semantics. */
function selects(sel: Rec | undefined, labels: Record<string, string>): boolean {
  if (!sel) return true;
  for (const [k, v] of Object.entries((sel.matchLabels ?? {}) as Record<string, string>)) if (labels[k] !== v) return false;
  for (const e of (sel.matchExpressions ?? []) as Rec[]) {
    const v = labels[e.key];
    const ok =
      e.operator === 'In' ? v !== undefined && e.values.includes(v)
      : e.operator === 'NotIn' ? v === undefined || !e.values.includes(v)
      : e.operator === 'Exists' ? v !== undefined
      : e.operator === 'DoesNotExist' ? v === undefined
      : false;
    if (!ok) return false;
  }
  return true;
}

// ---- Cilium

/** Cilium sees a pod's labels as k8s:KEY plus k8s:io.kubernetes.pod.namespace; a selector key without a source matches any. */
function ciliumLabels(w: Workload): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...podLabels(w), 'io.kubernetes.pod.namespace': w.namespace ?? 'default' })) {
    out[`k8s:${k}`] = v;
  }
  return out;
}
/** a key without a source ("app", "any:app") is any source; egressfw's pods only have k8s labels */
const ciliumKey = (k: string) => (k.startsWith('k8s:') ? k : `k8s:${k.replace(/^any:/, '')}`);
const ciliumSelects = (sel: Rec, w: Workload) =>
  selects(
    {
      matchLabels: Object.fromEntries(Object.entries((sel.matchLabels ?? {}) as Record<string, string>).map(([k, v]) => [ciliumKey(k), v])),
      matchExpressions: ((sel.matchExpressions ?? []) as Rec[]).map((e) => ({ ...e, key: ciliumKey(e.key) })),
    },
    ciliumLabels(w),
  );

export function ciliumPatternMatches(pattern: string, name: string): boolean {
  const fqdn = (s: string) => (s.endsWith('.') ? s : `${s}.`).toLowerCase();
  if (pattern === '*') return /^([-a-z0-9_]+\.)+$/.test(fqdn(name));
  const re = fqdn(pattern).replace(/\./g, '[.]').replace(/\*/g, '[-a-zA-Z0-9_]*');
  return new RegExp(`^${re}$`).test(fqdn(name));
}
const ciliumFqdn = (sel: Rec, name: string) =>
  sel.matchName !== undefined ? `${String(sel.matchName).replace(/\.$/, '').toLowerCase()}` === name.toLowerCase() : ciliumPatternMatches(sel.matchPattern, name);

const ciliumPorts = (toPorts: Rec[] | undefined, port: number, proto: Proto) =>
  !toPorts || toPorts.some((tp) => !tp.ports || (tp.ports as Rec[]).some((p) => Number(p.port) === port && (p.protocol === 'ANY' || p.protocol === proto.toUpperCase())));

const isKubeDns = (peer: Rec) => ciliumSelects(peer, { namespace: 'kube-system', labels: { 'k8s-app': 'kube-dns' } });

const cidrRuleMatches = (set: Rec[], ip: string) => set.some((c) => inCidr(ip, c.cidr) && !(c.except ?? []).some((x: string) => inCidr(ip, x)));

function ciliumRules(objects: Obj[], w: Workload): Rec[] {
  return objects
    .filter((o) => o.kind === 'CiliumClusterwideNetworkPolicy' || (o.metadata.namespace ?? 'default') === (w.namespace ?? 'default'))
    .flatMap((o) => (o.specs ?? [o.spec!]))
    .filter((r) => ciliumSelects(r.endpointSelector, w));
}

export function ciliumAllows(objects: Obj[], w: Workload, q: Query): boolean {
  const rules = ciliumRules(objects, w);
  if (rules.length === 0) return true;
  const defaultDeny = rules.some((r) => r.egress || r.egressDeny || r.enableDefaultDeny?.egress);
  const denied = rules.some((r) =>
    ((r.egressDeny ?? []) as Rec[]).some((d) => {
      if (!ciliumPorts(d.toPorts, q.port, q.proto)) return false;
      if ((d.toEntities ?? []).includes('all')) return true;
      if (d.toCIDRSet && q.dest.kind !== 'lookup') return cidrRuleMatches(d.toCIDRSet, q.dest.ip);
      return false;
    }),
  );
  if (denied) return false;
  const egress = rules.flatMap((r) => (r.egress ?? []) as Rec[]);
  const lookupAllowed = (name: string) =>
    egress.some((e) => (e.toEndpoints ?? []).some(isKubeDns) && (e.toPorts ?? []).some((tp: Rec) => (tp.ports as Rec[]).some((p) => Number(p.port) === 53) && (tp.rules?.dns ?? []).some((s: Rec) => ciliumFqdn(s, name))));
  const allowed = egress.some((e) => {
    if (!ciliumPorts(e.toPorts, q.port, q.proto)) return false;
    const d = q.dest;
    if (e.toEndpoints) return d.kind === 'lookup' && e.toEndpoints.some(isKubeDns) && (e.toPorts ?? []).some((tp: Rec) => !tp.rules?.dns || tp.rules.dns.some((s: Rec) => ciliumFqdn(s, d.name)));
    if (e.toFQDNs) return d.kind === 'name' && e.toFQDNs.some((s: Rec) => ciliumFqdn(s, d.name)) && lookupAllowed(d.name);
    if (e.toCIDRSet) return d.kind !== 'lookup' && cidrRuleMatches(e.toCIDRSet, d.ip);
    if (e.toEntities) return (e.toEntities as string[]).includes('all') || (d.kind !== 'lookup' && e.toEntities.includes('world'));
    return false; // {}: selects no peer
  });
  return allowed || !defaultDeny;
}

// ---- Antrea

export function antreaFqdnMatches(expr: string, name: string): boolean {
  const e = expr.toLowerCase();
  if (!e.includes('*')) return e === name.toLowerCase();
  return new RegExp(`^${e.replace(/\./g, '[.]').replace(/\*/g, '.*')}$`).test(name.toLowerCase());
}

function antreaApplies(o: Obj, w: Workload): boolean {
  const nsLabels = { 'kubernetes.io/metadata.name': w.namespace ?? 'default' };
  return ((o.spec!.appliedTo ?? []) as Rec[]).some((a) => selects(a.podSelector, podLabels(w)) && selects(a.namespaceSelector, nsLabels));
}

function antreaPeer(peer: Rec, d: Dest, dnsSeen: (name: string) => boolean): boolean {
  if (peer.fqdn !== undefined) return d.kind === 'name' && antreaFqdnMatches(peer.fqdn, d.name) && dnsSeen(d.name);
  if (peer.ipBlock) return d.kind !== 'lookup' && inCidr(d.ip, peer.ipBlock.cidr) && !(peer.ipBlock.except ?? []).some((x: string) => inCidr(d.ip, x));
  if (peer.podSelector || peer.namespaceSelector) {
    // the only pod peer egressfw writes is the cluster DNS
    return d.kind === 'lookup' && selects(peer.podSelector, { 'k8s-app': 'kube-dns' }) && selects(peer.namespaceSelector, { 'kubernetes.io/metadata.name': 'kube-system' });
  }
  return false;
}

export function antreaAllows(objects: Obj[], w: Workload, q: Query): boolean {
  const applied = objects.filter((o) => antreaApplies(o, w)).sort((a, b) => a.spec!.priority - b.spec!.priority);
  const decide = (qq: Query): boolean => {
    for (const o of applied) {
      for (const r of o.spec!.egress as Rec[]) {
        const portOk = !r.ports || (r.ports as Rec[]).some((p) => p.port === qq.port && p.protocol === qq.proto.toUpperCase());
        const peerOk = !r.to || (r.to as Rec[]).some((p) => antreaPeer(p, qq.dest, (name) => decide({ dest: { kind: 'lookup', name }, port: 53, proto: 'udp' })));
        if (portOk && peerOk) return r.action === 'Allow';
      }
    }
    return true;
  };
  return decide(q);
}

// ---- egressfw

/** What egressfw itself decides for a container: its policy's lists, the gate's wildcard rule, the rebinding guard, ipv6. */
export function egressfwAllows(config: Config, w: Workload, q: Query): boolean {
  const labels = { ...(w.labels ?? {}), ...(w.project ? { [COMPOSE_PROJECT]: w.project } : {}), ...(w.service ? { [COMPOSE_SERVICE]: w.service } : {}) };
  const policy = policiesInUse(config) ? assignPolicy(config, { name: w.name ?? 'x', labels }).policy : HOST_POLICY;
  if (policy === NO_POLICY) return false;
  const list = policy === HOST_POLICY ? config : config.policies.find((p) => p.name === policy)!;
  const gate = new GatePolicy(list.domains, list.wildcards);
  const d = q.dest;
  if (d.kind === 'lookup') return gate.match(d.name) !== null;
  const ip = parseIp(d.ip)!;
  if (ip.family === 6 && !config.ipv6) return false;
  const portOk = (ports: { port: number; proto: string }[]) => ports.some((p) => p.port === q.port && p.proto === q.proto);
  if (list.cidrs.some((c) => inCidr(d.ip, c.cidr) && portOk(c.ports))) return true;
  if (d.kind !== 'name') return false;
  const m = gate.match(d.name);
  return m !== null && portOk(m.ports) && (m.allowPrivate || forbiddenReason(ip) === null);
}
