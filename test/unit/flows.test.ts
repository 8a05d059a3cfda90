import { EventEmitter } from 'node:events';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { runSync } from '../../src/commands/sync.js';
import { parseConfig } from '../../src/config/load.js';
import type { QueryFn } from '../../src/resolve/query.js';
import { fakeSyncDeps, kernelExec, tempDirs } from '../support/fake-exec.js';
import { FakeKernel } from '../support/fake-kernel.js';
import { buildDesired } from '../../src/plan/desired.js';
import { appliedRules, conntrackDeleteBatch, kernelContainerRules, parseConntrackSave, parseIpAddrJson, refusedFlows, ruleMayAccept, toElements, type ContainerRules, type Flow, type HostRules } from '../../src/plan/flows.js';
import type { NftObserved } from '../../src/plan/nft.js';
import { nothingInstalled } from '../../src/plan/observed.js';
import { fixture, golden } from '../support/files.js';

// Which connections tracked before a sync its rules refuse (src/plan/flows.ts), on a recorded-style
// `conntrack -L -o save` listing and `ip -j -d addr show` of a Docker host (eth0 uplink, docker0 and a user
// network, a VPN, the SNI proxy's bridge).
const { flows, skipped } = parseConntrackSave(fixture('flows/conntrack-save.txt'));
const ifaces = parseIpAddrJson(fixture('flows/ip-addr.json'));
const dns = { 4: [{ host: '198.51.100.53', port: 53 }], 6: [] };
const hostRules = (over: Partial<HostRules> = {}): HostRules => ({
  dns,
  sets: { 4: ['203.0.113.10,tcp:443', '198.51.100.53,udp:53', '198.51.100.53,tcp:53'], 6: ['2001:db8:10::10,tcp:443'] },
  otherAccepts: { 4: ['-A ufw-before-output -o lo -j ACCEPT', '-A ufw-before-output -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT'], 6: [] },
  ...over,
});
const containerRules = (over: Partial<ContainerRules> = {}): ContainerRules => ({
  sets: { 4: ['203.0.113.10 . tcp . 443', '198.51.100.53 . udp . 53', '198.51.100.53 . tcp . 53'], 6: ['2001:db8:10::10 . tcp . 443'] },
  gate: { 4: ['203.0.113.40 . tcp . 443'], 6: [] },
  gateOn: false,
  exemptFrom: ['vpnbr+'],
  proxy: null,
  bySource: null,
  ...over,
});
const show = (f: Flow) => `${f.src} > ${f.dst} ${f.proto}${f.dport !== undefined ? `/${f.dport}` : ` id ${f.icmp!.id}`}`;

describe('conntrack listing and local interfaces', () => {
  it('parses every well-formed line; a bad address or an unported protocol is skipped, never passed on', () => {
    expect(flows).toHaveLength(26);
    expect(skipped).toBe(2); // gre; "198.51.100.2;reboot"
    expect(flows[8]).toEqual({ family: 4, proto: 'tcp', src: '198.51.100.1', dst: '198.51.100.2', sport: 55555, dport: 8080, replySrc: '198.51.100.66', replyDst: '198.51.100.1' });
    expect(flows[3]!.icmp).toEqual({ type: 8, code: 0, id: 4242 });
    expect(parseConntrackSave('-A -s 2001:DB8::1 -d 2001:db8::2 -r 2001:db8::2 -q 2001:db8::1 -p tcp --sport 1 --dport 99999\n').skipped).toBe(1);
    expect(parseConntrackSave('-A -s 2001:DB8::1 -d 2001:db8::2 -r 2001:db8::2 -q 2001:db8::1 -p tcp --sport 1 --dport 80\n').flows[0]!.src).toBe('2001:db8::1');
  });

  it('reads interface kinds and addresses', () => {
    expect(ifaces.map((i) => `${i.name}:${i.kind}:${i.addrs.map((a) => `${a.ip}/${a.prefix}`).join(',')}`)).toEqual([
      'lo::127.0.0.1/8,::1/128',
      'eth0:veth:198.51.100.2/30,2001:db8:ff::2/64,fe80::1/64',
      'docker0:bridge:198.51.100.65/26,2001:db8:1::1/64',
      'br-0123456789ab:bridge:198.51.100.129/28',
      'veth1a2b3c:veth:',
      'wg0:wireguard:10.8.0.1/24',
      'vpnbr0:bridge:10.9.0.1/24',
      'egress-proxy:bridge:198.51.100.145/28',
    ]);
  });
});

describe('refusedFlows', () => {
  it('host and containers: cuts exactly what the rules refuse; keeps allowed, DNS, published ports, local segments, container to container, VPN and routed sources', () => {
    const r = refusedFlows({ flows, ifaces, host: hostRules(), containers: containerRules() });
    expect(r.host.map(show)).toEqual(['198.51.100.2 > 203.0.113.20 tcp/443', '198.51.100.2 > 203.0.113.30 icmp id 4242', '198.51.100.2 > 203.0.113.20 tcp/443']);
    expect(r.containers.map(show)).toEqual([
      '198.51.100.66 > 203.0.113.20 tcp/443',
      '198.51.100.66 > 203.0.113.20 udp/9999',
      '2001:db8:1::2 > 2001:db8:20::20 tcp/80',
      '198.51.100.68 > 203.0.113.30 icmp id 7', // a new container's ping riding an older entry
      '198.51.100.146 > 203.0.113.77 tcp/443',
      '198.51.100.146 > 10.1.2.3 tcp/443',
      '2001:db8:1::2 > 2001:db8:20::20 icmpv6 id 9',
    ]);
    golden('flows-delete.txt', conntrackDeleteBatch([...r.host, ...r.containers]));
  });

  it('recorded in the lab (test/lab/flows.test.ts, EFW_CAPTURE): the TCP and UDP flows to the refused address, host and container', () => {
    const lab = parseConntrackSave(fixture('flows/lab-conntrack-save.txt'));
    expect(lab.skipped).toBe(1); // IGMP (-p 2)
    const sets4 = ['203.0.113.10,tcp:7000', '203.0.113.10,udp:7001', '198.51.100.53,udp:53', '198.51.100.53,tcp:53'];
    const r = refusedFlows({
      flows: lab.flows,
      ifaces: parseIpAddrJson(fixture('flows/lab-ip-addr.json')),
      host: hostRules({ sets: { 4: sets4, 6: [] } }),
      containers: containerRules({ sets: { 4: sets4.map((e) => e.replace(',', ' . ').replace(':', ' . ')), 6: [] }, gate: { 4: [], 6: [] } }),
    });
    expect(r.host.map(show).sort()).toEqual(['198.51.100.2 > 203.0.113.20 tcp/7000', '198.51.100.2 > 203.0.113.20 udp/7001']);
    expect(r.containers.map(show).sort()).toEqual(['198.51.100.66 > 203.0.113.20 tcp/7000', '198.51.100.66 > 203.0.113.20 udp/7001']);
  });

  it('with per-workload policies, each container is judged by its own policy; an unmapped source gets nothing', () => {
    // 198.51.100.66 reaches 203.0.113.20:443 through its policy (not the top-level list); the others are mapped
    // to a policy that allows nothing, or not mapped at all: their flows to the top level's 203.0.113.10 go too.
    const own = { sets: { 4: ['203.0.113.20 . tcp . 443'], 6: [] }, gate: { 4: [], 6: [] } };
    const nothing = { sets: { 4: [], 6: [] }, gate: { 4: [], 6: [] } };
    const bySource = new Map([['198.51.100.66', own], ['198.51.100.68', nothing]]);
    const withPolicies = refusedFlows({ flows, ifaces, host: hostRules(), containers: containerRules({ bySource }) }).containers.map(show);
    expect(withPolicies).not.toContain('198.51.100.66 > 203.0.113.20 tcp/443');
    expect(withPolicies).toContain('198.51.100.66 > 203.0.113.20 udp/9999');
    expect(withPolicies).toContain('2001:db8:1::2 > 2001:db8:20::20 tcp/80'); // unmapped
    // allowed by the top-level list, not by the container's own policy (or by none: unmapped): cut only with policies
    const flat = refusedFlows({ flows, ifaces, host: hostRules(), containers: containerRules() }).containers.map(show);
    for (const f of ['198.51.100.66 > 203.0.113.10 tcp/443', '2001:db8:1::2 > 2001:db8:10::10 tcp/443']) {
      expect(flat).not.toContain(f);
      expect(withPolicies).toContain(f);
    }
    // one delete line per container: containers of one segment have different policies
    expect(conntrackDeleteBatch(refusedFlows({ flows, ifaces, host: hostRules(), containers: containerRules({ bySource }) }).containers)).not.toContain('--mask-src');
  });

  it('one delete line per source segment and destination; a segment holding an address the host rules do not refuse from is named flow by flow', () => {
    const r = refusedFlows({ flows, ifaces, host: null, containers: containerRules() });
    const batch = conntrackDeleteBatch(r.containers);
    expect(batch).not.toContain('--mask-src'); // host not managed: a host flow from docker0's own address must stay
    expect(batch).toContain('-D -f ipv4 -s 198.51.100.66 -d 203.0.113.20 -r 203.0.113.20 -p tcp --dport 443\n');
    const both = conntrackDeleteBatch(refusedFlows({ flows, ifaces, host: hostRules(), containers: containerRules() }).containers);
    expect(both).toContain('-D -f ipv4 -s 198.51.100.64 --mask-src 255.255.255.192 -d 203.0.113.20 -r 203.0.113.20 -p tcp --dport 443\n');
  });

  it('audit mode, or neither side managed: nothing is cut', () => {
    expect(refusedFlows({ flows, ifaces, host: null, containers: null })).toEqual({ host: [], containers: [] });
  });

  it('the DNS gate on: DNS that was not redirected to it is refused even to the resolvers; redirected DNS is DNAT and kept', () => {
    const redirected = parseConntrackSave('-A -s 198.51.100.66 -d 198.51.100.53 -r 198.51.100.65 -q 198.51.100.66 -p udp --sport 1 --dport 53\n').flows;
    const r = refusedFlows({ flows: [...flows, ...redirected], ifaces, host: null, containers: containerRules({ gateOn: true }) });
    expect(r.containers.map(show)).toContain('198.51.100.66 > 198.51.100.53 udp/53');
    expect(r.containers.filter((f) => f.sport === 1)).toEqual([]);
  });

  it('the SNI proxy bridge reaches any public IPv4 on its ports, never the refused ranges', () => {
    const r = refusedFlows({ flows, ifaces, host: null, containers: containerRules({ proxy: { bridge: 'egress-proxy', ports: [80, 443] } }) });
    expect(r.containers.map(show)).not.toContain('198.51.100.146 > 203.0.113.77 tcp/443');
    expect(r.containers.map(show)).toContain('198.51.100.146 > 10.1.2.3 tcp/443');
  });

  it("ufw's own output rules: one that may match keeps the flow; a condition it does not read counts as matching", () => {
    const only443 = refusedFlows({ flows, ifaces, host: hostRules({ otherAccepts: { 4: ['-A ufw-user-output -p tcp -m tcp --dport 443 -j ACCEPT'], 6: [] } }), containers: null });
    expect(only443.host.map(show)).toEqual(['198.51.100.2 > 203.0.113.30 icmp id 4242']);
    const iface = refusedFlows({ flows, ifaces, host: hostRules({ otherAccepts: { 4: ['-A ufw-user-output -o eth1 -j ACCEPT'], 6: [] } }), containers: null });
    expect(iface.host).toEqual([]);
  });

  it('ruleMayAccept reads addresses, protocols, ports, multiport and conntrack states', () => {
    const [f] = parseConntrackSave('-A -s 198.51.100.2 -d 203.0.113.20 -r 203.0.113.20 -q 198.51.100.2 -p udp --sport 5000 --dport 123\n').flows;
    expect(ruleMayAccept('-A ufw-user-output -d 203.0.113.0/24 -p udp -m udp --dport 123 -m comment --comment "\'dapp_ntp\'" -j ACCEPT', f!)).toBe(true);
    expect(ruleMayAccept('-A ufw-user-output -d 203.0.113.0/25 -p tcp -j ACCEPT', f!)).toBe(false);
    expect(ruleMayAccept('-A ufw-user-output -p udp -m multiport --dports 100:200,500 -j ACCEPT', f!)).toBe(true);
    expect(ruleMayAccept('-A ufw-user-output -p udp -m multiport --dports 124:200 -j ACCEPT', f!)).toBe(false);
    expect(ruleMayAccept('-A ufw-track-output -p udp -m conntrack --ctstate NEW -j ACCEPT', f!)).toBe(true);
    expect(ruleMayAccept('-A ufw-before-output -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT', f!)).toBe(false);
    expect(ruleMayAccept('-A ufw-user-output -d 203.0.113.20/32 -j REJECT', f!)).toBe(false);
    expect(ruleMayAccept('-A ufw-user-output ! -d 10.0.0.0/8 -j ACCEPT', f!)).toBe(true);
  });
});

describe('appliedRules', () => {
  it('from the config and the kernel read back: audit cuts nothing, the gate sets come from the kernel, ufw inactive leaves the host alone', async () => {
    const config = parseConfig('allow:\n  - domain: api.example.com\ndns: { servers: [198.51.100.53] }\n', 'test.yml');
    const desired = buildDesired(config, [], [{ host: '198.51.100.53', port: 53 }]);
    const after = nothingInstalled();
    after.ufw = { enabled: true, outputPolicy: 'REJECT', files: { 4: '', 6: '' } };
    after.tables[4].chains.set('EGRESSFW-HOST', desired.hostRules![4]);
    after.tables[4].chains.set('ufw-user-output', ['-A ufw-user-output -p tcp -m tcp --dport 22 -j ACCEPT', '-A ufw-user-output -p tcp -m tcp --dport 25 -j REJECT']);
    const r = appliedRules(config, desired, [{ host: '198.51.100.53', port: 53 }], after, 'full');
    expect(r.host?.otherAccepts[4]).toEqual(['-A ufw-user-output -p tcp -m tcp --dport 22 -j ACCEPT']);
    expect(r.host?.dns).toEqual({ 4: [{ host: '198.51.100.53', port: 53 }], 6: [] });
    expect(r.containers?.sets[4]).toContain('198.51.100.53 . udp . 53');
    expect(appliedRules(config, desired, [], after, 'containers-only').host).toBeNull();
    expect(appliedRules(config, desired, [], { ...after, ufw: { ...after.ufw, enabled: false } }, 'full').host).toBeNull();
    const audit = parseConfig('mode: audit\nallow:\n  - domain: api.example.com\ndns: { servers: [198.51.100.53] }\n', 'test.yml');
    expect(appliedRules(audit, buildDesired(audit, [], []), [], after, 'full')).toEqual({ host: null, containers: null });
  });
});

describe('sync cuts what it refuses (fake kernel, the argv sync spawns)', () => {
  const dirs = tempDirs('efw-flows-', { beforeEach, afterAll });
  const query: QueryFn = async (_s, name, type) => ({ rcode: 'NOERROR', answers: type === 'A' ? [{ name, type: 'A', ttl: 60, data: '203.0.113.5' }] : [] });
  const line = (src: string, dst: string, dport: number, nat = src) => `-A -t 300 -u SEEN_REPLY,ASSURED -s ${src} -d ${dst} -r ${dst} -q ${nat} -p tcp --sport 40000 --dport ${dport} --reply-port-src ${dport} --reply-port-dst 40000 --state ESTABLISHED`;
  function setup(yaml: string, over: { missing?: boolean } = {}) {
    const k = new FakeKernel();
    k.ufw.files = { 4: fixture('before.rules'), 6: fixture('before6.rules') };
    k.ifaces = JSON.parse(fixture('flows/ip-addr.json')) as unknown[];
    k.conntrack = [line('198.51.100.2', '203.0.113.5', 443), line('198.51.100.2', '203.0.113.20', 443), line('198.51.100.66', '203.0.113.20', 443, '198.51.100.2'), line('198.51.100.66', '203.0.113.5', 443, '198.51.100.2')];
    const { exec, calls } = kernelExec(k, async (argv) => (over.missing && argv[0] === 'conntrack' ? { stdout: '', stderr: 'conntrack: not installed', exitCode: 127 } : undefined));
    const config = path.join(dirs.current(), 'egressfw.yml');
    writeFileSync(config, yaml);
    return { k, calls, config, ...fakeSyncDeps(k, dirs.current(), exec, query) };
  }
  const YAML = 'allow: [{ domain: api.example.com }]\ndns: { servers: [198.51.100.53] }\n';

  it('after an apply: the refused host and container connections go, the allowed stay; sync says how many (text and --json)', async () => {
    const s = setup(YAML);
    expect(await runSync({ config: s.config, stateDir: path.join(dirs.current(), 'state'), quiet: false }, s.deps, new EventEmitter())).toBe(0);
    expect(s.out.join('')).toContain('egressfw sync: cut 2 connections opened before that the new rules refuse (host 1, containers 1; 4 tracked)\n');
    expect(s.k.conntrack.map((l) => l.split(' ').slice(5, 9).join(' '))).toEqual(['-s 198.51.100.2 -d 203.0.113.5', '-s 198.51.100.66 -d 203.0.113.5']);
    // nothing to apply: nothing is listed or cut
    s.k.conntrack.push(line('198.51.100.66', '203.0.113.21', 443, '198.51.100.2'));
    s.calls.length = 0;
    s.out.length = 0;
    expect(await runSync({ config: s.config, stateDir: path.join(dirs.current(), 'state'), quiet: false, json: true }, s.deps, new EventEmitter())).toBe(0);
    expect(JSON.parse(s.out.join(''))).toEqual({ applied: [], warnings: [], flowsCut: { host: 0, containers: 0, tracked: 0 } });
    expect(s.calls.filter((c) => c.startsWith('conntrack'))).toEqual([]);
  });

  it('--json after an apply', async () => {
    const s = setup(YAML);
    await runSync({ config: s.config, stateDir: path.join(dirs.current(), 'state'), quiet: false, json: true }, s.deps, new EventEmitter());
    const doc = JSON.parse(s.out.join('')) as { applied: string[]; flowsCut: unknown };
    expect(doc.applied.length).toBeGreaterThan(0);
    expect(doc.flowsCut).toEqual({ host: 1, containers: 1, tracked: 4 });
  });

  it('audit mode cuts nothing; conntrack missing is a warning naming the package, and the sync still succeeds', async () => {
    const audit = setup(`mode: audit\n${YAML}`);
    await runSync({ config: audit.config, stateDir: path.join(dirs.current(), 'state'), quiet: true }, audit.deps, new EventEmitter());
    expect(audit.k.conntrack).toHaveLength(4);
    expect(audit.calls.filter((c) => c.startsWith('conntrack'))).toEqual([]);
    const missing = setup(YAML, { missing: true });
    expect(await runSync({ config: missing.config, stateDir: path.join(dirs.current(), 'state2'), quiet: true }, missing.deps, new EventEmitter())).toBe(0);
    expect(missing.warn.join('\n')).toMatch(/conntrack is not installed: .*`apt-get install conntrack`/);
  });
});

describe('after the gate\'s reload: flows to the elements it took out, judged against the table as it is', () => {
  const table = (sets: Record<string, string[]>): NftObserved => ({ chain: null, ruleComments: [], gateChains: new Map(), sets: new Map(Object.entries(sets)), policyChains: new Map(), maps: new Map(), raw: [] });
  const cfg = (extra = '') => parseConfig(`allow: [{ domain: api.example.com }]\ndns: { servers: [198.51.100.53], gate: { enabled: true } }\n${extra}`, 'x');
  it('every allow and gate set counts, a policy\'s too (a flow one of them allows is kept); audit mode and no table: nothing judged', () => {
    const r = kernelContainerRules(cfg(), table({ allow4: ['203.0.113.10 . tcp . 443'], gate4: ['203.0.113.40 . tcp . 443'], 'pol-ci-gate4': ['203.0.113.41 . tcp . 443'], 'pol-ci-allow6': ['2001:db8::1 . tcp . 443'], refused4: [] }))!;
    expect(r.sets).toEqual({ 4: ['203.0.113.10 . tcp . 443'], 6: ['2001:db8::1 . tcp . 443'] });
    expect(r.gate).toEqual({ 4: ['203.0.113.40 . tcp . 443', '203.0.113.41 . tcp . 443'], 6: [] });
    expect(r).toMatchObject({ gateOn: true, bySource: null, proxy: null });
    expect(kernelContainerRules(cfg('mode: audit'), table({}))).toBeNull();
    expect(kernelContainerRules(cfg(), null)).toBeNull();
  });
  it('only flows to the elements taken out are cut, and only those the table refuses', () => {
    const rules = containerRules({ gate: { 4: [], 6: [] } });
    const refused = refusedFlows({ flows, ifaces, host: null, containers: rules }).containers;
    const only = toElements([{ ip: '203.0.113.40', proto: 'tcp', port: 443 }]);
    const picked = refused.filter(only);
    expect(picked.length).toBeGreaterThan(0);
    expect(picked.every((f) => f.dst === '203.0.113.40' && f.dport === 443)).toBe(true);
    expect(refused.length).toBeGreaterThan(picked.length);
  });
});
