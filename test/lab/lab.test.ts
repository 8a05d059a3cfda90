// Proves the lab itself: namespaces, DNS, fake internet, dockerd, images, teardown.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { labDescribe } from './requirements.js';
import { ADDR, snapshotMachineNetwork, startLab, type Lab } from './lab.js';

const dnsPacket = createRequire(import.meta.url).resolve('dns-packet');

labDescribe('lab', { docker: true }, () => {
  let lab: Lab;
  let before: string;

  beforeAll(async () => {
    before = await snapshotMachineNetwork();
    const t0 = Date.now();
    lab = await startLab();
    console.log(`lab ${lab.id} up in ${Date.now() - t0} ms (Docker ${lab.dockerLabel}: ${lab.dockerVersion}, ${lab.firewallBackend})`);
  });
  afterAll(async () => {
    await lab?.stop();
  });

  it('host resolves site names through the lab DNS server and fetches over IPv4 and IPv6', async () => {
    const [byName, v6, alt, resolv] = await Promise.all([
      lab.fetch('http://allowed.test/'),
      lab.fetch('http://[2001:db8:10::10]/'),
      lab.fetch('http://other.test:8080/'),
      lab.host(['cat', '/etc/resolv.conf']),
    ]);
    expect(resolv.stdout).toContain(`nameserver ${ADDR.dns4}`);
    expect(byName.body).toMatch(/^site=(203\.0\.113\.10|2001:db8:10::10) port=80 name=allowed\.test\n$/);
    expect(v6.body).toBe('site=2001:db8:10::10 port=80 name=allowed.test\n');
    expect(alt.body).toMatch(/port=8080 name=other\.test/);
  });

  it('DNS: A/AAAA from the site table, NXDOMAIN for unknown names, UDP and TCP', async () => {
    expect(await lab.resolve('allowed.test', 'A')).toEqual(['203.0.113.10']);
    expect(await lab.resolve('allowed.test', 'AAAA')).toEqual(['2001:db8:10::10']);
    expect(await lab.resolve('v4only.test', 'AAAA')).toEqual([]);
    const t0 = Date.now();
    const nx = await lab.host(['busybox', 'nslookup', 'nope.test']);
    expect(nx.stdout + nx.stderr).toMatch(/NXDOMAIN/);
    expect(Date.now() - t0).toBeLessThan(2000);
    // TCP (the resolver's fallback on truncation): one query with dns-packet over a stream socket
    const q = `const p = require(${JSON.stringify(dnsPacket)}); const s = require('net').connect(53, process.argv[1], () =>
      s.write(p.streamEncode({ type: 'query', id: 7, flags: p.RECURSION_DESIRED, questions: [{ type: 'A', name: 'blocked.test' }] })));
      s.on('data', (d) => { console.log(p.streamDecode(d).answers.map((a) => a.data).join()); s.end(); });`;
    const [tcp4, tcp6] = await Promise.all([ADDR.dns4, ADDR.dns6].map((srv) => lab.host([process.execPath, '-e', q, srv], { timeoutMs: 5000 })));
    expect(tcp4?.stdout).toBe('203.0.113.20\n');
    expect(tcp6?.stdout).toBe('203.0.113.20\n');
  });

  it('HTTPS with the lab CA: curl verifies it on the host, busybox wget works from a container', async () => {
    const curl = await lab.host(['curl', '-sS', '--max-time', '3', 'https://allowed.test/']);
    expect(curl.stderr).toBe('');
    expect(curl.stdout).toMatch(/port=443 name=allowed\.test/);
    const c = await lab.runContainer();
    const wget = await lab.fetch('https://allowed.test/', { container: c });
    expect(wget.body).toMatch(/port=443 name=allowed\.test/);
  });

  it('containers on the default bridge and on a user network reach every site by name (the bypass baseline)', async () => {
    const net = await lab.docker(['network', 'create', '--ipv6', '--subnet', '2001:db8:1:1::/64', 'usernet']);
    expect(net.stderr).toBe('');
    const [c1, c2] = await Promise.all([lab.runContainer(), lab.runContainer({ network: 'usernet' })]);
    const urls = ['http://allowed.test/', 'http://blocked.test/', 'http://203.0.113.20:8080/', 'http://[2001:db8:20::20]/'];
    const results = await Promise.all([c1, c2].flatMap((c) => urls.map((u) => lab.fetch(u, { container: c }))));
    for (const r of results) expect(r.ok, r.stderr).toBe(true);
    expect(results[1]!.body).toMatch(/name=blocked\.test/);
    // NAT: the internet sees the host's uplink address for IPv4
    const ip = await lab.fetch('http://203.0.113.10/ip', { container: c2 });
    expect(ip.body).toBe(`${ADDR.hostUplink4}\n`);
  });

  it('runs the Docker engine EFW_DOCKER asks for, with its firewall backend and chain layout', async () => {
    // What each engine looks like in the lab (observed; the lead's enforcement builds on these facts).
    const expected = {
      '20.10': { api: null, v4: 'DOCKER-USER', v6User: false },
      '26.1': { api: null, v4: 'DOCKER-USER', v6User: true },
      '28.5': { api: 'iptables', v4: 'DOCKER-USER', v6User: true },
      '28.5-nft': { api: 'nftables', v4: 'DOCKER-FORWARD', v6User: false },
    }[lab.dockerLabel];
    expect(lab.dockerVersion.startsWith(`${lab.dockerLabel.replace(/-nft$/, '')}.`), lab.dockerVersion).toBe(true);
    const engine = await lab.dockerApi().engine();
    expect(engine).toMatchObject({ version: lab.dockerVersion, firewallBackend: expected.api, firewalld: false, ipv6Default: true });
    const [fwd4, fwd6, user6] = await Promise.all([
      lab.host(['iptables', '-S', 'FORWARD']),
      lab.host(['ip6tables', '-S', 'FORWARD']),
      lab.host(['ip6tables', '-S']),
    ]);
    // first jump in FORWARD
    expect(fwd4.stdout.split('\n').find((l) => l.startsWith('-A FORWARD'))).toBe(`-A FORWARD -j ${expected.v4}`);
    expect(fwd4.stdout).toMatch(/^-P FORWARD DROP$/m);
    expect(/^-N DOCKER-USER$/m.test(user6.stdout)).toBe(expected.v6User);
    expect(fwd6.stdout.includes('-j DOCKER-USER')).toBe(expected.v6User);
  });

  it('the Engine API client sees what dockerd has: networks, bridges that exist, container addresses', async () => {
    await lab.docker(['network', 'create', '-o', 'com.docker.network.bridge.name=efwnamed0', 'named']);
    const c = await lab.runContainer({ network: 'named' });
    const [nets, links, inspect] = await Promise.all([
      lab.dockerApi().networks(),
      lab.host(['ip', '-o', 'link', 'show', 'type', 'bridge']),
      lab.docker(['inspect', '--format', '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}} {{end}}', c]),
    ]);
    const bridges = nets.filter((n) => n.driver === 'bridge').map((n) => n.bridge!);
    expect(bridges).toContain('docker0');
    expect(bridges).toContain('efwnamed0');
    // every bridge the client names is a real interface of the host
    for (const b of bridges) expect(links.stdout).toContain(`: ${b}:`);
    const named = nets.find((n) => n.name === 'named')!;
    expect(named.containers.map((x) => `${named.name}=${x.ipv4}`)).toEqual([inspect.stdout.trim()]);
    const ctr = (await lab.dockerApi().containers()).find((x) => x.name === c)!;
    expect(ctr.networks.map((n) => `${n.name}=${n.ipv4}`).join(' ')).toBe(inspect.stdout.trim());
  });

  it("where a container's DNS query leaves: FORWARD from its namespace, or OUTPUT from the host's (Docker 28's embedded resolver)", async () => {
    // user networks use the embedded resolver 127.0.0.11; the default bridge gets the host's nameservers copied in
    const userNetPath = ({ '20.10': 'forward', '26.1': 'forward', '28.5': 'output', '28.5-nft': 'output' } as const)[lab.dockerLabel];
    await lab.docker(['network', 'create', 'dnsnet']);
    const [onBridge, onUser] = await Promise.all([lab.runContainer(), lab.runContainer({ network: 'dnsnet' })]);
    // count port-53 packets ahead of every other hook (our own table in the lab's namespace; removed below)
    const load = await lab.host(['nft', '-f', '-'], {
      input: `table inet efwdnscount {
  chain cfwd { type filter hook forward priority -300; meta l4proto { tcp, udp } th dport 53 counter; }
  chain cout { type filter hook output priority -300; meta l4proto { tcp, udp } th dport 53 counter; }
}\n`,
    });
    expect(load.stderr).toBe('');
    const counts = async () => {
      const t = (await lab.host(['nft', 'list', 'table', 'inet', 'efwdnscount'])).stdout;
      const n = (chain: string) => Number(t.split(`chain ${chain} {`)[1]!.match(/counter packets (\d+)/)![1]);
      return { forward: n('cfwd'), output: n('cout') };
    };
    try {
      const lookup = async (c: string) => {
        const before = await counts();
        const r = await lab.docker(['exec', c, 'nslookup', 'v4only.test']);
        expect(r.stdout).toContain('203.0.113.40');
        const after = await counts();
        return { forward: after.forward - before.forward, output: after.output - before.output };
      };
      const bridge = await lookup(onBridge);
      expect(bridge.forward).toBeGreaterThan(0);
      expect(bridge.output).toBe(0);
      const user = await lookup(onUser);
      expect(user[userNetPath]).toBeGreaterThan(0);
      expect(user[userNetPath === 'forward' ? 'output' : 'forward']).toBe(0);
    } finally {
      await lab.host(['nft', 'delete', 'table', 'inet', 'efwdnscount']);
    }
  });

  it('a blocked-style check fails fast: unreachable address times out in ~2 s', async () => {
    const r = await lab.fetch('http://203.0.113.99/', { timeoutSec: 2 });
    expect(r.ok).toBe(false);
    expect(r.ms).toBeLessThan(3500);
  });

  it('setRecords changes answers within seconds (and CNAMEs), resetRecords restores them', async () => {
    await lab.setRecords('allowed.test', { A: ['203.0.113.11'] });
    const c = await lab.runContainer();
    const [host, ctr, aaaa] = await Promise.all([
      lab.fetch('http://allowed.test/'),
      lab.fetch('http://allowed.test/', { container: c }),
      lab.resolve('allowed.test', 'AAAA'),
    ]);
    expect(host.body).toMatch(/^site=203\.0\.113\.11 /);
    expect(ctr.body).toMatch(/^site=203\.0\.113\.11 /);
    expect(aaaa).toEqual([]);
    await lab.setRecords('alias.test', { CNAME: 'other.test' });
    expect(await lab.resolve('alias.test', 'A')).toEqual(['203.0.113.30']);
    await lab.setRecords('blocked.test', {});
    expect(await lab.resolve('blocked.test', 'A')).toEqual([]);
    await lab.resetRecords();
    expect(await lab.resolve('allowed.test', 'A')).toEqual(['203.0.113.10']);
    expect(await lab.resolve('alias.test', 'A')).toEqual([]);
  });

  it('stop() removes everything: the machine looks exactly as before', async () => {
    const t0 = Date.now();
    await lab.stop();
    console.log(`lab ${lab.id} down in ${Date.now() - t0} ms`);
    await lab.stop(); // idempotent
    expect(fs.existsSync(lab.dir)).toBe(false);
    expect(await snapshotMachineNetwork()).toBe(before);
  });
});
