import { loadConfig, withScheduler } from '../config/load.js';
import { dnsOpen, dnsOpenText, type DnsOpen } from '../plan/dns-open.js';
import { readScheduler } from '../system/scheduler.js';
import { computeRound, type RoundDeps, type Round } from '../engine.js';
import type { Family } from '../net/ip.js';
import { describeOp, renderIpset, renderIptables, renderNft, ufwSteps } from '../plan/render.js';
import type { QueryFn } from '../resolve/query.js';
import { coverageText, type DockerView } from '../plan/coverage.js';
import { parseState, stateCheck, stateFile, stateNotes } from '../state-file.js';
import type { Observation, Wanted } from '../system/observe.js';
import { printable, printJson, printLines } from '../text.js';
import { policyText, policyView } from '../policy/view.js';

export interface PlanOptions {
  config: string;
  stateDir: string;
  json: boolean;
  detailedExitcode: boolean;
}

export interface PlanDeps {
  query: QueryFn;
  /** Docker's networks for the coverage report (absent: not asked) */
  inspectDocker?: () => Promise<DockerView>;
  /** running containers for the policy map (asked only when policies are in use) */
  inventory?: RoundDeps['inventory'];
  readText: (file: string) => Promise<string | null>;
  observe: (want: Wanted) => Promise<Observation>;
  now: () => number;
  isRoot: boolean;
  out: (text: string) => void;
  warn: (text: string) => void;
}

/** `egressfw plan`: resolve, diff against the kernel, print. Writes nothing anywhere. */
export async function runPlan(opts: PlanOptions, deps: PlanDeps): Promise<number> {
  const scheduler = await readScheduler(opts.stateDir, deps.readText);
  const config = withScheduler(await loadConfig(opts.config), scheduler);
  for (const w of config.warnings) deps.warn(`warning: ${opts.config}: ${w}`);
  const open = dnsOpen(config, scheduler);
  const now = deps.now();
  const file = stateFile(opts.stateDir);
  const loaded = parseState(await deps.readText(file), stateCheck(config, now));
  for (const w of stateNotes(file, loaded)) deps.warn(`warning: ${w}`);
  const round = await computeRound(config, loaded.state, { query: deps.query, readText: deps.readText, observe: deps.observe, inspectDocker: deps.inspectDocker, inventory: deps.inventory, now });
  deps.out(opts.json ? `${printJson({ ...planJson(round, opts.config), dnsOpen: open }, 2)}\n` : planText(round, opts.config, deps.isRoot, open));
  // Like Terraform: a plan sync could not apply is an error (1), not "changes pending" (3).
  if (opts.detailedExitcode && round.plan.blockers.length) return 1;
  return opts.detailedExitcode && round.plan.ops.length > 0 ? 3 : 0;
}

/** Each name's ports, whichever lists (the top level, policies) allow it: united. */
function portsOf(config: Round['config']): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const l of [config, ...config.policies]) for (const d of l.domains) out.set(d.name, [...new Set([...(out.get(d.name) ?? []), ...d.ports.map(portText)])]);
  return out;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
const portText = (p: { port: number; proto: string }) => `${p.port}/${p.proto}`;

export function planJson(round: Round, configPath: string) {
  const ports = portsOf(round.config);
  return {
    version: 1,
    config: configPath,
    configWarnings: round.config.warnings,
    observed: { readable: round.observed.readable, missingTools: round.missingTools },
    dnsServers: round.dns.map((s) => `${s.host}${s.port === 53 ? '' : `#${s.port}`}`),
    domains: round.allowed.map((d) => ({
      name: d.name,
      status: d.status,
      detail: d.detail,
      ports: ports.get(d.name) ?? [],
      ips: d.ips,
      refused: round.resolutions.find((r) => r.name === d.name)?.refused ?? [],
    })),
    networks: round.config.cidrs.map((c) => ({ cidr: c.cidr, ports: c.ports.map(portText) })),
    // per-workload policies (absent when none are in use)
    ...(policyView(round.config, round.policies) ?? {}),
    mode: round.config.mode,
    docker: round.coverage.docker,
    coverage: round.coverage,
    pending: round.plan.ops.length > 0,
    changes: round.plan.ops.map((op) => ({ ...op, description: describeOp(op) })),
    scope: round.scope,
    blockers: round.plan.blockers,
    render: {
      ipsetRestore: renderIpset(round.plan),
      nft: renderNft(round.plan),
      iptablesRestore: renderIptables(round.plan, 4),
      ip6tablesRestore: renderIptables(round.plan, 6),
      ufw: ufwSteps(round.plan),
    },
  };
}

function planText(round: Round, configPath: string, isRoot: boolean, open: DnsOpen | null): string {
  const out: string[] = [];
  const { config, plan } = round;
  out.push(`egressfw plan: ${configPath} (${plural(config.domains.length, 'domain')}, ${plural(config.cidrs.length, 'network')}${config.policies.length ? `, ${plural(config.policies.length, 'policy').replace(/policys$/, 'policies')}` : ''}); DNS ${round.dns.map((s) => s.host).join(', ')}`);
  if (!round.observed.readable) {
    out.push(
      isRoot
        ? `kernel state not read (missing: ${round.missingTools.join(', ')}): assuming nothing of egressfw is installed`
        : 'not root: kernel state not read, assuming nothing of egressfw is installed (run with sudo to compare against the kernel)',
    );
  }
  if (round.scope === 'containers-only') out.push('ufw is not active: only the container part is planned; the host waits for `ufw enable` (egressfw never enables it on its own)');
  out.push(`mode: ${config.mode === 'audit' ? 'AUDIT (what would be refused is recorded and let through)' : 'enforce'}`);
  out.push(...coverageText(round.coverage));
  out.push(...(open ? dnsOpenText(open) : [`DNS: through the gate (dns.gate${config.dns.gate.setting === undefined ? ', on under the daemon' : '.enabled: true'}): only allowed names resolve`]));
  out.push('', 'Domains');
  const width = Math.max(10, ...round.allowed.map((d) => d.name.length));
  const ports = new Map([...portsOf(config)].map(([n, p]) => [n, p.join(' ')]));
  for (const d of round.allowed) {
    const ips = d.ips.length
      ? d.ips.map((ip) => `${ip.ip}${ip.source === 'answer' ? '' : ` (${ip.source})`}`).join(', ')
      : 'nothing allowed for it';
    out.push(`  ${printable(d.name).padEnd(width)}  ${printable(d.status).padEnd(9)}  ${ports.get(d.name)}  ${printable(ips)}`);
    // detail quotes DNS data (CNAME targets): escape what a terminal would act on
    if (d.detail) out.push(`  ${''.padEnd(width)}  ${printable(d.detail)}`);
  }
  const refused = round.resolutions.flatMap((r) =>
    r.refused.map((x) => `  ${printable(r.name)} -> ${printable(x.ip)} refused: ${printable(x.reason)} (set allowPrivate: true on the entry if this is intended)`),
  );
  if (refused.length) out.push('', 'Refused answers (DNS rebinding guard)', ...refused);
  if (config.cidrs.length) {
    out.push('', 'Networks');
    for (const c of config.cidrs) out.push(`  ${c.cidr}  ${c.ports.map(portText).join(' ')}`);
  }
  const pv = policyView(config, round.policies);
  if (pv) out.push(...policyText(pv));
  out.push('', plan.ops.length ? `Changes (${plan.ops.length})` : 'No changes: the kernel already matches the allowlist.');
  for (const op of plan.ops) out.push(`  ${printable(describeOp(op))}`);
  if (plan.blockers.length) {
    out.push('', '`egressfw sync` would stop before any change:');
    for (const b of plan.blockers) out.push(`  - ${printable(b.message)}`);
  }
  const ipset = renderIpset(plan);
  if (ipset) out.push('', '--- ipset restore', ...ipset.trimEnd().split('\n'));
  const nft = renderNft(plan);
  if (nft) out.push('', '--- nft -f -', ...nft.trimEnd().split('\n'));
  for (const f of [4, 6] as Family[]) {
    const text = renderIptables(plan, f);
    if (text) out.push('', `--- ${f === 4 ? 'iptables' : 'ip6tables'}-restore --noflush`, ...text.trimEnd().split('\n'));
  }
  const steps = ufwSteps(plan);
  if (steps.length) {
    out.push('', '--- ufw');
    for (const s of steps) {
      out.push(`# ${s.say}`);
      if (s.argv) out.push(s.argv.join(' '));
      if (s.diff) out.push(...s.diff);
    }
  }
  return printLines(out);
}
