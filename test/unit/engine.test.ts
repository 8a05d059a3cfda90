import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { computeRound } from '../../src/engine.js';
import { nothingInstalled } from '../../src/plan/observed.js';
import { emptyState } from '../../src/state-file.js';
import type { QueryFn } from '../../src/resolve/query.js';

const query: QueryFn = async (_s, name, type) => ({ rcode: 'NOERROR', answers: type === 'A' ? [{ name, type: 'A', ttl: 60, data: '203.0.113.5' }] : [] });
const deps = (missingTools: string[], readText: (f: string) => Promise<string | null> = async () => null) => ({
  query,
  readText,
  observe: async () => ({ observed: nothingInstalled(), missingTools }),
  now: 1000,
});

describe('computeRound', () => {
  const config = parseConfig('allow: [{ domain: api.example.com }]\ndns: { servers: [198.51.100.53] }', 'x');

  it('names every missing tool with the package and the config way out', async () => {
    const r = await computeRound(config, emptyState(), deps(['ipset', 'ufw', 'dockerd']));
    expect(r.plan.blockers).toEqual([
      {
        code: 'missing-tools',
        message:
          'missing: ipset, ufw, dockerd. Install with `apt-get install ipset ufw docker.io`, or set `host.enabled: false` to manage containers only, or set `containers.enabled: false` to manage the host only',
      },
    ]);
  });

  it('without DNS (offline) keeps the saved IPs and the saved per-name status', async () => {
    const first = await computeRound(config, emptyState(), deps([]));
    expect(first.allowed[0]!.ips.map((i) => i.ip)).toEqual(['203.0.113.5']);
    const failing: QueryFn = async () => {
      throw new Error('must not be asked');
    };
    const offline = await computeRound(config, first.state, { ...deps([]), query: failing, resolve: false, now: 99999 });
    expect(offline.allowed[0]!.ips).toMatchObject([{ ip: '203.0.113.5', source: 'last-known-good' }]);
    expect(offline.state.domains).toEqual(first.state.domains);
  });

  it('takes the resolvers from /etc/resolv.conf when the config names none', async () => {
    const c = parseConfig('allow: []', 'x');
    const r = await computeRound(c, emptyState(), deps([], async (f) => (f === '/etc/resolv.conf' ? 'nameserver 198.51.100.9\n' : null)));
    expect(r.dns).toEqual([{ host: '198.51.100.9', port: 53 }]);
    await expect(computeRound(c, emptyState(), deps([]))).rejects.toThrow(/no DNS servers: .*set `dns.servers`/);
  });
});

describe('containers.exemptFrom', () => {
  it('refuses a pattern that matches a Docker bridge, whatever its name', async () => {
    const c = parseConfig('allow: []\ncontainers: { exemptFrom: ["wg0", "my+"] }\ndns: { servers: [198.51.100.53] }', 'x');
    const engine = { version: '28.5.2', apiVersion: '1.51', firewallBackend: null, firewallDriver: null, firewalld: false };
    const net = { id: 'n', name: 'named', driver: 'bridge', scope: 'local', internal: false, bridge: 'mybr', parent: null, subnets: { 4: [], 6: [] }, enableIPv6: false, containers: [] };
    const r = await computeRound(c, emptyState(), { ...deps([]), inspectDocker: async () => ({ engine, networks: [net] }) });
    expect(r.plan.blockers).toEqual([expect.objectContaining({ code: 'unsupported', message: expect.stringMatching(/^containers\.exemptFrom "my\+" matches mybr, the bridge of Docker network named/) })]);
    const ok = await computeRound(parseConfig('allow: []\ncontainers: { exemptFrom: ["wg0"] }\ndns: { servers: [198.51.100.53] }', 'x'), emptyState(), { ...deps([]), inspectDocker: async () => ({ engine, networks: [net] }) });
    expect(ok.plan.blockers).toEqual([]);
    expect(ok.desired.nft!.rules.find((x) => x.tag === 'exempt-0')!.text).toBe('iifname "wg0" accept');
  });

  it('refuses patterns that would exempt containers or the uplink outright (exit 2)', () => {
    for (const p of ['+', 'br-+', 'docker0', 'veth+', 'e+', 'eth+']) expect(() => parseConfig(`containers: { exemptFrom: ["${p}"] }`, 'x')).toThrow(/containers would not be judged|would exempt the uplink/);
  });

  it('refuses every pattern that can match a name Docker generates, judged by the name shapes (issue 21 item 5)', () => {
    const refused: Record<string, RegExp> = {
      'd+': /"d\+" can match docker0, the default bridge/,
      'do+': /can match docker0/,
      'docker+': /can match docker0/,
      'docker_+': /can match docker_gwbridge, Swarm's gateway bridge/,
      'b+': /can match br-000000000000, a user network bridge/,
      'br+': /can match br-000000000000/,
      'br-0a+': /can match br-0a0000000000/,
      'br-0123456789ab': /can match br-0123456789ab/,
      'v+': /can match veth0000000, a container's veth/,
      've+': /can match veth0000000/,
      'veth1a2b3c4': /can match veth1a2b3c4/,
      'vx+': /can match vx-000000-aaaaa, an overlay VXLAN interface/,
    };
    for (const [p, why] of Object.entries(refused)) expect(() => parseConfig(`containers: { exemptFrom: ["${p}"] }`, 'x')).toThrow(why);
    // VPNs and names no Docker shape can take stay possible (bridges named by the user are a sync blocker, above)
    const ok = ['wg0', 'wg+', 'tun+', 'tailscale0', 'zt+', 'br-lan', 'br-0123456789xy', 'veth-vpn', 'docker1', 'dockerx+', 'vpn+', 'vxlan100'];
    expect(parseConfig(`containers: { exemptFrom: ${JSON.stringify(ok)} }`, 'x').containers.exemptFrom).toEqual(ok);
  });
});

describe('proxy.egressBridge (issue 21 item 6)', () => {
  it('names only the bridge egressfw gives the proxy\'s egress network: never docker0 or another Docker bridge', () => {
    for (const b of ['docker0', 'docker_gwbridge', 'br-0123456789ab', 'eth0', 'br-lan', 'egressfw', 'br-egressfwx']) {
      expect(() => parseConfig(`proxy: { mode: sni, wildcards: ["*.example.com"], egressBridge: ${b} }`, 'x')).toThrow(/egressBridge: must be br-egressfw or br-egressfw-<1 to 3 letters or digits>/);
    }
    for (const b of ['br-egressfw', 'br-egressfw-2', 'br-egressfw-a1b']) expect(parseConfig(`proxy: { egressBridge: ${b} }`, 'x').proxy.egressBridge).toBe(b);
  });

  it('sync stops when that bridge belongs to a network that is not the proxy\'s egress network', async () => {
    const c = parseConfig('allow: []\ndns: { servers: [198.51.100.53], gate: { enabled: true } }\nproxy: { mode: sni, wildcards: ["*.example.com"] }', 'x');
    const engine = { version: '28.5.2', apiVersion: '1.51', firewallBackend: null, firewallDriver: null, firewalld: false };
    const net = (name: string) => ({ id: 'n', name, driver: 'bridge', scope: 'local', internal: false, bridge: 'br-egressfw', parent: null, subnets: { 4: [], 6: [] }, enableIPv6: false, containers: [] });
    const round = (name: string) => computeRound(c, emptyState(), { ...deps([]), inspectDocker: async () => ({ engine, networks: [net(name)] }) });
    expect((await round('shop_default')).plan.blockers).toEqual([
      expect.objectContaining({ code: 'unsupported', message: expect.stringMatching(/^proxy\.egressBridge br-egressfw is the bridge of Docker network shop_default, not of the proxy's egress network \(egressfw-egress/) }),
    ]);
    expect((await round('shop_egressfw-egress')).plan.blockers).toEqual([]);
  });
});

describe('firewalld', () => {
  it('a running firewalld is a blocker naming the process and the fix', async () => {
    const c = parseConfig('allow: []\ndns: { servers: [198.51.100.53] }', 'x');
    const d = deps([]);
    const r = await computeRound(c, emptyState(), { ...d, observe: async () => ({ ...(await d.observe()), firewalld: { pid: 42, argv: ['/usr/bin/python3', '/usr/sbin/firewalld', '--nofork'] } }) });
    expect(r.plan.blockers).toEqual([{ code: 'unsupported', message: expect.stringMatching(/^firewalld is running \(pid 42: .*systemctl mask firewalld/) }]);
  });
});

describe('Docker setup', () => {
  const c = parseConfig('allow: []\ndns: { servers: [198.51.100.53] }', 'x');
  const engine = (firewallDriver: string | null) => ({ version: '29.0.0', apiVersion: '1.52', firewallBackend: null, firewallDriver, firewalld: false });
  it('an unknown firewall backend is a blocker, never a silent pass; known ones are not', async () => {
    const r = await computeRound(c, emptyState(), { ...deps([]), inspectDocker: async () => ({ engine: engine('ebpf'), networks: [] }) });
    expect(r.plan.blockers).toEqual([{ code: 'unsupported', message: expect.stringMatching(/^Docker reports a firewall backend egressfw does not know \("ebpf"\)/) }]);
    for (const d of [null, 'iptables', 'nftables']) {
      const ok = await computeRound(c, emptyState(), { ...deps([]), inspectDocker: async () => ({ engine: engine(d), networks: [] }) });
      expect(ok.plan.blockers).toEqual([]);
    }
  });
});
