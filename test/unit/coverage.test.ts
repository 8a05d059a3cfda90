import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { buildCoverage, coverageText, forwardView, MARK_PATH, NFT_PATH } from '../../src/plan/coverage.js';
import { nothingInstalled, parseIptablesSave, type Observed } from '../../src/plan/observed.js';
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

describe("the forward path behind egressfw's table (Docker 29's nftables backend with ufw)", () => {
  // iptables-save -t filter as ufw leaves it (FORWARD policy DROP, no Docker chains: Docker 29 on nftables)
  const UFW = '*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:ufw-before-forward - [0:0]\n-A FORWARD -j ufw-before-logging-forward\n-A FORWARD -j ufw-before-forward\nCOMMIT\n';
  const UFW6 = UFW.replace(/ufw-/g, 'ufw6-');
  // Docker's iptables backend: its chains accept container traffic before the policy
  const DOCKER_IPT = '*filter\n:FORWARD DROP [0:0]\n:DOCKER-USER - [0:0]\n-A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-FORWARD\nCOMMIT\n';
  const ACCEPT = '*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n';
  const kernel = (t4: string, t6: string, forwarding = { 4: true, 6: true } as Observed['forwarding']): Observed => ({
    ...nothingInstalled(),
    readable: true,
    tables: { 4: parseIptablesSave(t4), 6: parseIptablesSave(t6) },
    forwarding,
  });
  const cover = (yaml: string, o: Observed) => buildCoverage(parseConfig(yaml, 'x'), { engine, networks: [] }, true, forwardView(o));

  it('ufw active, nothing of Docker in FORWARD: allowed traffic passes by mark, and plan/status say so', () => {
    const c = cover('allow: []', kernel(UFW, UFW6));
    expect(c.path).toBe(`${NFT_PATH}; ${MARK_PATH}`);
    expect(coverageText(c)[1]).toBe("containers enforced by: nft table inet egressfw, base chain on the forward hook (independent of Docker's chains and firewall backend); allowed traffic passes ufw's forward DROP by mark 0x10000000 (egressfw's block in before.rules/before6.rules)");
    expect(c.forwardNotes).toEqual([]);
  });

  it('FORWARD policy ACCEPT, or Docker\'s iptables chains in front of the DROP: nothing changes', () => {
    for (const o of [kernel(ACCEPT, ACCEPT), kernel(DOCKER_IPT, DOCKER_IPT)]) {
      const c = cover('allow: []', o);
      expect(c.path).toBe(NFT_PATH);
      expect(c.forwardNotes).toEqual([]);
    }
    // not root: nothing was read, nothing is claimed
    expect(cover('allow: []', nothingInstalled()).path).toBe(NFT_PATH);
  });

  it('a FORWARD DROP egressfw cannot pass (host part off, or not ufw\'s) is named, with the fix', () => {
    const hostOff = cover('host: { enabled: false }', kernel(UFW, ACCEPT));
    expect(hostOff.path).toBe(NFT_PATH);
    expect(hostOff.forwardNotes).toEqual([expect.stringMatching(/^!!! iptables FORWARD policy DROP \(IPv4\) with nothing of Docker's accepting before it: .*containers reach nothing\. Set host\.enabled: true/)]);
    const other = cover('allow: []', kernel(ACCEPT, '*filter\n:FORWARD DROP [0:0]\nCOMMIT\n'));
    expect(other.forwardNotes).toEqual([expect.stringMatching(/\(IPv6\) .*iptables -I FORWARD -m mark --mark 0x10000000\/0x10000000 -j ACCEPT/)]);
    // ipv6: false: the IPv6 DROP blocks nothing egressfw allows
    expect(cover('ipv6: false', kernel(ACCEPT, '*filter\n:FORWARD DROP [0:0]\nCOMMIT\n')).forwardNotes).toEqual([]);
  });

  it('says when IP forwarding is off (Docker 29 on nftables leaves it to the operator)', () => {
    const c = cover('allow: []', kernel(ACCEPT, ACCEPT, { 4: false, 6: true }));
    expect(c.forwardNotes).toEqual(['IP forwarding is off (net.ipv4.ip_forward = 0): containers reach nothing beyond this host (Docker 29\'s nftables backend does not turn it on; set it in /etc/sysctl.d)']);
    expect(coverageText(c)).toContain(c.forwardNotes[0]);
  });
});
