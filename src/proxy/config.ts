/** The `proxy:` config section after validation: cross-field checks and normalisation. Pure. */
import type { RawConfig } from '../config/schema.js';

export type ProxyMode = 'per-domain' | 'sni';

export interface ProxyConfig {
  mode: ProxyMode;
  /** compose services to protect (sorted, unique) */
  services: string[];
  /** compose services that stay reachable from the protected ones (sorted, unique) */
  peers: string[];
  image: string;
  internalNetwork: string;
  egressNetwork: string;
  internalSubnet: string | undefined;
  /** "*.example.com" (sorted, unique); sni mode only */
  wildcards: string[];
  egressBridge: string;
  tlsPorts: number[];
  httpPorts: number[];
  healthPort: number;
}

const uniqSorted = <T extends string | number>(xs: T[]): T[] =>
  [...new Set(xs)].sort((a, b) => (typeof a === 'number' && typeof b === 'number' ? a - b : a < b ? -1 : a > b ? 1 : 0));

/** Does an iptables interface pattern ("br-+", "docker0") match a name? */
export function ifaceMatches(pattern: string, name: string): boolean {
  return pattern.endsWith('+') ? name.startsWith(pattern.slice(0, -1)) : pattern === name;
}

/**
 * raw.proxy -> ProxyConfig, or the problems (each naming its path) that the
 * per-field schema cannot see.
 */
export function normaliseProxy(raw: RawConfig): { proxy: ProxyConfig; problems: string[] } {
  const r = raw.proxy;
  const proxy: ProxyConfig = {
    mode: r.mode,
    services: uniqSorted(r.services),
    peers: uniqSorted(r.peers),
    image: r.image,
    internalNetwork: r.internalNetwork,
    egressNetwork: r.egressNetwork,
    internalSubnet: r.internalSubnet,
    wildcards: uniqSorted(r.wildcards),
    egressBridge: r.egressBridge,
    tlsPorts: uniqSorted(r.tlsPorts),
    httpPorts: uniqSorted(r.httpPorts),
    healthPort: r.healthPort,
  };
  const problems: string[] = [];
  for (const p of proxy.peers) {
    if (proxy.services.includes(p)) problems.push(`proxy.peers: "${p}" is also in proxy.services (a service is either protected or a peer)`);
  }
  if (proxy.internalNetwork === proxy.egressNetwork) problems.push('proxy.egressNetwork: must differ from proxy.internalNetwork');
  for (const p of proxy.tlsPorts) {
    if (proxy.httpPorts.includes(p)) problems.push(`proxy.httpPorts: ${p} is also in proxy.tlsPorts (a port is routed either by TLS SNI or by HTTP Host)`);
  }
  const used = new Set([
    ...proxy.tlsPorts,
    ...proxy.httpPorts,
    ...raw.allow.flatMap((e) => (e.domain !== undefined ? e.ports.filter((p) => p.proto === 'tcp').map((p) => p.port) : [])),
  ]);
  if (used.has(proxy.healthPort)) problems.push(`proxy.healthPort: ${proxy.healthPort} is also a proxied port; pick another (default 8999)`);
  if (proxy.wildcards.length > 0) {
    if (proxy.mode !== 'sni') {
      problems.push('proxy.wildcards: wildcards need `mode: sni` (one proxy that routes by name); a per-domain proxy forwards to one fixed name');
    }
  }
  return { proxy, problems };
}
