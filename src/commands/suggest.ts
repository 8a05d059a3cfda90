import { gateRefusals } from '../audit/destination-names.js';
import { buildReport } from '../audit/report.js';
import { parseSince } from '../audit/since.js';
import { renderSuggestion } from '../audit/suggest.js';
import { renderPerService } from '../audit/suggest-services.js';
import { collectAudit } from '../system/audit-io.js';
import { auditDepsFor, optionalConfig, type AuditCommandDeps } from './report.js';

export interface SuggestOptions {
  config: string;
  stateDir: string;
  since: string;
  /** one policy per compose service (and the containers.assign entries), instead of one allow list */
  perService?: boolean;
}

/**
 * `egressfw suggest`: an allowlist fragment (YAML) from what was refused or
 * audited in the window, to review and merge by hand. Prints only; the
 * config is read (to say what it already allows), never written.
 */
export async function runSuggest(opts: SuggestOptions, deps: AuditCommandDeps & { warn: (text: string) => void }): Promise<number> {
  const since = parseSince(opts.since);
  const config = await optionalConfig(opts.config, deps);
  const { history, gate, notes } = await collectAudit(opts.stateDir, auditDepsFor(config, deps));
  if (!config) notes.push(`no config at ${opts.config}: entries already allowed are not told apart (--config FILE)`);
  const now = deps.now();
  const report = buildReport({ history, now, since, notes });
  for (const n of notes) deps.warn(`note: ${n}`);
  const gateRefused = gateRefusals(gate, now - since, now);
  deps.out(opts.perService ? renderPerService({ report, gateRefused }) : renderSuggestion({ report, ...(config ? { allowed: config.domains } : {}), gateRefused }));
  return 0;
}
