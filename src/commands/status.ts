import { loadConfig, withScheduler } from '../config/load.js';
import { dnsOpen, dnsOpenText } from '../plan/dns-open.js';
import { readScheduler } from '../system/scheduler.js';
import { computeRound } from '../engine.js';
import { PreconditionError } from '../errors.js';
import { FAMILIES, NFT, NFT_TABLE_REF, SET } from '../plan/kernel-names.js';
import { describeOp } from '../plan/render.js';
import { parseState, stateCheck, stateFile, stateNotes } from '../state-file.js';
import type { PlanDeps } from './plan.js';
import { gateStatus, type GateStatusDeps } from './gate-status.js';
import { coverageText } from '../plan/coverage.js';
import { UFW_INACTIVE } from '../plan/diff.js';
import { printable, printJson, printLines } from '../text.js';

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
export async function runStatus(opts: StatusOptions, deps: PlanDeps & { gate?: GateStatusDeps }): Promise<number> {
  if (!deps.isRoot) throw new PreconditionError('status reads the firewall and needs root: run `sudo egressfw status`');
  const scheduler = await readScheduler(opts.stateDir, deps.readText);
  const config = withScheduler(await loadConfig(opts.config), scheduler);
  const open = dnsOpen(config, scheduler);
  const now = deps.now();
  const file = stateFile(opts.stateDir);
  const loaded = parseState(await deps.readText(file), stateCheck(config, now));
  const { state } = loaded;
  const round = await computeRound(config, state, { query: deps.query, readText: deps.readText, observe: deps.observe, inspectDocker: deps.inspectDocker, now, resolve: false });
  const { observed } = round;
  const drift = round.plan.ops.map(describeOp);
  const installed = state.lastSync !== undefined;
  const nft = observed.nft;
  const containers = !config.containers.enabled
    ? null
    : {
        table: nft ? NFT_TABLE_REF : 'MISSING',
        hook: nft?.chain ? `${nft.chain.hook} priority ${nft.chain.prio}` : 'MISSING',
        rules: nft?.ruleComments.length ?? 0,
        allowed: { v4: nft?.sets.get(NFT.allow[4])?.length ?? 0, v6: nft?.sets.get(NFT.allow[6])?.length ?? 0 },
        gate: { v4: nft?.sets.get(NFT.gate[4])?.length ?? 0, v6: nft?.sets.get(NFT.gate[6])?.length ?? 0 },
        recorded: { v4: nft?.sets.get(NFT.refused[4])?.length ?? 0, v6: nft?.sets.get(NFT.refused[6])?.length ?? 0 },
      };
  const domains = config.domains.map((d) => {
    const s = state.domains[d.name];
    return {
      name: d.name,
      status: s?.status ?? 'never resolved',
      lastOk: s?.lastOk,
      ips: Object.entries(s?.ips ?? {}).map(([ip, i]) => ({ ip, firstSeen: i.firstSeen, lastSeen: i.lastSeen, keptUntil: i.lastSeen + Math.max(i.ttl, config.staleGrace), refreshDue: i.lastSeen + i.ttl })),
    };
  });
  const gate = deps.gate ? await gateStatus(config, opts.stateDir, deps.gate) : null;
  const doc = {
    enforced: installed && drift.length === 0 && round.plan.blockers.length === 0 && round.scope === 'full' && round.coverage.notEnforced.length === 0,
    scope: round.scope,
    docker: round.coverage.docker,
    coverage: round.coverage,
    gate: gate?.doc ?? null,
    /** null: DNS goes through the gate; else who can resolve any name, why, how to close it */
    dnsOpen: open,
    scheduler,
    lastSync: state.lastSync ?? null,
    mode: config.mode,
    sets: { v4: observed.sets[4].entries.length, v6: observed.sets[6].entries.length },
    containers,
    ufw: observed.ufw ? { enabled: observed.ufw.enabled, outgoing: observed.ufw.outputPolicy, hooked: FAMILIES.every((f) => observed.ufw!.files[f].includes('# BEGIN EGRESSFW')) } : null,
    domains,
    drift,
    warnings: [
      ...config.warnings,
      ...stateNotes(file, loaded),
      ...(round.scope === 'containers-only' ? [`${UFW_INACTIVE} (containers stay enforced meanwhile)`] : []),
      ...round.plan.blockers.map((b) => b.message),
    ],
  };
  if (opts.json) deps.out(`${printJson(doc, 2)}\n`);
  else {
    const out: string[] = [];
    const word = !installed
      ? 'NOT SYNCED YET (run `sudo egressfw sync`)'
      : drift.length
        ? `DRIFT (${drift.length}: the kernel differs from the saved state)`
        : round.plan.blockers.length || round.scope !== 'full' || round.coverage.notEnforced.length
          ? 'PARTIAL (see below)'
          : 'ENFORCED';
    out.push(`egressfw status: ${word}`);
    if (state.lastSync) out.push(`last sync: ${new Date(state.lastSync.at * 1000).toISOString()} (${ago(now - state.lastSync.at)} ago) ${state.lastSync.ok ? 'ok' : 'FAILED'}: ${printable(state.lastSync.message)}`);
    out.push(`mode: ${config.mode === 'audit' ? 'AUDIT (refused connections are recorded and let through)' : 'enforce'}`);
    out.push(`host: ipset ${SET[4]} ${doc.sets.v4} entries, ${SET[6]} ${doc.sets.v6} entries`);
    if (containers) {
      out.push(
        `containers: nft table ${containers.table}, forward hook ${containers.hook}, ${containers.rules} rules; allowed ${containers.allowed.v4} v4 + ${containers.allowed.v6} v6 entries; gate ${containers.gate.v4 + containers.gate.v6}; recorded refusals ${containers.recorded.v4 + containers.recorded.v6}`,
      );
    }
    if (doc.ufw) out.push(`ufw: ${doc.ufw.enabled ? 'active' : 'INACTIVE'}, outgoing ${doc.ufw.outgoing}, egressfw block ${doc.ufw.hooked ? 'present' : 'MISSING'}`);
    out.push(...coverageText(round.coverage));
    if (open) out.push(...dnsOpenText(open));
    out.push('', 'Domains');
    for (const d of domains) {
      out.push(`  ${printable(d.name)}  ${printable(d.status)}${d.lastOk && d.status !== 'ok' ? ` (last ok ${ago(now - d.lastOk)} ago)` : ''}`);
      for (const i of d.ips) out.push(`    ${printable(i.ip)}  seen ${ago(now - i.lastSeen)} ago; ${i.keptUntil > now ? `kept ${ago(i.keptUntil - now)} more` : 'expired, dropped at next refresh'}`);
    }
    if (gate) out.push(...gate.lines);
    if (drift.length) out.push('', 'Drift (`sudo egressfw sync` or the daemon repairs it):', ...drift.map((d) => `  - ${printable(d)}`));
    for (const w of doc.warnings) out.push(`warning: ${printable(w)}`);
    deps.out(printLines(out));
  }
  // A gate that does not answer (containers cannot resolve), that Docker goes around, or DNS left open
  // without dns.openAcknowledged needs attention: 3.
  return doc.enforced && (gate?.healthy ?? true) && (!open || open.acknowledged) ? 0 : 3;
}
