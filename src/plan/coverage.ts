import type { Config } from '../config/load.js';
import { ifaceMatches } from '../proxy/config.js';
import type { Blocker } from './diff.js';
import type { DockerEngine, DockerNetwork } from '../system/docker.js';

/** What Docker said when asked, or why it could not be asked. Gathered by the side-effect layer. */
export type DockerView = { engine: DockerEngine; networks: DockerNetwork[] } | { error: string };

export interface NetworkCoverage {
  name: string;
  driver: string;
  /** bridge interface, or the parent interface of macvlan/ipvlan */
  iface: string | null;
  subnets: { 4: string[]; 6: string[] };
  containers: number;
  enforced: boolean;
  /** which rule enforces it, or why nothing can */
  how: string;
}

export interface Coverage {
  docker: { version: string; apiVersion: string; firewallBackend: string } | null;
  /** Docker could not be asked: nothing below is guessed */
  dockerError: string | null;
  /** how container egress is enforced on this host */
  path: string;
  host: { enforced: boolean; how: string };
  networks: NetworkCoverage[];
  /** networks whose containers egressfw cannot judge: the host is NOT protected while they exist */
  notEnforced: NetworkCoverage[];
}

export const NFT_PATH = 'nft table inet egressfw, base chain on the forward hook (independent of Docker\'s chains and firewall backend)';
const FORWARD = 'forward hook: every forwarded connection that is not a reply, a published port or same-bridge traffic';

function judge(n: DockerNetwork, config: Config): Pick<NetworkCoverage, 'enforced' | 'how'> {
  const containers = config.containers.enabled;
  switch (n.driver) {
    case 'bridge':
      if (n.internal) return { enforced: true, how: 'internal network: Docker gives it no way out' };
      return containers ? { enforced: true, how: FORWARD } : { enforced: false, how: 'containers.enabled is false' };
    case 'overlay':
      // Swarm overlays reach the outside through docker_gwbridge, a bridge like any other.
      return containers ? { enforced: true, how: `${FORWARD} (leaves through docker_gwbridge)` } : { enforced: false, how: 'containers.enabled is false' };
    case 'host':
      return config.host.enabled ? { enforced: true, how: 'shares the host network: the host rules (ufw) judge it' } : { enforced: false, how: 'host.enabled is false' };
    case 'null':
      return { enforced: true, how: 'no network' };
    case 'macvlan':
    case 'ipvlan':
      if (!n.parent) return { enforced: true, how: 'no parent interface: no way out' };
      return {
        enforced: false,
        how: `its containers sit directly on ${n.parent}: their packets never cross this host's forward path, so egressfw cannot judge them (move them to a bridge network, or filter upstream)`,
      };
    default:
      return { enforced: false, how: `driver "${n.driver}" is unknown to egressfw: it cannot tell where its traffic goes` };
  }
}

/** Pure: every Docker network, and whether (and how) its egress is judged. */
export function buildCoverage(config: Config, view: DockerView | null, ufwActive: boolean | null): Coverage {
  const host = !config.host.enabled
    ? { enforced: false, how: 'host.enabled is false: the host itself is not restricted' }
    : ufwActive === false
      ? { enforced: false, how: 'ufw is not active' }
      : { enforced: true, how: 'ufw outgoing policy + chain EGRESSFW-HOST' };
  if (!view || 'error' in view) {
    return { docker: null, dockerError: view ? view.error : null, path: NFT_PATH, host, networks: [], notEnforced: [] };
  }
  const networks = [...view.networks]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((n) => ({
      name: n.name,
      driver: n.driver,
      iface: n.driver === 'macvlan' || n.driver === 'ipvlan' ? n.parent : n.bridge,
      subnets: n.subnets,
      containers: n.containers.length,
      ...judge(n, config),
    }));
  const e = view.engine;
  return {
    docker: { version: e.version, apiVersion: e.apiVersion, firewallBackend: e.firewallDriver ?? 'iptables (not reported before Docker 28)' },
    dockerError: null,
    path: NFT_PATH,
    host,
    networks,
    notEnforced: networks.filter((n) => !n.enforced && n.driver !== 'host'),
  };
}

/** Text for people: one line per network, and a banner nobody can miss for what is not enforced. */
export function coverageText(c: Coverage): string[] {
  const out: string[] = [];
  if (c.docker) out.push(`Docker ${c.docker.version} (API ${c.docker.apiVersion}), firewall backend: ${c.docker.firewallBackend}`);
  else if (c.dockerError) out.push(`Docker: could not be asked (${c.dockerError}); networks are not listed, nothing is guessed`);
  out.push(`containers enforced by: ${c.path}`);
  out.push(`host: ${c.host.enforced ? 'enforced' : 'NOT enforced'} (${c.host.how})`);
  if (c.networks.length) {
    out.push('', 'Networks');
    const w = Math.max(8, ...c.networks.map((n) => n.name.length));
    for (const n of c.networks) {
      const subnets = [...n.subnets[4], ...n.subnets[6]].join(' ') || '-';
      out.push(`  ${n.name.padEnd(w)}  ${n.driver.padEnd(7)}  ${(n.iface ?? '-').padEnd(15)}  ${subnets}  ${n.containers} container${n.containers === 1 ? '' : 's'}  ${n.enforced ? 'enforced' : 'NOT ENFORCED'}: ${n.how}`);
    }
  }
  if (c.notEnforced.length) {
    out.push('', '!!! NOT ENFORCED: the host is NOT protected while these networks exist !!!');
    for (const n of c.notEnforced) out.push(`!!!   ${n.name} (${n.driver}${n.iface ? ` on ${n.iface}` : ''}, ${n.containers} container${n.containers === 1 ? '' : 's'}): ${n.how}`);
  }
  return out;
}

/** compose names a project's network "<project>_<network>" (or the network's own `name:`). */
const isEgressNetwork = (name: string, egressNetwork: string) => name === egressNetwork || name.endsWith(`_${egressNetwork}`);

/**
 * Pure: what about this Docker host stops `sync` (a firewall setup egressfw does not know, firewalld,
 * an exemption that would cover a Docker bridge). `hostFirewalld`: the message for a firewalld process
 * found on the host, which says more than Docker's report of it.
 */
export function dockerBlockers(config: Config, view: DockerView | null, hostFirewalld: string | null): Blocker[] {
  const docker = view && !('error' in view) ? view : null;
  const blockers: Blocker[] = [];
  const driver = docker?.engine.firewallDriver ?? null;
  // A firewall setup Docker reports that egressfw has not met: say so rather than guess it is harmless.
  if (driver !== null && !/^(iptables|nftables)(\+firewalld)?$/.test(driver)) {
    blockers.push({
      code: 'unsupported',
      message: `Docker reports a firewall backend egressfw does not know ("${driver}"): it cannot tell whether its own table is enough. Use Docker's iptables or nftables backend, or report this setup`,
    });
  }
  if (hostFirewalld) blockers.push({ code: 'unsupported', message: hostFirewalld });
  else if (docker?.engine.firewalld) {
    blockers.push({
      code: 'unsupported',
      message: `Docker reports firewalld in its firewall setup (${driver}): egressfw does not support firewalld yet (its reload can drop other tables' rules). Stop and mask firewalld, or leave egressfw off this host`,
    });
  }
  const proxy = config.proxy;
  for (const n of docker?.networks ?? []) {
    // The wildcard rule opens proxy.egressBridge to every public address: only the proxy's own egress network may own it.
    if (proxy.wildcards.length && n.bridge === proxy.egressBridge && !isEgressNetwork(n.name, proxy.egressNetwork)) {
      blockers.push({
        code: 'unsupported',
        message: `proxy.egressBridge ${proxy.egressBridge} is the bridge of Docker network ${n.name}, not of the proxy's egress network (${proxy.egressNetwork}, from \`egressfw proxy\`'s compose override): the wildcard rule would let its containers reach every public address on ${[...proxy.tlsPorts, ...proxy.httpPorts].join(', ')}. Remove that network or give proxy.egressBridge another br-egressfw-<suffix> name`,
      });
    }
    const hit = n.bridge && config.containers.exemptFrom.find((p) => ifaceMatches(p, n.bridge!));
    if (hit) {
      blockers.push({
        code: 'unsupported',
        message: `containers.exemptFrom "${hit}" matches ${n.bridge}, the bridge of Docker network ${n.name}: its containers would not be judged. List only interfaces you route for (a VPN), never a Docker bridge`,
      });
    }
  }
  return blockers;
}
