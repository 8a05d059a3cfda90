import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { buildCoverage, coverageText } from '../../src/plan/coverage.js';
import type { DockerEngine, DockerNetwork } from '../../src/system/docker.js';
import { golden } from '../support/files.js';

const engine: DockerEngine = { version: '28.5.2', apiVersion: '1.51', firewallBackend: 'nftables', firewallDriver: 'nftables', firewalld: false };
const net = (n: Partial<DockerNetwork> & { name: string; driver: string }): DockerNetwork => ({
  id: `${n.name}-id`,
  scope: 'local',
  internal: false,
  bridge: null,
  parent: null,
  subnets: { 4: [], 6: [] },
  enableIPv6: false,
  containers: [],
  ...n,
});
const networks: DockerNetwork[] = [
  net({ name: 'bridge', driver: 'bridge', bridge: 'docker0', subnets: { 4: ['198.51.100.64/26'], 6: [] }, containers: [{ id: 'a', name: 'web', ipv4: '198.51.100.66', ipv6: null }] }),
  net({ name: 'named', driver: 'bridge', bridge: 'mybr', subnets: { 4: ['198.51.100.128/28'], 6: ['2001:db8:1:2::/64'] } }),
  net({ name: 'docker_gwbridge', driver: 'bridge', bridge: 'docker_gwbridge' }),
  net({ name: 'backend', driver: 'bridge', bridge: 'br-0123456789ab', internal: true }),
  net({ name: 'mac', driver: 'macvlan', parent: 'eth0', subnets: { 4: ['198.51.100.128/25'], 6: [] }, containers: [{ id: 'b', name: 'legacy-app', ipv4: '198.51.100.130', ipv6: null }] }),
  net({ name: 'host', driver: 'host' }),
  net({ name: 'none', driver: 'null' }),
  net({ name: 'plugin', driver: 'weave' }),
];

describe('coverage report', () => {
  const config = parseConfig('allow: []', 'x');

  it('bridges of any name are enforced by the forward hook; macvlan on a parent and unknown drivers are named NOT enforced', () => {
    const c = buildCoverage(config, { engine, networks }, true);
    const by = Object.fromEntries(c.networks.map((n) => [n.name, n.enforced]));
    expect(by).toEqual({ backend: true, bridge: true, docker_gwbridge: true, host: true, mac: false, named: true, none: true, plugin: false });
    expect(c.notEnforced.map((n) => n.name)).toEqual(['mac', 'plugin']);
    expect(c.networks.find((n) => n.name === 'mac')).toMatchObject({ iface: 'eth0', containers: 1 });
    expect(c.docker).toEqual({ version: '28.5.2', apiVersion: '1.51', firewallBackend: 'nftables' });
    golden('coverage.txt', `${coverageText(c).join('\n')}\n`);
  });

  it('says when Docker cannot be asked, and guesses nothing', () => {
    const c = buildCoverage(config, { error: 'cannot reach dockerd at /run/docker.sock' }, true);
    expect(c.networks).toEqual([]);
    expect(coverageText(c)[0]).toMatch(/could not be asked \(cannot reach dockerd.*nothing is guessed/);
  });

  it('host-network containers follow the host rules: not enforced when the host part is off', () => {
    const c = buildCoverage(parseConfig('host: { enabled: false }', 'x'), { engine, networks: [net({ name: 'host', driver: 'host' })] }, null);
    expect(c.host.enforced).toBe(false);
    expect(c.networks[0]).toMatchObject({ enforced: false, how: 'host.enabled is false' });
  });
});
