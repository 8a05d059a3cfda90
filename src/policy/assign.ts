/**
 * Which policy a container gets. Pure: the config and what Docker reports of the container.
 *
 * Order: the operator's `containers.assign` (first match wins), then the container's own
 * `egressfw.policy` label, then `containers.default`. A label only chooses among the policies
 * the config defines, so whoever starts a container cannot add a name to its egress; a name
 * that no policy defines (label or config) gives nothing, never the default.
 */
import type { AssignRule, Config, ContainerMatch } from '../config/load.js';

export const POLICY_LABEL = 'egressfw.policy';
export const COMPOSE_PROJECT = 'com.docker.compose.project';
export const COMPOSE_SERVICE = 'com.docker.compose.service';
/** the top-level allow list (the host's) */
export const HOST_POLICY = 'host';
/** nothing at all */
export const NO_POLICY = 'none';

/** What Docker says of a container that assignment may look at. */
export interface ContainerFacts {
  /** without Docker's leading "/" */
  name: string;
  labels: Readonly<Record<string, string>>;
}

export interface Assignment {
  /** "host", "none" or a defined policy's name */
  policy: string;
  /** what decided it: "containers.assign[1]", "label egressfw.policy", "containers.default" */
  by: string;
  /** set when the name asked for is defined nowhere: the container gets nothing ("none") */
  unknown?: string;
}

/** "*" any run of characters, "?" one; everything else literal. */
export function globMatches(pattern: string, text: string): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 's');
  return re.test(text);
}

export function matches(m: ContainerMatch, c: ContainerFacts): boolean {
  if (m.project !== undefined && c.labels[COMPOSE_PROJECT] !== m.project) return false;
  if (m.service !== undefined && c.labels[COMPOSE_SERVICE] !== m.service) return false;
  if (m.label !== undefined) {
    const v = c.labels[m.label.key];
    if (v === undefined || (m.label.value !== undefined && v !== m.label.value)) return false;
  }
  if (m.name !== undefined && !globMatches(m.name, c.name.replace(/^\//, ''))) return false;
  return true;
}

/** True when the config gives containers anything but the host's list: then the kernel maps sources to policies. */
export function policiesInUse(config: Pick<Config, 'policies' | 'containers'>): boolean {
  return config.policies.length > 0 || config.containers.default !== HOST_POLICY || config.containers.assign.length > 0;
}

export function assignPolicy(config: Pick<Config, 'policies' | 'containers'>, c: ContainerFacts): Assignment {
  const known = (name: string) => name === HOST_POLICY || name === NO_POLICY || config.policies.some((p) => p.name === name);
  const decide = (name: string, by: string): Assignment => (known(name) ? { policy: name, by } : { policy: NO_POLICY, by, unknown: name });
  const rule: AssignRule | undefined = config.containers.assign.find((a) => matches(a.match, c));
  if (rule) return decide(rule.policy, `containers.assign[${rule.index}]`);
  const label = config.containers.policyLabel ? c.labels[POLICY_LABEL] : undefined;
  if (label !== undefined) {
    // The label selects; it never defines. "host" and "none" are names a label may choose too.
    return decide(label, `label ${POLICY_LABEL}`);
  }
  return decide(config.containers.default, 'containers.default');
}
