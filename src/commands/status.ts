import { loadConfig } from '../config/load.js';
import { computeRound } from '../engine.js';
import { PreconditionError } from '../errors.js';
import { JUMP_RULE_SPEC } from '../plan/desired.js';
import { DOCKER_USER, FAMILIES } from '../plan/names.js';
import { describeOp } from '../plan/render.js';
import { parseState, stateFile } from '../system/state.js';
import type { PlanDeps } from './plan.js';
import { printable } from '../text.js';

export interface StatusOptions {
  config: string;
  stateDir: string;
  json: boolean;
}

const ago = (sec: number) => (sec < 120 ? `${Math.round(sec)}s` : sec < 7200 ? `${Math.round(sec / 60)}m` : `${Math.round(sec / 3600)}h`);

/**
 * `egressfw status`: what is enforced now, read from the kernel, against the
 * saved state (no DNS, writes nothing). Exit 0 enforced as planned, 3 drift.
 */
export async function runStatus(opts: StatusOptions, deps: PlanDeps): Promise<number> {
  if (!deps.isRoot) throw new PreconditionError('status reads the firewall and needs root: run `sudo egressfw status`');
  const config = await loadConfig(opts.config);
  const { state, warning } = parseState(await deps.readText(stateFile(opts.stateDir)));
  const now = deps.now();
  const round = await computeRound(config, state, { query: deps.query, readText: deps.readText, observe: deps.observe, now, resolve: false });
  const { observed } = round;
  const drift = round.plan.ops.map(describeOp);
  const installed = state.lastSync !== undefined;
  const jumps = Object.fromEntries(
    FAMILIES.map((f) => {
      const rules = observed.tables[f].chains.get(DOCKER_USER) ?? [];
      const fwd = observed.tables[f].chains.get('FORWARD') ?? [];
      const first = (r: string[]) => r[0]?.endsWith(` ${JUMP_RULE_SPEC}`) ?? false;
      // FORWARD first: where Docker does not hook DOCKER-USER (20.10, IPv6) that jump is the one that counts.
      const hooked = fwd.includes(`-A FORWARD -j ${DOCKER_USER}`);
      return [`v${f}`, first(fwd) ? 'first in FORWARD' : hooked && first(rules) ? 'first in DOCKER-USER' : 'MISSING'];
    }),
  );
  const domains = config.domains.map((d) => {
    const s = state.domains[d.name];
    return {
      name: d.name,
      status: s?.status ?? 'never resolved',
      lastOk: s?.lastOk,
      ips: Object.entries(s?.ips ?? {}).map(([ip, i]) => ({ ip, firstSeen: i.firstSeen, lastSeen: i.lastSeen, keptUntil: i.lastSeen + Math.max(i.ttl, config.staleGrace), refreshDue: i.lastSeen + i.ttl })),
    };
  });
  const doc = {
    enforced: installed && drift.length === 0 && round.plan.blockers.length === 0,
    lastSync: state.lastSync ?? null,
    sets: { v4: observed.sets[4].entries.length, v6: observed.sets[6].entries.length },
    jumps,
    ufw: observed.ufw ? { enabled: observed.ufw.enabled, outgoing: observed.ufw.outputPolicy, hooked: FAMILIES.every((f) => observed.ufw!.files[f].includes('# BEGIN EGRESSFW')) } : null,
    domains,
    drift,
    warnings: [...config.warnings, ...(warning ? [warning] : []), ...round.plan.blockers],
  };
  if (opts.json) deps.out(`${JSON.stringify(doc, null, 2)}\n`);
  else {
    const out: string[] = [];
    const word = !installed
      ? 'NOT SYNCED YET (run `sudo egressfw sync`)'
      : drift.length
        ? `DRIFT (${drift.length}: the kernel differs from the saved state)`
        : round.plan.blockers.length
          ? 'PARTIAL (see the warnings below)'
          : 'ENFORCED';
    out.push(`egressfw status: ${word}`);
    // Strings below come from the state file: escape what a terminal would act on.
    if (state.lastSync) out.push(`last sync: ${new Date(state.lastSync.at * 1000).toISOString()} (${ago(now - state.lastSync.at)} ago) ${state.lastSync.ok ? 'ok' : 'FAILED'}: ${printable(state.lastSync.message)}`);
    out.push(`kernel: egressfw-v4 ${doc.sets.v4} entries, egressfw-v6 ${doc.sets.v6} entries; jump v4 ${jumps.v4}, v6 ${jumps.v6}`);
    if (doc.ufw) out.push(`ufw: ${doc.ufw.enabled ? 'active' : 'INACTIVE'}, outgoing ${doc.ufw.outgoing}, egressfw block ${doc.ufw.hooked ? 'present' : 'MISSING'}`);
    out.push('', 'Domains');
    for (const d of domains) {
      out.push(`  ${printable(d.name)}  ${printable(d.status)}${d.lastOk && d.status !== 'ok' ? ` (last ok ${ago(now - d.lastOk)} ago)` : ''}`);
      for (const i of d.ips) out.push(`    ${printable(i.ip)}  seen ${ago(now - i.lastSeen)} ago; ${i.keptUntil > now ? `kept ${ago(i.keptUntil - now)} more` : 'expired, dropped at next refresh'}`);
    }
    if (drift.length) out.push('', 'Drift (`sudo egressfw sync` or the daemon repairs it):', ...drift.map((d) => `  - ${printable(d)}`));
    for (const w of doc.warnings) out.push(`warning: ${printable(w)}`);
    deps.out(`${out.join('\n')}\n`);
  }
  return doc.enforced ? 0 : 3;
}
