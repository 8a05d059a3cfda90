import { loadConfig } from '../config/load.js';
import { computeRound, type Round } from '../engine.js';
import type { Family } from '../net/ip.js';
import { describeOp, renderIpset, renderIptables, renderNft, ufwSteps } from '../plan/render.js';
import type { QueryFn } from '../resolve/dns-client.js';
import { parseState, stateFile } from '../system/state.js';
import type { Observation, Wanted } from '../system/observe.js';

export interface PlanOptions {
  config: string;
  stateDir: string;
  json: boolean;
  detailedExitcode: boolean;
}

export interface PlanDeps {
  query: QueryFn;
  readText: (file: string) => Promise<string | null>;
  observe: (want: Wanted) => Promise<Observation>;
  now: () => number;
  isRoot: boolean;
  out: (text: string) => void;
  warn: (text: string) => void;
}

/** `egressfw plan`: resolve, diff against the kernel, print. Writes nothing anywhere. */
export async function runPlan(opts: PlanOptions, deps: PlanDeps): Promise<number> {
  const config = await loadConfig(opts.config);
  for (const w of config.warnings) deps.warn(`warning: ${opts.config}: ${w}`);
  const { state: prev, warning } = parseState(await deps.readText(stateFile(opts.stateDir)));
  if (warning) deps.warn(`warning: ${stateFile(opts.stateDir)}: ${warning}`);
  const round = await computeRound(config, prev, { query: deps.query, readText: deps.readText, observe: deps.observe, now: deps.now() });
  deps.out(opts.json ? `${JSON.stringify(planJson(round, opts.config), null, 2)}\n` : planText(round, opts.config, deps.isRoot));
  return opts.detailedExitcode && round.plan.ops.length > 0 ? 3 : 0;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
const portText = (p: { port: number; proto: string }) => `${p.port}/${p.proto}`;

export function planJson(round: Round, configPath: string) {
  const ports = new Map(round.config.domains.map((d) => [d.name, d.ports.map(portText)]));
  return {
    version: 1,
    config: configPath,
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
    pending: round.plan.ops.length > 0,
    changes: round.plan.ops.map((op) => ({ ...op, description: describeOp(op) })),
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

function planText(round: Round, configPath: string, isRoot: boolean): string {
  const out: string[] = [];
  const { config, plan } = round;
  out.push(`egressfw plan: ${configPath} (${plural(config.domains.length, 'domain')}, ${plural(config.cidrs.length, 'network')}); DNS ${round.dns.map((s) => s.host).join(', ')}`);
  if (!round.observed.readable) {
    out.push(
      isRoot
        ? `kernel state not read (missing: ${round.missingTools.join(', ')}): assuming nothing of egressfw is installed`
        : 'not root: kernel state not read, assuming nothing of egressfw is installed (run with sudo to compare against the kernel)',
    );
  }
  out.push('', 'Domains');
  const width = Math.max(10, ...config.domains.map((d) => d.name.length));
  const ports = new Map(config.domains.map((d) => [d.name, d.ports.map(portText).join(' ')]));
  for (const d of round.allowed) {
    const ips = d.ips.length
      ? d.ips.map((ip) => `${ip.ip}${ip.source === 'answer' ? '' : ` (${ip.source})`}`).join(', ')
      : 'nothing allowed for it';
    out.push(`  ${d.name.padEnd(width)}  ${d.status.padEnd(9)}  ${ports.get(d.name)}  ${ips}`);
    if (d.detail) out.push(`  ${''.padEnd(width)}  ${d.detail}`);
  }
  const refused = round.resolutions.flatMap((r) => r.refused.map((x) => `  ${r.name} -> ${x.ip} refused: ${x.reason} (set allowPrivate: true on the entry if this is intended)`));
  if (refused.length) out.push('', 'Refused answers (DNS rebinding guard)', ...refused);
  if (config.cidrs.length) {
    out.push('', 'Networks');
    for (const c of config.cidrs) out.push(`  ${c.cidr}  ${c.ports.map(portText).join(' ')}`);
  }
  out.push('', plan.ops.length ? `Changes (${plan.ops.length})` : 'No changes: the kernel already matches the allowlist.');
  for (const op of plan.ops) out.push(`  ${describeOp(op)}`);
  if (plan.blockers.length) {
    out.push('', '`egressfw sync` would stop before any change:');
    for (const b of plan.blockers) out.push(`  - ${b}`);
  }
  const ipset = renderIpset(plan);
  if (ipset) out.push('', '--- ipset restore', ipset.trimEnd());
  const nft = renderNft(plan);
  if (nft) out.push('', '--- nft -f -', nft.trimEnd());
  for (const f of [4, 6] as Family[]) {
    const text = renderIptables(plan, f);
    if (text) out.push('', `--- ${f === 4 ? 'iptables' : 'ip6tables'}-restore --noflush`, text.trimEnd());
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
  return `${out.join('\n')}\n`;
}
