import { buildReport, groupByPolicy, groupsText, renderReportText, reportJson } from '../audit/report.js';
import { parseConfig } from '../config/load.js';
import { assignPolicy, COMPOSE_PROJECT, COMPOSE_SERVICE, policiesInUse } from '../policy/assign.js';
import { parseSince } from '../audit/since.js';
import { collectAudit, type AuditDeps } from '../system/audit-io.js';
import { printJson } from '../text.js';

export interface ReportOptions {
  stateDir: string;
  since: string;
  json: boolean;
  /** the config, to group refusals per policy (absent or unreadable: not grouped) */
  config?: string;
}

export interface AuditCommandDeps extends AuditDeps {
  out: (text: string) => void;
}

/**
 * `egressfw report`: collect the kernel's records now (root), then per
 * container and for the host the destinations refused (enforce) or let
 * through (audit) in the window. Reads the firewall; writes only the audit history.
 */
export async function runReport(opts: ReportOptions, deps: AuditCommandDeps): Promise<number> {
  const since = parseSince(opts.since);
  const { history, notes } = await collectAudit(opts.stateDir, deps);
  const report = buildReport({ history, now: deps.now(), since, notes });
  // Policies: each container's policy as the config assigns it now (labels as Docker lists them now, compose labels otherwise).
  const text = opts.config ? await deps.readText(opts.config) : null;
  let config = null;
  try {
    config = text === null ? null : parseConfig(text, opts.config!);
  } catch (e) {
    report.notes.push(`refusals not grouped per policy: ${(e as Error).message.split('\n')[0]}`);
  }
  let groups = null;
  if (config && policiesInUse(config)) {
    const live = new Map(((await deps.listContainers?.().catch(() => null)) ?? []).map((c) => [c.id, c.labels]));
    groups = groupByPolicy(report, (c) => assignPolicy(config, { name: c.name, labels: live.get(c.id) ?? { ...(c.project ? { [COMPOSE_PROJECT]: c.project } : {}), ...(c.service ? { [COMPOSE_SERVICE]: c.service } : {}) } }).policy);
  }
  deps.out(opts.json ? `${printJson({ ...reportJson(report), ...(groups ? { policies: groups } : {}) }, 2)}\n` : `${renderReportText(report)}${groups ? `${groupsText(groups).join('\n')}\n` : ''}`);
  return 0;
}
