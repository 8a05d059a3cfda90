/**
 * The export model as Antrea ClusterNetworkPolicy objects (crd.antrea.io/v1beta1). Pure.
 *
 * Antrea evaluates a policy's egress rules in order and the first that matches decides, so each
 * object lists, for the pods it applies to:
 *   IPv6 drop (ipv6: false) > DNS to the cluster DNS > the listed networks > names with
 *   allowPrivate > drop of the rebinding guard's ranges > the other names > drop everything else.
 * That order says exactly what egressfw does: a listed network is allowed whatever it holds, a
 * name's private answers only with allowPrivate, and nothing else. The final Drop is how Antrea
 * expresses default deny (FQDN rules are meant for Allow, followed by such a Drop).
 */
import type { Port } from '../config/schema.js';
import { NO_POLICY } from '../policy/assign.js';
import { selectorOf, type ExportModel, type NameGroup, type PolicyAllow, type Term } from './model.js';
import { guardRanges, objectName, MANAGED_BY, type K8sObject, type RenderOptions, type Rendered } from './render.js';

export const ANTREA_API = 'crd.antrea.io/v1beta1';
/** the label Kubernetes puts on every namespace */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';
export const ANTREA_DNS_PEER = { podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } }, namespaceSelector: { matchLabels: { [NAMESPACE_NAME_LABEL]: 'kube-system' } } };
/** Application tier (the default); egressfw's objects select disjoint pods, so one priority serves all */
export const ANTREA_PRIORITY = 100;

const antreaPorts = (ports: Port[]) => ports.map((p) => ({ protocol: p.proto.toUpperCase(), port: p.port }));

const fqdnRule = (name: string, g: NameGroup) => ({
  name,
  action: 'Allow',
  // egressfw's "*.example.com" and Antrea's agree: "*" spans any number of labels, the apex is not matched
  to: [...g.names, ...g.wildcards].map((fqdn) => ({ fqdn })),
  ports: antreaPorts(g.ports),
});

export function egressRules(allow: PolicyAllow, ipv6: boolean): Record<string, unknown>[] {
  const rules: Record<string, unknown>[] = [];
  if (!ipv6) rules.push({ name: 'no-ipv6', action: 'Drop', to: [{ ipBlock: { cidr: '::/0' } }] });
  if (allow.policy === NO_POLICY) return [...rules, { name: 'default-deny', action: 'Drop' }];
  if (allow.names.length) {
    rules.push({ name: 'dns', action: 'Allow', to: [ANTREA_DNS_PEER], ports: [{ protocol: 'UDP', port: 53 }, { protocol: 'TCP', port: 53 }] });
  }
  allow.cidrs.forEach((g, i) => rules.push({ name: `networks-${i + 1}`, action: 'Allow', to: g.cidrs.map((cidr) => ({ ipBlock: { cidr } })), ports: antreaPorts(g.ports) }));
  allow.names.filter((g) => g.allowPrivate).forEach((g, i) => rules.push(fqdnRule(`names-private-${i + 1}`, g)));
  // (IPv6 is already dropped above when it is off)
  const guard = guardRanges(true).filter((g) => ipv6 || !g.cidr.includes(':'));
  if (allow.names.some((g) => !g.allowPrivate)) rules.push({ name: 'rebinding-guard', action: 'Drop', to: guard.map((g) => ({ ipBlock: g })) });
  allow.names.filter((g) => !g.allowPrivate).forEach((g, i) => rules.push(fqdnRule(`names-${i + 1}`, g)));
  rules.push({ name: 'default-deny', action: 'Drop' });
  return rules;
}

function appliedTo(term: Term, opts: RenderOptions): Record<string, unknown> {
  return {
    podSelector: selectorOf(term),
    namespaceSelector: opts.clusterWide
      ? { matchExpressions: [{ key: NAMESPACE_NAME_LABEL, operator: 'NotIn', values: ['kube-system'] }] }
      : { matchLabels: { [NAMESPACE_NAME_LABEL]: opts.namespace } },
  };
}

export function renderAntrea(model: ExportModel, opts: RenderOptions): Rendered {
  const objects: K8sObject[] = model.selections.map((s) => ({
    apiVersion: ANTREA_API,
    kind: 'ClusterNetworkPolicy',
    metadata: { name: objectName(s.policy), labels: { ...MANAGED_BY } },
    spec: {
      priority: ANTREA_PRIORITY,
      appliedTo: s.terms.map((t) => appliedTo(t, opts)),
      egress: egressRules(model.allows.get(s.policy)!, model.ipv6),
    },
  }));
  const notes = [
    'DNS lookups: Antrea allows the pods to ask the cluster DNS for any name (it has no DNS name filter); only connections are limited to the listed names. With the DNS gate this host refuses other lookups: wider for lookups only, not for connections',
    `priority ${ANTREA_PRIORITY} in the application tier: policies in an earlier tier or with a lower priority number are evaluated first and can still allow more`,
  ];
  return { objects, notes };
}
