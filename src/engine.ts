import type { Config } from './config/load.js';
import { dnsServers, resolverOptions } from './resolve/upstream.js';
import { buildDesired, type Desired, type DnsServer } from './plan/desired.js';
import { diff, withoutHost, type Plan } from './plan/diff.js';
import type { Observed } from './plan/observed.js';
import type { QueryFn } from './resolve/query.js';
import { mergeResolutions, type AllowedDomain } from './resolve/merge.js';
import { type State } from './state-file.js';
import { domainStatus, notAsked, resolveAll, type DomainResolution } from './resolve/resolver.js';
import { PACKAGE_OF, type Observation, type Wanted } from './system/observe.js';
import { buildCoverage, dockerBlockers, type Coverage, type DockerView } from './plan/coverage.js';
import { firewalldMessage } from './system/firewalld.js';

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
  /** what sync would do, already scoped (see `scope`): plan, sync, status and the daemon all act on this */
  plan: Plan;
  /**
   * 'containers-only': ufw was switched off after egressfw had been enforcing; the host part waits
   * for `ufw enable`, the containers stay enforced and repaired. Apply the same to any re-diff.
   */
  scope: 'full' | 'containers-only';
  rescope: (p: Plan) => Plan;
  /** every Docker network and how it is enforced (or why not) */
  coverage: Coverage;
}

export interface RoundDeps {
  query: QueryFn;
  readText: (file: string) => Promise<string | null>;
  observe: (want: Wanted) => Promise<Observation>;
  now: number;
  /** false: no DNS, use the saved IPs (drift repair, boot, status) */
  resolve?: boolean;
  /** ask Docker for its engine and networks (coverage report); absent: not asked */
  inspectDocker?: () => Promise<DockerView>;
}

export async function computeRound(config: Config, prev: State, deps: RoundDeps): Promise<Round> {
  const dns = await dnsServers(config, deps.readText);
  const [resolutions, observation, dockerView] = await Promise.all([
    deps.resolve === false
      ? Promise.resolve(config.domains.map((d) => notAsked(d.name, config.ipv6)))
      : resolveAll(
      resolverOptions(config, dns, deps.query),
      config.domains.map((d) => ({ name: d.name, allowPrivate: d.allowPrivate })),
    ),
    deps.observe(wanted(config)),
    deps.inspectDocker ? deps.inspectDocker() : Promise.resolve(null),
  ]);
  const merged = mergeResolutions(prev, resolutions, deps.now, config.staleGrace, domainStatus, config.dns.maxAddresses);
  const allowed = merged.allowed;
  // Without DNS nothing was learned: keep the saved per-name status and history as they are.
  const state = deps.resolve === false ? { ...prev, domains: Object.fromEntries(config.domains.filter((d) => prev.domains[d.name]).map((d) => [d.name, prev.domains[d.name]!])) } : merged.state;
  const desired = buildDesired(config, allowed, dns);
  const full = diff(desired, observation.observed);
  if (observation.missingTools.length) {
    if (observation.missingTools.includes('ufw')) full.blockers = full.blockers.filter((b) => b.code !== 'ufw-unreadable');
    const pkgs = [...new Set(observation.missingTools.map((t) => PACKAGE_OF[t] ?? 'iptables'))];
    full.blockers.unshift({
      code: 'missing-tools',
      message:
        `missing: ${observation.missingTools.join(', ')}. Install with \`apt-get install ${pkgs.join(' ')}\`` +
        (observation.missingTools.includes('ufw') ? ', or set `host.enabled: false` to manage containers only' : '') +
        (observation.missingTools.includes('dockerd') ? ', or set `containers.enabled: false` to manage the host only' : ''),
    });
  }
  full.blockers.push(...dockerBlockers(config, dockerView, observation.firewalld ? firewalldMessage(observation.firewalld) : null));
  // Decided once, here: ufw switched off after egressfw had been enforcing.
  const ufwOff = prev.enforcedSince !== undefined && full.blockers.some((b) => b.code === 'ufw-inactive');
  const rescope = ufwOff ? withoutHost : (p: Plan) => p;
  const coverage = buildCoverage(config, dockerView, observation.observed.ufw ? observation.observed.ufw.enabled : null);
  return {
    config, dns, resolutions, allowed, state, desired, observed: observation.observed, missingTools: observation.missingTools,
    plan: rescope(full), scope: ufwOff ? 'containers-only' : 'full', rescope, coverage,
  };
}

/** Which tools this config needs besides iptables and ipset. */
export const wanted = (config: Config): Wanted => ({ ufw: config.host.enabled, docker: config.containers.enabled });
