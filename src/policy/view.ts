/**
 * What plan and status say about policies: each policy with its names and the containers it
 * holds, and the containers given nothing (loudly when a name is unknown). Pure.
 */
import type { Config } from '../config/load.js';
import type { ContainerAssignment, PolicyDesired } from '../plan/policies.js';
import { printable } from '../text.js';
import { HOST_POLICY, NO_POLICY } from './assign.js';

export interface PolicyContainer {
  name: string;
  id: string;
  project?: string;
  service?: string;
  addresses: string[];
  by: string;
}

export interface PolicyView {
  /** "host" (the top-level list) first, then each defined policy */
  policies: { name: string; names: string[]; wildcards: string[]; networks: string[]; containers: PolicyContainer[] }[];
  /** containers that get nothing: policy "none", or a name no policy defines (`unknown`) */
  unassigned: (PolicyContainer & { unknown?: string })[];
  default: string;
  warnings: string[];
}

const entry = (a: ContainerAssignment): PolicyContainer => ({
  name: a.name,
  id: a.id.slice(0, 12),
  ...(a.project ? { project: a.project } : {}),
  ...(a.service ? { service: a.service } : {}),
  addresses: a.addresses,
  by: a.by,
});

export function policyView(config: Config, p: PolicyDesired | null): PolicyView | null {
  if (!p) return null;
  const lists = [{ name: HOST_POLICY, list: config }, ...config.policies.map((x) => ({ name: x.name, list: x }))];
  return {
    policies: lists.map(({ name, list }) => ({
      name,
      names: list.domains.map((d) => d.name),
      wildcards: list.wildcards.map((d) => d.name),
      networks: list.cidrs.map((c) => c.cidr),
      containers: p.assignments.filter((a) => a.policy === name).map(entry),
    })),
    unassigned: p.assignments.filter((a) => a.policy === NO_POLICY).map((a) => ({ ...entry(a), ...(a.unknown !== undefined ? { unknown: a.unknown } : {}) })),
    default: config.containers.default,
    warnings: p.warnings,
  };
}

const who = (c: PolicyContainer) => {
  const svc = c.project || c.service ? ` (${[c.project, c.service].filter(Boolean).map((x) => printable(x!)).join('/')})` : '';
  return `${printable(c.name)}${svc} ${c.addresses.join(' ') || 'no address'}  [${printable(c.by)}]`;
};

/** Text lines for plan and status. Names and labels come from Docker: escaped. */
export function policyText(v: PolicyView): string[] {
  const out = ['', `Policies (containers.default: ${printable(v.default)}; a source the map does not know gets nothing)`];
  for (const p of v.policies) {
    const what = [...p.names, ...p.wildcards, ...p.networks];
    out.push(`  ${p.name === HOST_POLICY ? 'host (the top-level allow list)' : p.name}: ${what.length ? what.map(printable).join(', ') : 'nothing'}`);
    if (!p.containers.length) out.push('    no containers');
    for (const c of p.containers) out.push(`    ${who(c)}`);
  }
  if (v.unassigned.length) {
    out.push('  none (nothing at all):');
    for (const c of v.unassigned) out.push(`    ${c.unknown !== undefined ? `UNKNOWN POLICY "${printable(c.unknown)}": ` : ''}${who(c)}`);
  }
  for (const w of v.warnings) out.push(`  WARNING: ${printable(w)}`);
  return out;
}
