/**
 * The export model as CiliumNetworkPolicy (or CiliumClusterwideNetworkPolicy) objects. Pure.
 *
 * Per policy one object; one rule (spec, or specs when egressfw's order needs several selectors)
 * per selector, each with the same egress:
 * - DNS to the cluster DNS on port 53 with `rules.dns` listing the policy's names: Cilium learns
 *   a toFQDNs name's addresses only from answers its DNS proxy saw, and refuses other lookups;
 * - `toFQDNs` (matchName / matchPattern) per group of names sharing ports, then `toCIDRSet`;
 * - `egressDeny` for what egressfw refuses whatever the allowances: the rebinding guard's ranges
 *   (except the networks the policy lists) and, with `ipv6: false`, all of IPv6.
 * Default deny is explicit (enableDefaultDeny.egress), and ingress is left alone.
 */
import type { Port } from '../config/schema.js';
import { parseCidr } from '../net/ip.js';
import { HOST_POLICY, NO_POLICY } from '../policy/assign.js';
import { selectorOf, type ExportModel, type PolicyAllow, type Term } from './model.js';
import { cidrContains, guardRanges, objectName, type GuardRange, MANAGED_BY, type K8sObject, type RenderOptions, type Rendered } from './render.js';

export const CILIUM_API = 'cilium.io/v2';
/** the label every pod of a namespace carries in Cilium's view */
export const CILIUM_NAMESPACE_LABEL = 'k8s:io.kubernetes.pod.namespace';
/** CoreDNS and kube-dns pods both carry k8s-app=kube-dns in kube-system */
export const CILIUM_DNS_PEER = { matchLabels: { [CILIUM_NAMESPACE_LABEL]: 'kube-system', 'k8s:k8s-app': 'kube-dns' } };
/** Cilium's limit of ports per toPorts entry */
const MAX_PORTS = 40;

const ciliumPorts = (ports: Port[]) => {
  const out: { ports: { port: string; protocol: string }[] }[] = [];
  for (let i = 0; i < ports.length; i += MAX_PORTS) {
    out.push({ ports: ports.slice(i, i + MAX_PORTS).map((p) => ({ port: String(p.port), protocol: p.proto.toUpperCase() })) });
  }
  return out;
};

function egressOf(allow: PolicyAllow): unknown[] {
  const egress: unknown[] = [];
  const lookups: unknown[] = [];
  for (const g of allow.names) {
    // egressfw's "*.example.com" (any depth) is Cilium's "*.example.com" (one label): narrower, noted
    const fqdns = [...g.names.map((n) => ({ matchName: n })), ...g.wildcards.map((w) => ({ matchPattern: w }))];
    lookups.push(...fqdns);
    egress.push({ toFQDNs: fqdns, toPorts: ciliumPorts(g.ports) });
  }
  for (const g of allow.cidrs) egress.push({ toCIDRSet: g.cidrs.map((cidr) => ({ cidr })), toPorts: ciliumPorts(g.ports) });
  if (lookups.length > 0) {
    egress.unshift({ toEndpoints: [CILIUM_DNS_PEER], toPorts: [{ ports: [{ port: '53', protocol: 'ANY' }], rules: { dns: lookups } }] });
  }
  return egress;
}

/**
 * What egressfw refuses even where an allowance matches: the rebinding guard's ranges (a name's
 * private answers; allowPrivate cannot be said per name in Cilium, so they are refused for every
 * name: narrower) except the networks the policy lists itself, and IPv6 when it is off.
 */
export function denyCidrs(allow: PolicyAllow, ipv6: boolean): GuardRange[] {
  const listed = allow.cidrs.flatMap((g) => g.cidrs);
  const out: GuardRange[] = [];
  for (const g of guardRanges(ipv6)) {
    const family = parseCidr(g.cidr)!.family;
    // with ipv6: false even the listed IPv6 networks are refused, as on this host
    const keep = !ipv6 && family === 6 ? [] : listed.filter((c) => parseCidr(c)!.family === family);
    if (keep.some((c) => cidrContains(c, g.cidr))) continue;
    const holes = g.except ?? [];
    const except = [...holes, ...keep.filter((c) => cidrContains(g.cidr, c) && !holes.some((h) => cidrContains(h, c)))];
    out.push({ cidr: g.cidr, ...(except.length ? { except } : {}) });
  }
  return out;
}

function endpointSelector(term: Term, opts: RenderOptions): Record<string, unknown> {
  const sel = selectorOf(term);
  if (!opts.clusterWide) return sel;
  // cluster-wide: never the cluster's own DNS and network plumbing in kube-system
  const notSystem = { key: CILIUM_NAMESPACE_LABEL, operator: 'NotIn', values: ['kube-system'] };
  return { ...sel, matchExpressions: [...(sel.matchExpressions ?? []), notSystem] };
}

export function renderCilium(model: ExportModel, opts: RenderOptions): Rendered {
  const objects: K8sObject[] = [];
  for (const s of model.selections) {
    const allow = model.allows.get(s.policy)!;
    const rules = s.terms.map((term) => {
      const base = {
        endpointSelector: endpointSelector(term, opts),
        enableDefaultDeny: { egress: true, ingress: false },
      };
      if (s.policy === NO_POLICY) return { ...base, egressDeny: [{ toEntities: ['all'] }] };
      const egress = egressOf(allow);
      const deny = denyCidrs(allow, model.ipv6);
      return {
        ...base,
        // a policy that allows nothing still needs an egress section to be a valid rule
        egress: egress.length ? egress : [{}],
        ...(deny.length ? { egressDeny: [{ toCIDRSet: deny }] } : {}),
      };
    });
    const described = rules.map((r, i) => ({ description: `egressfw ${s.policy === HOST_POLICY ? 'top-level allow list' : `policy ${s.policy}`}${rules.length > 1 ? ` (selector ${i + 1} of ${rules.length})` : ''}`, ...r }));
    objects.push({
      apiVersion: CILIUM_API,
      kind: opts.clusterWide ? 'CiliumClusterwideNetworkPolicy' : 'CiliumNetworkPolicy',
      metadata: { name: objectName(s.policy), ...(opts.clusterWide ? {} : { namespace: opts.namespace }), labels: { ...MANAGED_BY } },
      ...(described.length === 1 ? { spec: described[0] } : { specs: described }),
    });
  }
  return { objects, notes: ciliumNotes(model) };
}

function ciliumNotes(model: ExportModel): string[] {
  const notes: string[] = [];
  if ([...model.allows.values()].some((a) => a.names.length > 0)) {
    notes.push(
      "DNS: the DNS rule answers only the listed names, as the DNS gate does; Cilium refuses the others with REFUSED, which stops musl (Alpine) resolvers that try the cluster's search domains first (ndots: 5): run the agent with --tofqdns-dns-reject-response-code=nameError, or give those pods dnsConfig ndots: 1",
    );
  }
  const wildcards = [...new Set([...model.allows.values()].flatMap((a) => a.names.flatMap((g) => g.wildcards)))];
  if (wildcards.length) {
    notes.push(
      `wildcards (${wildcards.join(', ')}): egressfw's "*.example.com" matches names at any depth below example.com; Cilium's matchPattern "*" matches within one label, so only names exactly one label below are allowed (a.example.com, not a.b.example.com): narrower; add "*.*.example.com" patterns by hand for deeper names you need`,
    );
  }
  const priv = [...model.allows.values()].flatMap((a) => a.names.filter((g) => g.allowPrivate).flatMap((g) => [...g.names, ...g.wildcards]));
  if (priv.length) {
    notes.push(`allowPrivate (${priv.join(', ')}): Cilium cannot exempt one name from the egressDeny of private and special-purpose ranges, so their private answers are refused too: narrower; list those networks as cidr entries if they are needed`);
  }
  return notes;
}
