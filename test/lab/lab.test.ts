// Proves the lab itself: namespaces, DNS, fake internet, dockerd, images, teardown.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { labDescribe } from './gate.js';
import { ADDR, snapshotMachineNetwork, startLab, type Lab } from './lab.js';

const dnsPacket = createRequire(import.meta.url).resolve('dns-packet');

labDescribe('lab', { docker: true }, () => {
  let lab: Lab;
  let before: string;

  beforeAll(async () => {
    before = await snapshotMachineNetwork();
    const t0 = Date.now();
    lab = await startLab();
    console.log(`lab ${lab.id} up in ${Date.now() - t0} ms`);
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
