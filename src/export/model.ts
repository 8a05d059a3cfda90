/**
 * `egressfw export`: what a config allows, in terms a Kubernetes engine can take. Pure.
 *
 * Two halves, both engine-neutral:
 * - who: the containers each policy gets, as label selectors over pods. egressfw's assignment is
 *   ordered (the first `containers.assign` entry that matches wins, then the egressfw.policy label,
 *   then `containers.default`); label selectors are not, so each selector also says "and no earlier
 *   entry matched". The selectors are mutually exclusive: every pod is chosen by exactly one
 *   egressfw object, so engines that add up allowances (Cilium) give it its policy and no more.
 * - what: per policy, the names (exact and wildcard) and networks with their ports.
 *
 * What cannot be carried over is a note (src/export/notes.ts words them); a note never hides a
 * widening: where no faithful form exists, the export takes the narrower one.
 */
import type { AllowList, AssignRule, Config, DomainRule } from '../config/load.js';
import type { Port } from '../config/schema.js';
import { HOST_POLICY, NO_POLICY, POLICY_LABEL, policiesInUse } from '../policy/assign.js';
import { UsageError } from '../errors.js';

export type Engine = 'cilium' | 'antrea';

/** How compose's labels map onto pod labels (defaults: the Kubernetes recommended labels). */
export interface LabelMap {
  /** label carrying the compose service (default app.kubernetes.io/name) */
  service: string;
  /** label carrying the compose project (default app.kubernetes.io/part-of) */
  project: string;
}
export const DEFAULT_LABELS: LabelMap = { service: 'app.kubernetes.io/name', project: 'app.kubernetes.io/part-of' };

/** One label requirement, as Kubernetes label selectors spell it. */
export type Requirement =
  | { key: string; operator: 'In' | 'NotIn'; values: string[] }
  | { key: string; operator: 'Exists' | 'DoesNotExist' };

/** A conjunction of requirements (one label selector); the empty list selects every pod. */
export type Term = Requirement[];

export interface Selection {
  /** "host", "none" or a defined policy */
  policy: string;
  /** mutually exclusive selectors, in egressfw's order */
  terms: Term[];
}

/** Names (and wildcards) that share the same ports and the same rebinding-guard exemption. */
export interface NameGroup {
  ports: Port[];
  /** exact names */
  names: string[];
  /** "*.example.com": any name below example.com, any depth, not example.com itself */
  wildcards: string[];
  /** allowPrivate: answers in private/special ranges are allowed too */
  allowPrivate: boolean;
}
export interface CidrGroup {
  ports: Port[];
  cidrs: string[];
}
export interface PolicyAllow {
  /** "host" (the top-level list), "none" (nothing) or a policy name */
  policy: string;
  names: NameGroup[];
  cidrs: CidrGroup[];
}

export interface ExportModel {
  selections: Selection[];
  /** the allow lists of the policies some selection uses ("none" has empty lists) */
  allows: Map<string, PolicyAllow>;
  /** config.ipv6: false means nothing at all over IPv6 */
  ipv6: boolean;
  /** what does not carry over, engine-neutral (renderers add their own) */
  notes: string[];
}

/** Beyond this many selectors the config is better expressed with labels than with negations. */
export const MAX_TERMS = 200;

// Kubernetes label syntax (apimachinery validation.IsQualifiedName / IsValidLabelValue).
const LABEL_NAME = /^(?=.{1,63}$)[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_PREFIX = /^(?=.{1,253}$)[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(?:(?=.{1,63}$)[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;

export function isLabelKey(key: string): boolean {
  const slash = key.indexOf('/');
  if (slash < 0) return LABEL_NAME.test(key);
  return LABEL_PREFIX.test(key.slice(0, slash)) && LABEL_NAME.test(key.slice(slash + 1));
}
export const isLabelValue = (v: string): boolean => LABEL_VALUE.test(v);

/** Pure: the config -> who gets which policy, and what each policy allows. */
export function buildModel(config: Config, labels: LabelMap): ExportModel {
  for (const [what, key] of Object.entries(labels)) {
    if (!isLabelKey(key)) throw new UsageError(`--${what}-label ${JSON.stringify(key.slice(0, 80))} is not a Kubernetes label key (e.g. app.kubernetes.io/name)`);
  }
  const notes: string[] = [];
  const selections = policiesInUse(config) ? ordered(config, labels, notes) : [{ policy: HOST_POLICY, terms: [[]] }];
  const allows = new Map<string, PolicyAllow>();
  for (const s of selections) {
    if (allows.has(s.policy)) continue;
    const list: AllowList =
      s.policy === HOST_POLICY ? config : (config.policies.find((p) => p.name === s.policy) ?? { domains: [], wildcards: [], cidrs: [] });
    allows.set(s.policy, allowOf(s.policy, list));
  }
  for (const p of config.policies) {
    if (!allows.has(p.name)) notes.push(`policies.${p.name}: no workload can get it (no containers.assign entry names it and policyLabel is false): not exported`);
  }
  return { selections, allows, ipv6: config.ipv6, notes };
}

/** Pure: group a list's entries by (ports, allowPrivate) so one engine rule carries each group. */
export function allowOf(policy: string, list: AllowList): PolicyAllow {
  const portKey = (ports: Port[]) => ports.map((p) => `${p.port}/${p.proto}`).join(',');
  const names = new Map<string, NameGroup>();
  const add = (r: DomainRule, wildcard: boolean) => {
    const key = `${portKey(r.ports)}|${r.allowPrivate}`;
    const g = names.get(key) ?? { ports: r.ports, names: [], wildcards: [], allowPrivate: r.allowPrivate };
    (wildcard ? g.wildcards : g.names).push(r.name);
    names.set(key, g);
  };
  for (const r of list.domains) add(r, false);
  for (const r of list.wildcards) add(r, true);
  const cidrs = new Map<string, CidrGroup>();
  for (const c of list.cidrs) {
    const key = portKey(c.ports);
    const g = cidrs.get(key) ?? { ports: c.ports, cidrs: [] };
    g.cidrs.push(c.cidr);
    cidrs.set(key, g);
  }
  return { policy, names: [...names.values()], cidrs: [...cidrs.values()] };
}

/** A requirement per label key, kept simplified so contradictions are seen and dropped. */
interface KeyState {
  eq?: string;
  ne: Set<string>;
  exists: boolean;
  absent: boolean;
}

/** Pure: the conjunction of two terms, simplified; null when no pod can satisfy it. */
export function conjoin(a: Term, b: Term): Term | null {
  const keys = new Map<string, KeyState>();
  for (const r of [...a, ...b]) {
    const k = keys.get(r.key) ?? { ne: new Set<string>(), exists: false, absent: false };
    keys.set(r.key, k);
    switch (r.operator) {
      case 'In':
        // egressfw only ever asks for one value; a set of values would be an In over their intersection
        for (const v of r.values) {
          if (k.eq !== undefined && k.eq !== v) return null;
          k.eq = v;
        }
        break;
      case 'NotIn':
        for (const v of r.values) k.ne.add(v);
        break;
      case 'Exists':
        k.exists = true;
        break;
      case 'DoesNotExist':
        k.absent = true;
        break;
    }
  }
  const out: Term = [];
  for (const [key, k] of [...keys.entries()].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) {
    if (k.eq !== undefined) {
      if (k.absent || k.ne.has(k.eq)) return null;
      out.push({ key, operator: 'In', values: [k.eq] });
    } else if (k.absent) {
      if (k.exists) return null;
      out.push({ key, operator: 'DoesNotExist' });
    } else {
      if (k.ne.size > 0) out.push({ key, operator: 'NotIn', values: [...k.ne].sort() });
      // NotIn alone also matches pods without the label: keep Exists when it was asked for
      if (k.exists) out.push({ key, operator: 'Exists' });
    }
  }
  return out;
}

function negate(r: Requirement): Requirement {
  switch (r.operator) {
    case 'In':
      return { key: r.key, operator: 'NotIn', values: r.values };
    case 'NotIn':
      return { key: r.key, operator: 'In', values: r.values };
    case 'Exists':
      return { key: r.key, operator: 'DoesNotExist' };
    case 'DoesNotExist':
      return { key: r.key, operator: 'Exists' };
  }
}

/** An assign entry's match as label requirements, or why it cannot be one. */
function matchTerm(rule: AssignRule, labels: LabelMap): { term: Term } | { problem: string } {
  const m = rule.match;
  const where = `containers.assign[${rule.index}]`;
  if (m.name !== undefined) {
    return { problem: `${where}: match.name (a container name glob) has no counterpart in a pod label selector; label those workloads and match the label instead` };
  }
  const term: Term = [];
  const value = (what: string, v: string) =>
    isLabelValue(v) ? null : `${where}: match.${what} ${JSON.stringify(v.slice(0, 80))} is not a valid Kubernetes label value (at most 63 of A-Z a-z 0-9 - _ .)`;
  for (const [what, key, v] of [
    ['project', labels.project, m.project],
    ['service', labels.service, m.service],
  ] as const) {
    if (v === undefined) continue;
    const p = value(what, v);
    if (p) return { problem: p };
    term.push({ key, operator: 'In', values: [v] });
  }
  if (m.label !== undefined) {
    if (!isLabelKey(m.label.key)) return { problem: `${where}: match.label key ${JSON.stringify(m.label.key.slice(0, 80))} is not a valid Kubernetes label key` };
    if (m.label.value === undefined) term.push({ key: m.label.key, operator: 'Exists' });
    else {
      const p = value('label', m.label.value);
      if (p) return { problem: p };
      term.push({ key: m.label.key, operator: 'In', values: [m.label.value] });
    }
  }
  return { term: conjoin(term, []) ?? [] };
}

/**
 * Pure: egressfw's first-match-wins assignment as mutually exclusive selectors. `rest` is what no
 * earlier step chose (a disjunction of terms); each step takes `rest AND match` and leaves
 * `rest AND NOT match` (one term per negated requirement).
 */
function ordered(config: Config, labels: LabelMap, notes: string[]): Selection[] {
  const known = new Set([HOST_POLICY, NO_POLICY, ...config.policies.map((p) => p.name)]);
  const target = (name: string) => (known.has(name) ? name : NO_POLICY);
  const picks: { policy: string; terms: Term[] }[] = [];
  let rest: Term[] = [[]];
  const take = (policy: string, match: Term) => {
    const chosen = rest.map((t) => conjoin(t, match)).filter((t): t is Term => t !== null);
    picks.push({ policy, terms: chosen });
    // NOT (r1 AND r2 AND ...) as disjoint parts: NOT r1, r1 AND NOT r2, r1 AND r2 AND NOT r3, ...
    rest = rest.flatMap((t) => match.map((r, i) => conjoin(t, [...match.slice(0, i), negate(r)]))).filter((t): t is Term => t !== null);
    if (rest.length + picks.reduce((n, p) => n + p.terms.length, 0) > MAX_TERMS) {
      throw new UsageError(
        `containers.assign: expressing its order as Kubernetes label selectors takes more than ${MAX_TERMS} selectors; give the workloads a label per policy (match.label, or the ${POLICY_LABEL} label) instead of many overlapping project/service matches`,
      );
    }
  };
  for (const rule of config.containers.assign) {
    const m = matchTerm(rule, labels);
    if ('problem' in m) {
      // Dropping the entry leaves its workloads to the later entries and the default: said out loud.
      notes.push(`${m.problem}; this entry is NOT exported, so the workloads it selects get what the later entries or containers.default give them`);
      continue;
    }
    if (!known.has(rule.policy)) notes.push(`containers.assign[${rule.index}]: policy "${rule.policy}" is not defined: its workloads get nothing (as on this host)`);
    take(target(rule.policy), m.term);
  }
  if (config.containers.policyLabel) {
    for (const name of [...known].sort()) take(name, [{ key: POLICY_LABEL, operator: 'In', values: [name] }]);
    // a label naming no defined policy gives nothing, never the default
    take(NO_POLICY, [{ key: POLICY_LABEL, operator: 'Exists' }]);
  }
  if (!known.has(config.containers.default)) notes.push(`containers.default: policy "${config.containers.default}" is not defined: the workloads nothing else selects get nothing (as on this host)`);
  take(target(config.containers.default), []);
  const by = new Map<string, Term[]>();
  for (const p of picks) by.set(p.policy, [...(by.get(p.policy) ?? []), ...p.terms]);
  return [...by.entries()].filter(([, terms]) => terms.length > 0).map(([policy, terms]) => ({ policy, terms }));
}

/** Pure: does a pod with these labels satisfy a term? (The engines' evaluators and tests use it.) */
export function termMatches(term: Term, labels: Readonly<Record<string, string>>): boolean {
  return term.every((r) => {
    const v = labels[r.key];
    switch (r.operator) {
      case 'In':
        return v !== undefined && r.values.includes(v);
      case 'NotIn':
        return v === undefined || !r.values.includes(v);
      case 'Exists':
        return v !== undefined;
      case 'DoesNotExist':
        return v === undefined;
    }
  });
}

/** Label selector form of a term (matchLabels for single-value In, matchExpressions for the rest). */
export function selectorOf(term: Term): { matchLabels?: Record<string, string>; matchExpressions?: Record<string, unknown>[] } {
  const matchLabels: Record<string, string> = {};
  const matchExpressions: Record<string, unknown>[] = [];
  for (const r of term) {
    if (r.operator === 'In' && r.values.length === 1) matchLabels[r.key] = r.values[0]!;
    else matchExpressions.push('values' in r ? { key: r.key, operator: r.operator, values: r.values } : { key: r.key, operator: r.operator });
  }
  return {
    ...(Object.keys(matchLabels).length ? { matchLabels } : {}),
    ...(matchExpressions.length ? { matchExpressions } : {}),
  };
}
