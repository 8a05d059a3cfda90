import { loadConfig, withScheduler } from '../config/load.js';
import { dnsOpen, dnsOpenText, type DnsOpen } from '../plan/dns-open.js';
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
import type { Config } from '../config/load.js';
import type { Round } from '../engine.js';
import type { State } from '../state-file.js';
import { policyText, policyView, type PolicyView } from '../policy/view.js';
import { resolvedNames } from '../plan/policies.js';

export interface StatusOptions {
  config: string;
  stateDir: string;
  json: boolean;
  /** --verbose / --domains: every name with its addresses, every network (default: a summary, details only for what needs attention) */
  verbose?: boolean;
}

const ago = (sec: number) => (sec < 120 ? `${Math.round(sec)}s` : sec < 7200 ? `${Math.round(sec / 60)}m` : `${Math.round(sec / 3600)}h`);

type StatusDoc = {
  policies: PolicyView | null;
  containers: { table: string; hook: string; rules: number; allowed: { v4: number; v6: number }; gate: { v4: number; v6: number }; recorded: { v4: number; v6: number } } | null;
  sets: { v4: number; v6: number };
  ufw: { enabled: boolean; outgoing: string; hooked: boolean } | null;
  domains: { name: string; status: string; lastOk: number | undefined; ips: { ip: string; lastSeen: number; keptUntil: number }[] }[];
  warnings: string[];
  /** null: DNS goes through the gate */
  dnsOpen: DnsOpen | null;
};

/** What the text sections read: the JSON document and the round behind it. */
export interface StatusView {
  doc: StatusDoc;
  config: Config;
  state: State;
  now: number;
  installed: boolean;
  drift: string[];
  round: Round;
  /** the DNS gate's lines (src/commands/gate-status.ts), null when the gate is off */
  gateLines: string[] | null;
  verbose: boolean;
}

/** One part of the text output: lines, or none when it has nothing to say. */
export type StatusSection = (v: StatusView) => string[];

const needsAttention = (status: string) => status !== 'ok';

/** The verdict and the one-line facts, then per-status counts of the names. */
const summary: StatusSection = ({ doc, config, state, now, installed, drift, round }) => {
  const word = !installed
    ? 'NOT SYNCED YET (run `sudo egressfw sync`)'
    : drift.length
      ? `DRIFT (${drift.length}: the kernel differs from the saved state)`
      : round.plan.blockers.length || round.scope !== 'full' || round.coverage.notEnforced.length
        ? 'PARTIAL (see below)'
        : 'ENFORCED';
  const out = [`egressfw status: ${word}`];
  if (state.lastSync) out.push(`last sync: ${new Date(state.lastSync.at * 1000).toISOString()} (${ago(now - state.lastSync.at)} ago) ${state.lastSync.ok ? 'ok' : 'FAILED'}: ${printable(state.lastSync.message)}`);
  out.push(`mode: ${config.mode === 'audit' ? 'AUDIT (refused connections are recorded and let through)' : 'enforce'}`);
  const counts = new Map<string, number>();
  for (const d of doc.domains) counts.set(d.status, (counts.get(d.status) ?? 0) + 1);
  const byStatus = [...counts].sort((a, b) => (a[0] === 'ok' ? -1 : b[0] === 'ok' ? 1 : b[1] - a[1] || (a[0] < b[0] ? -1 : 1)));
  const lkg = doc.domains.filter((d) => needsAttention(d.status) && d.ips.length).length;
  out.push(`names: ${doc.domains.length}${byStatus.length ? `: ${byStatus.map(([st, n]) => `${n} ${printable(st)}`).join(', ')}` : ''}${lkg ? ` (${lkg} keep their last-known-good IPs)` : ''}${config.wildcards.length ? `; ${config.wildcards.length} wildcards (DNS gate)` : ''}${config.cidrs.length ? `; ${config.cidrs.length} networks` : ''}`);
  return out;
};

const kernel: StatusSection = ({ doc }) => {
  const out = [`host: ipset ${SET[4]} ${doc.sets.v4} entries, ${SET[6]} ${doc.sets.v6} entries`];
  const c = doc.containers;
  if (c) out.push(`containers: nft table ${c.table}, forward hook ${c.hook}, ${c.rules} rules; allowed ${c.allowed.v4} v4 + ${c.allowed.v6} v6 entries; gate ${c.gate.v4 + c.gate.v6}; recorded refusals ${c.recorded.v4 + c.recorded.v6}`);
  if (doc.ufw) out.push(`ufw: ${doc.ufw.enabled ? 'active' : 'INACTIVE'}, outgoing ${doc.ufw.outgoing}, egressfw block ${doc.ufw.hooked ? 'present' : 'MISSING'}`);
  return out;
};

/** Docker and its networks; without --verbose only the networks that are not enforced are listed (coverageText's banner). */
const coverage: StatusSection = ({ round, verbose }) => {
  const c = round.coverage;
  if (verbose || !c.networks.length) return coverageText(c);
  const out = coverageText({ ...c, networks: [] });
  // the count goes before the NOT ENFORCED banner (which starts with an empty line)
  const banner = out.indexOf('');
  out.splice(banner < 0 ? out.length : banner, 0, `networks: ${c.networks.length}, ${c.networks.length - c.notEnforced.length} enforced (--verbose lists them)`);
  return out;
};

const domainLines = (d: StatusDoc['domains'][number], now: number) => [
  `  ${printable(d.name)}  ${printable(d.status)}${d.lastOk && d.status !== 'ok' ? ` (last ok ${ago(now - d.lastOk)} ago)` : ''}`,
  ...d.ips.map((i) => `    ${printable(i.ip)}  seen ${ago(now - i.lastSeen)} ago; ${i.keptUntil > now ? `kept ${ago(i.keptUntil - now)} more` : 'expired, dropped at next refresh'}`),
];

/** Every name with --verbose; otherwise only the ones that need attention. */
const domains: StatusSection = ({ doc, now, verbose }) => {
  if (verbose) return ['', 'Domains', ...doc.domains.flatMap((d) => domainLines(d, now))];
  const failing = doc.domains.filter((d) => needsAttention(d.status));
  if (!failing.length) return doc.domains.length ? ['(every name resolves: `--domains` lists them with their IPs)'] : [];
  return ['', `Names needing attention (${failing.length}; \`--domains\` lists all)`, ...failing.flatMap((d) => domainLines(d, now))];
};

const gateSection: StatusSection = ({ gateLines }) => gateLines ?? [];

/** Per-workload policies: each with its names and containers, and who gets nothing (an unknown name loudly). */
const policiesSection: StatusSection = ({ doc }) => (doc.policies ? policyText(doc.policies) : []);

const driftSection: StatusSection = ({ drift }) => (drift.length ? ['', 'Drift (`sudo egressfw sync` or the daemon repairs it):', ...drift.map((d) => `  - ${printable(d)}`)] : []);

const warningsSection: StatusSection = ({ doc }) => doc.warnings.map((w) => `warning: ${printable(w)}`);

/**
 * The text output, in order: a summary first, then details only for what needs attention.
 * A new part of status (a gate health line, policies) is one more section here.
 */
/** DNS left open (no gate): said the way a NOT ENFORCED network is (src/plan/dns-open.ts). */
const dnsOpenSection: StatusSection = ({ doc }) => (doc.dnsOpen ? dnsOpenText(doc.dnsOpen) : []);

export const STATUS_SECTIONS: StatusSection[] = [summary, kernel, coverage, dnsOpenSection, domains, policiesSection, gateSection, driftSection, warningsSection];

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
  const round = await computeRound(config, state, { query: deps.query, readText: deps.readText, observe: deps.observe, inspectDocker: deps.inspectDocker, inventory: deps.inventory, now, resolve: false });
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
  // every name of every list (policies' too): one state entry per name
  const domains = resolvedNames(config).map((d) => {
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
    // per-workload policies: each with its names and containers (null when none are in use)
    policies: policyView(config, round.policies),
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
    const view: StatusView = { doc, config, state, now, installed, drift, round, gateLines: gate?.lines ?? null, verbose: opts.verbose ?? false };
    deps.out(printLines(STATUS_SECTIONS.flatMap((section) => section(view))));
  }
  // A gate that does not answer (containers cannot resolve), that Docker goes around, or DNS left open
  // without dns.openAcknowledged needs attention: 3.
  return doc.enforced && (gate?.healthy ?? true) && (!open || open.acknowledged) ? 0 : 3;
}
