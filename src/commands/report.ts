import { buildReport, renderReportText, reportJson } from '../audit/report.js';
import { parseSince } from '../audit/since.js';
import { collectAudit, type AuditDeps } from '../system/audit-io.js';
import { printJson } from '../text.js';

export interface ReportOptions {
  stateDir: string;
  since: string;
  json: boolean;
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
  deps.out(opts.json ? `${printJson(reportJson(report), 2)}\n` : renderReportText(report));
  return 0;
}
