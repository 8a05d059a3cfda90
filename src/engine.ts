import type { Config } from './config/load.js';
import { parseResolvConf } from './config/load.js';
import { PreconditionError } from './errors.js';
import { buildDesired, type Desired, type DnsServer } from './plan/desired.js';
import { diff, type Plan } from './plan/diff.js';
import type { Observed } from './plan/observed.js';
import type { QueryFn } from './resolve/dns-client.js';
import { mergeResolutions, type AllowedDomain, type State } from './resolve/merge.js';
import { domainStatus, notAsked, resolveAll, type DomainResolution } from './resolve/resolver.js';
import type { Observation } from './system/observe.js';

/** Everything one round computes, from config to plan. Shared by `plan` and `sync`. */
export interface Round {
  config: Config;
  dns: DnsServer[];
  resolutions: DomainResolution[];
  allowed: AllowedDomain[];
  state: State;
  desired: Desired;
  observed: Observed;
  missingTools: string[];
  plan: Plan;
}

export interface RoundDeps {
  query: QueryFn;
  readText: (file: string) => Promise<string | null>;
  observe: (wantUfw: boolean) => Promise<Observation>;
  now: number;
  /** false: no DNS, use the saved IPs (drift repair, boot, status) */
  resolve?: boolean;
}

export async function dnsServers(config: Config, readText: RoundDeps['readText']): Promise<DnsServer[]> {
  let hosts = config.dns.servers;
  if (!hosts) {
    hosts = parseResolvConf((await readText('/etc/resolv.conf')) ?? '');
    if (hosts.length === 0) throw new PreconditionError('no DNS servers: /etc/resolv.conf lists no usable nameserver; set `dns.servers` in the config');
  }
  return hosts.map((host) => ({ host, port: config.dns.port }));
}

export async function computeRound(config: Config, prev: State, deps: RoundDeps): Promise<Round> {
  const dns = await dnsServers(config, deps.readText);
  const [resolutions, observation] = await Promise.all([
    deps.resolve === false
      ? Promise.resolve(config.domains.map((d) => notAsked(d.name, config.ipv6)))
      : resolveAll(
      {
        query: deps.query,
        servers: dns,
        timeoutMs: config.dns.timeoutMs,
        attempts: config.dns.attempts,
        concurrency: config.dns.concurrency,
        minTtl: config.dns.minTtl,
        maxTtl: config.dns.maxTtl,
        ipv6: config.ipv6,
      },
      config.domains.map((d) => ({ name: d.name, allowPrivate: d.allowPrivate })),
    ),
    deps.observe(config.host.enabled),
  ]);
  const merged = mergeResolutions(prev, resolutions, deps.now, config.staleGrace, domainStatus);
  const allowed = merged.allowed;
  // Without DNS nothing was learned: keep the saved per-name status and history as they are.
  const state = deps.resolve === false ? { ...prev, domains: Object.fromEntries(config.domains.filter((d) => prev.domains[d.name]).map((d) => [d.name, prev.domains[d.name]!])) } : merged.state;
  const desired = buildDesired(config, allowed, dns);
  const plan = diff(desired, observation.observed);
  const blocking = observation.missingTools.filter((t) => t !== 'ufw' || config.host.enabled);
  if (observation.observed.readable === false && blocking.length) {
    plan.blockers.unshift(`missing tools: ${blocking.join(', ')}: \`apt-get install ${[...new Set(blocking.map(pkgOf))].join(' ')}\``);
  }
  return { config, dns, resolutions, allowed, state, desired, observed: observation.observed, missingTools: observation.missingTools, plan };
}

function pkgOf(tool: string): string {
  return tool.startsWith('ip') && tool.includes('tables') ? 'iptables' : tool;
}
