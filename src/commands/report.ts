import { buildReport, groupByPolicy, groupsText, renderReportText, reportJson } from '../audit/report.js';
import { parseConfig } from '../config/load.js';
import { assignPolicy, COMPOSE_PROJECT, COMPOSE_SERVICE, policiesInUse } from '../policy/assign.js';
import { parseSince } from '../audit/since.js';
import type { Config } from '../config/load.js';
import { collectAudit, type AuditDeps } from '../system/audit-io.js';
import { printJson } from '../text.js';

export interface ReportOptions {
  config: string;
  stateDir: string;
  since: string;
  json: boolean;
}

export interface AuditCommandDeps extends AuditDeps {
  out: (text: string) => void;
}

/** report and suggest read the config when there is one (they work without it); a config that is there must be valid. */
export async function optionalConfig(file: string, deps: Pick<AuditDeps, 'readText'>): Promise<Config | null> {
  const text = await deps.readText(file);
  return text === null ? null : parseConfig(text, file);
}

/** Docker is asked who held which address only when the config manages containers (or there is no config). */
export function auditDepsFor<D extends AuditDeps>(config: Config | null, deps: D): D {
  return config && !config.containers.enabled ? { ...deps, listContainers: undefined } : deps;
}

/**
 * `egressfw report`: collect the kernel's records now (root), then per
 * container and for the host the destinations refused (enforce) or let
 * through (audit) in the window. Reads the firewall; writes only the audit history.
 */
export async function runReport(opts: ReportOptions, deps: AuditCommandDeps): Promise<number> {
  const since = parseSince(opts.since);
  const config = await optionalConfig(opts.config, deps);
  const { history, notes } = await collectAudit(opts.stateDir, auditDepsFor(config, deps));
  const report = buildReport({ history, now: deps.now(), since, notes });
  // Policies: each container's policy as the config assigns it now (labels as Docker lists them now, compose labels otherwise).
  let groups = null;
  if (config && policiesInUse(config)) {
    const live = new Map(((await deps.listContainers?.().catch(() => null)) ?? []).map((c) => [c.id, c.labels]));
    groups = groupByPolicy(report, (c) => assignPolicy(config, { name: c.name, labels: live.get(c.id) ?? { ...(c.project ? { [COMPOSE_PROJECT]: c.project } : {}), ...(c.service ? { [COMPOSE_SERVICE]: c.service } : {}) } }).policy);
  }
  deps.out(opts.json ? `${printJson({ ...reportJson(report), ...(groups ? { policies: groups } : {}) }, 2)}\n` : `${renderReportText(report)}${groups ? `${groupsText(groups).join('\n')}\n` : ''}`);
  return 0;
}
