import { parseResolvConf, type Config } from '../config/load.js';
import { PreconditionError } from '../errors.js';
import type { QueryFn } from './query.js';
import type { ResolverOptions } from './resolver.js';

/**
 * Which DNS servers egressfw asks, and how: written once for sync, plan,
 * status, the daemon, the gate, the proxy and `install --docker-dns`.
 */

export const RESOLV_CONF = '/etc/resolv.conf';

export interface UpstreamHosts {
  hosts: string[];
  /** where they come from, for messages */
  from: 'dns.servers' | typeof RESOLV_CONF;
}

/** The configured servers, else the nameservers of /etc/resolv.conf (may be none: the caller says what that means). */
export async function upstreamHosts(config: Config, readText: (file: string) => Promise<string | null>): Promise<UpstreamHosts> {
  if (config.dns.servers) return { hosts: config.dns.servers, from: 'dns.servers' };
  return { hosts: parseResolvConf((await readText(RESOLV_CONF)) ?? ''), from: RESOLV_CONF };
}

/** The servers to query (host and port); none at all is the user's to fix. */
export async function dnsServers(config: Config, readText: (file: string) => Promise<string | null>): Promise<ResolverOptions['servers']> {
  const { hosts } = await upstreamHosts(config, readText);
  if (hosts.length === 0) throw new PreconditionError(`no DNS servers: ${RESOLV_CONF} lists no usable nameserver; set \`dns.servers\` in the config`);
  return hosts.map((host) => ({ host, port: config.dns.port }));
}

/** Config -> resolver options (the gate then narrows a few for its clients). */
export function resolverOptions(config: Config, servers: ResolverOptions['servers'], query: QueryFn): ResolverOptions {
  return {
    query,
    servers,
    timeoutMs: config.dns.timeoutMs,
    attempts: config.dns.attempts,
    concurrency: config.dns.concurrency,
    minTtl: config.dns.minTtl,
    maxTtl: config.dns.maxTtl,
    ipv6: config.ipv6,
    maxAddresses: config.dns.maxAddresses,
    deadlineMs: config.dns.deadlineMs,
  };
}
