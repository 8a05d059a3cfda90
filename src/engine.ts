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
import { policiesInUse } from './policy/assign.js';
import { resolvedNames, type InventoryContainer, type PolicyDesired } from './plan/policies.js';

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
  /** per-workload policies: chains, sets, the source -> policy map and each container's assignment; null when none are in use */
  policies: PolicyDesired | null;
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
  /** the running containers, asked only when policies are in use (the source -> policy map); absent: none known */
  inventory?: () => Promise<InventoryContainer[]>;
}

export async function computeRound(config: Config, prev: State, deps: RoundDeps): Promise<Round> {
  const dns = await dnsServers(config, deps.readText);
  // Every name of every list, resolved once (state.json keeps one entry per name).
  const names = resolvedNames(config);
  const perPolicy = config.containers.enabled && policiesInUse(config);
  const [resolutions, observation, dockerView, inventory] = await Promise.all([
    deps.resolve === false
      ? Promise.resolve(names.map((d) => notAsked(d.name, config.ipv6)))
      : resolveAll(
      resolverOptions(config, dns, deps.query),
      names,
    ),
    deps.observe(wanted(config)),
    deps.inspectDocker ? deps.inspectDocker() : Promise.resolve(null),
    perPolicy && deps.inventory ? deps.inventory().then((list) => ({ list }), (e: Error) => ({ error: e.message.split('\n')[0]! })) : Promise.resolve({ list: [] as InventoryContainer[] }),
  ]);
  const merged = mergeResolutions(prev, resolutions, deps.now, config.staleGrace, domainStatus, config.dns.maxAddresses);
  const allowed = merged.allowed;
  // Without DNS nothing was learned: keep the saved per-name status and history as they are.
  const state = deps.resolve === false ? { ...prev, domains: Object.fromEntries(names.filter((d) => prev.domains[d.name]).map((d) => [d.name, prev.domains[d.name]!])) } : merged.state;
  const desired = buildDesired(config, allowed, dns, 'list' in inventory ? inventory.list : []);
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
  if ('error' in inventory) {
    // Without the inventory the map would be empty: every container would lose its policy. Change nothing instead.
    full.blockers.push({ code: 'unsupported', message: `policies are in use, and mapping containers to them needs Docker's list of running containers, which could not be read: ${inventory.error}` });
  }
  // Decided once, here: ufw switched off after egressfw had been enforcing.
  const ufwOff = prev.enforcedSince !== undefined && full.blockers.some((b) => b.code === 'ufw-inactive');
  const rescope = ufwOff ? withoutHost : (p: Plan) => p;
  const coverage = buildCoverage(config, dockerView, observation.observed.ufw ? observation.observed.ufw.enabled : null);
  return {
    config, dns, resolutions, allowed, state, desired, observed: observation.observed, missingTools: observation.missingTools,
    plan: rescope(full), scope: ufwOff ? 'containers-only' : 'full', rescope, coverage, policies: desired.nft?.policies ?? null,
  };
}

/** Which tools this config needs besides iptables and ipset. */
export const wanted = (config: Config): Wanted => ({ ufw: config.host.enabled, docker: config.containers.enabled });
