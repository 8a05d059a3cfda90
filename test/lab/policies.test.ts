// Per-workload policies (issue 18) against a real kernel, dockerd and docker-compose, inside the lab.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { labDescribe } from './requirements.js';
import { snapshotMachineNetwork, startLab, type Lab } from './lab.js';
import { canonical, CLI, efw, kernelState, orderInsensitive, within, writeConfig } from './efw.js';

const isRoot = process.getuid?.() === 0;
// lab sites (test/lab/README.md): allowed.test, allowed2.test, other.test
const PAY = { v4: '203.0.113.10', v6: '2001:db8:10::10' };
const CI = { v4: '203.0.113.11', v6: '2001:db8:10::11' };
const HOST = { v4: '203.0.113.30', v6: '2001:db8:30::30' };
const SUBNET4 = '198.51.100.240/28';
const SUBNET6 = '2001:db8:1:5::/64';

const COMPOSE = `version: "2.4"
services:
  pay:
    image: busybox:latest
    command: ["sleep", "86400"]
  ci:
    image: busybox:latest
    command: ["sleep", "86400"]
    labels:
      egressfw.policy: ci
  web:
    image: busybox:latest
    command: ["sleep", "86400"]
networks:
  default:
    enable_ipv6: true
    ipam:
      config:
        - subnet: ${SUBNET4}
        - subnet: "${SUBNET6}"
`;

labDescribe('per-workload policies (real kernel, dockerd, docker-compose)', { docker: true, compose: true }, () => {
  let lab: Lab;
  let machineBefore: string;
  let pristine: string;
  let config: string;
  let stateDir: string;
  let dir: string;
  const sync = () => efw(lab, ['sync', '--config', config, '--state-dir', stateDir]);
  const compose = (args: string[]) => lab.host(['sh', '-c', 'cd "$0" && exec "$@"', dir, 'docker-compose', '-p', 'shop', ...args], { timeoutMs: 120_000 });
  const reaches = async (container: string, addr: string) => (await lab.fetch(`http://${addr.includes(':') ? `[${addr}]` : addr}/`, { container, timeoutSec: 2 })).ok;
  const addressOf = async (container: string) => (await lab.docker(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', container])).stdout.trim();
  /** [container, address, expected] checked in parallel; returns the mismatches (empty: all as expected) */
  const matrix = async (cases: [string, string, boolean][]) => {
    const got = await Promise.all(cases.map(([c, a]) => reaches(c, a)));
    return cases.filter((c, i) => got[i] !== c[2]).map(([c, a, want]) => `${c} -> ${a}: expected ${want ? 'reached' : 'refused'}`);
  };

  let daemon: ChildProcess | undefined;
  const logs: string[] = [];
  const events = () => logs.flatMap((l) => {
    try {
      return [JSON.parse(l) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
  const startDaemon = () => {
    const argv = lab.hostArgv([process.execPath, CLI, 'daemon', '--json', '--config', config, '--state-dir', stateDir]);
    daemon = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    daemon.stdout!.on('data', (d: Buffer) => logs.push(...d.toString().trim().split('\n')));
    daemon.stderr!.on('data', (d: Buffer) => logs.push(...d.toString().trim().split('\n')));
  };
  const stopDaemon = async () => {
    const d = daemon;
    daemon = undefined;
    if (!d) return null;
    const exited = new Promise<number | null>((r) => d.once('exit', (code) => r(code)));
    d.kill('SIGTERM');
    return exited;
  };
  /** a container that tries both sites from its first moment: what it sees before its map entry exists */
  const PROBE = (own: string, other: string) => [
    'sh', '-c',
    // up to ~15 s of attempts, one every 50 ms
    `n=0; while [ $n -lt 300 ]; do usleep 50000; if timeout 1 wget -q -O /dev/null http://${other}/ 2>/dev/null; then echo OTHER-REACHED $n; fi; ` +
      `if timeout 1 wget -q -O /dev/null http://${own}/ 2>/dev/null; then echo OWN-OK $n; break; fi; n=$((n+1)); done; exec sleep 86400`,
  ];
  const containerLog = async (name: string) => (await lab.docker(['logs', name])).stdout;

  beforeAll(async () => {
    machineBefore = await snapshotMachineNetwork();
    lab = await startLab({ docker: true, ipv6: true });
    stateDir = `${lab.dir}/state`;
    dir = path.join(lab.dir, 'shop');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'docker-compose.yml'), COMPOSE);
    config = writeConfig(
      lab,
      'egressfw.yml',
      `allow:
  - domain: other.test
    ports: [80]
policies:
  payments:
    allow:
      - domain: allowed.test
        ports: [80]
  ci:
    allow:
      - domain: allowed2.test
        ports: [80]
containers:
  default: none
  assign:
    - policy: payments
      match: { project: shop, service: pay }
    - policy: host
      match: { name: "hosty" }
dns:
  servers: [${lab.dnsServer}, "${lab.dnsServer6}"]
  timeout: 1s
  # the gate runs under the daemon (the tests before the daemon's use addresses, not names)
  gate:
    enabled: true
`,
    );
    // ufw reloaded once after enable: its steady state (the first enable leaves ufw6-user-limit half-filled)
    const [up, ufw] = await Promise.all([compose(['up', '-d']), lab.host(['sh', '-c', 'ufw --force enable && ufw reload'])]);
    expect(up.exitCode, up.stderr).toBe(0);
    expect(ufw.exitCode, ufw.stderr).toBe(0);
    await Promise.all([
      lab.runContainer({ name: 'typo', network: 'shop_default', args: ['--label', 'egressfw.policy=paymnts'] }),
      lab.runContainer({ name: 'hosty' }),
    ]);
    pristine = orderInsensitive(canonical(await kernelState(lab)));
  }, 240_000);

  afterAll(async () => {
    await stopDaemon();
    await lab?.stop();
    if (isRoot) expect(await snapshotMachineNetwork()).toBe(machineBefore);
  });

  it('sync maps each container to its policy: each reaches exactly its own names (IPv4 and IPv6), an unknown name and default none get nothing', async () => {
    const r = await sync();
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/container typo: label egressfw\.policy names policy "paymnts", which the config does not define: it gets nothing/);
    expect(
      await matrix([
        ['shop_pay_1', PAY.v4, true],
        ['shop_pay_1', PAY.v6, true],
        ['shop_pay_1', CI.v4, false],
        ['shop_pay_1', HOST.v4, false],
        ['shop_ci_1', CI.v4, true],
        ['shop_ci_1', CI.v6, true],
        ['shop_ci_1', PAY.v4, false],
        ['shop_ci_1', PAY.v6, false],
        ['shop_web_1', PAY.v4, false],
        ['shop_web_1', HOST.v4, false],
        ['typo', PAY.v4, false],
        ['typo', HOST.v4, false],
        ['hosty', HOST.v4, true],
        ['hosty', PAY.v4, false],
      ]),
    ).toEqual([]);
    // the refusals are recorded in the kernel like any other
    const rec = await lab.host(['nft', 'list', 'set', 'inet', 'egressfw', 'refused4']);
    expect(rec.stdout).toContain(`${await addressOf('shop_web_1')} . ${PAY.v4} . tcp . 80`);
  });

  it('a second sync changes nothing', async () => {
    const r = await sync();
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/no changes/);
  });

  it('plan --json lists each policy with its names and containers, and the container an unknown name leaves with nothing', async () => {
    const r = await efw(lab, ['plan', '--json', '--config', config, '--state-dir', stateDir]);
    expect(r.exitCode, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as { policies: { name: string; names: string[]; containers: { name: string; by: string }[] }[]; unassigned: { name: string; unknown?: string }[] };
    const pay = doc.policies.find((p) => p.name === 'payments')!;
    expect(pay.names).toEqual(['allowed.test']);
    expect(pay.containers.map((c) => [c.name, c.by])).toEqual([['shop_pay_1', 'containers.assign[0]']]);
    expect(doc.policies.find((p) => p.name === 'ci')!.containers.map((c) => [c.name, c.by])).toEqual([['shop_ci_1', 'label egressfw.policy']]);
    expect(doc.unassigned.find((c) => c.name === 'typo')).toMatchObject({ unknown: 'paymnts' });
  });

  it('an address Docker hands to a container of another policy gets that policy, never the old one; a restarted container keeps its policy at a new address; unmapped meanwhile means nothing', async () => {
    const old = await addressOf('shop_pay_1');
    expect((await lab.docker(['stop', '-t', '0', 'shop_pay_1'])).exitCode).toBe(0);
    // cron mode: the map follows Docker at each sync (the daemon follows its events, daemon test below)
    let r = await sync();
    expect(r.exitCode, r.stderr).toBe(0);
    const reuser = await lab.runContainer({ name: 'reuser', network: 'shop_default', args: ['--ip', old, '--label', 'egressfw.policy=ci'] });
    expect(await addressOf(reuser)).toBe(old);
    // not in the map yet: nothing at all, neither its own policy nor the old one's
    expect(await matrix([[reuser, CI.v4, false], [reuser, PAY.v4, false]])).toEqual([]);
    r = await sync();
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await matrix([[reuser, CI.v4, true], [reuser, PAY.v4, false]])).toEqual([]);
    // pay comes back on another address (its old one is taken); before sync it is unmapped and gets nothing
    expect((await lab.docker(['start', 'shop_pay_1'])).exitCode).toBe(0);
    const next = await addressOf('shop_pay_1');
    expect(next).not.toBe(old);
    expect(await matrix([['shop_pay_1', PAY.v4, false], ['shop_pay_1', HOST.v4, false]])).toEqual([]);
    r = await sync();
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await matrix([['shop_pay_1', PAY.v4, true], ['shop_pay_1', CI.v4, false], [reuser, PAY.v4, false]])).toEqual([]);
    expect((await lab.docker(['rm', '-f', reuser])).exitCode).toBe(0);
  });

  it('the daemon follows Docker\'s events: a container that starts and connects at once is refused, never more, until mapped; then its own policy', async () => {
    const t0 = Math.floor(Date.now() / 1000);
    startDaemon();
    await within(20_000, 'daemon mapped the inventory', async () => events().some((e) => e.event === 'policy-map' && e.resync));
    const started = await Promise.all(
      Array.from({ length: 6 }, (_, i) => lab.runContainer({ name: `burst${i}`, network: 'shop_default', args: ['--label', 'egressfw.policy=ci'], cmd: PROBE(CI.v4, PAY.v4) })),
    );
    try {
      await within(20_000, 'every burst container mapped and through', async () => (await Promise.all(started.map(containerLog))).every((l) => /OWN-OK/.test(l)));
    } catch (e) {
      // what the daemon did, and what the containers saw, to tell which side failed
      console.log(`daemon log:\n${logs.slice(-80).join('\n')}\ncontainers:\n${(await Promise.all(started.map(async (n) => `${n} ${await addressOf(n)}: ${(await containerLog(n)).slice(-200)}`))).join('\n')}\nmap:\n${(await lab.host(['nft', 'list', 'map', 'inet', 'egressfw', 'policy4'])).stdout}`);
      throw e;
    }
    for (const name of started) expect(await containerLog(name)).not.toMatch(/OTHER-REACHED/);
    const ms = events().filter((e) => e.event === 'policy-map' && typeof e.ms === 'number' && /^burst/.test(String(e.container))).map((e) => e.ms as number).sort((a, b) => a - b);
    expect(ms.length).toBe(6);
    console.log(`start event -> map entry (${ms.length} containers started at once): ${ms.join(', ')} ms`);
    if (process.env.EFW_RECORD_EVENTS) {
      // real events for the unit tests of the pure parser (test/unit/policy-follow.test.ts)
      const rec = await lab.docker(['events', '--since', String(t0), '--until', String(Math.floor(Date.now() / 1000)), '--format', '{{json .}}']);
      fs.writeFileSync(path.resolve('test/unit/fixtures/docker/events-20.10.jsonl'), rec.stdout);
    }
    for (const name of started) await lab.docker(['rm', '-f', name]);
  });

  it('the gate per policy: a name only payments allows resolves for pay and is REFUSED for ci without asking upstream; an unmapped source is REFUSED', async () => {
    const lookup = async (c: string, name: string) => {
      const r = await lab.docker(['exec', c, 'timeout', '3', 'nslookup', name], { timeoutMs: 20_000 });
      return `${r.stdout}${r.stderr}`;
    };
    await within(20_000, 'the gate answers pay', async () => (await lookup('shop_pay_1', 'allowed.test')).includes(PAY.v4));
    const [ci, web, ciOwn] = await Promise.all([lookup('shop_ci_1', 'allowed.test'), lookup('shop_web_1', 'allowed.test'), lookup('shop_ci_1', 'allowed2.test')]);
    // Docker's embedded resolver may turn the gate's REFUSED into SERVFAIL: no address either way
    expect(ci).not.toContain(PAY.v4);
    expect(web).not.toContain(PAY.v4);
    expect(ci).toMatch(/REFUSED|SERVFAIL|can't find/i);
    expect(ciOwn).toContain(CI.v4);
    // the gate's log: ci's query refused by the gate itself (a refusal is answered without asking upstream)
    const ciAddr = await addressOf('shop_ci_1');
    const gateLog = async () =>
      (await lab.host(['sh', '-c', `cat ${stateDir}/gate.log 2>/dev/null || true`])).stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    // the log is written in batches: wait for the line
    await within(10_000, 'the gate logged the refusal of ci', async () => (await gateLog()).some((l) => l.client === ciAddr && l.name === 'allowed.test' && l.verdict === 'refused'));
    expect((await gateLog()).some((l) => l.client === ciAddr && l.name === 'allowed.test' && l.verdict === 'allowed')).toBe(false);
  });

  it('a reload takes out of a policy\'s gate set what that policy no longer opens, and only that (the other policy\'s answers stay)', async () => {
    const gateSet = async (p: string) => (await lab.host(['nft', 'list', 'set', 'inet', 'egressfw', `pol-${p}-gate4`])).stdout;
    expect(await gateSet('payments')).toContain(`${PAY.v4} . tcp . 80`);
    expect(await gateSet('ci')).toContain(`${CI.v4} . tcp . 80`);
    const text = fs.readFileSync(config, 'utf8');
    const reloaded = async () => {
      const n = logs.filter((l) => /gate: config reloaded/.test(l)).length;
      daemon!.kill('SIGHUP');
      await within(10_000, 'the gate reloaded', async () => logs.filter((l) => /gate: config reloaded/.test(l)).length > n);
      return logs.filter((l) => /gate: config reloaded/.test(l)).at(-1)!;
    };
    try {
      // payments keeps its name, on another port: its port-80 answers go, ci's stay
      fs.writeFileSync(config, text.replace(/(- domain: allowed\.test\n\s+ports: )\[80\]/, '$1[8080]'));
      expect(await reloaded()).toMatch(/took [1-9]\d* address/);
      expect(await gateSet('payments')).not.toContain(`${PAY.v4} . tcp . 80`);
      expect(await gateSet('ci')).toContain(`${CI.v4} . tcp . 80`);
    } finally {
      fs.writeFileSync(config, text);
      await reloaded();
      // the tests below use payments' static set: back after the reload's refresh
      await within(15_000, 'payments allowed again', async () => (await lab.host(['nft', 'list', 'set', 'inet', 'egressfw', 'pol-payments-allow4'])).stdout.includes(`${PAY.v4} . tcp . 80`));
    }
  });

  it('the daemon: an address a dead container held goes to a container of another policy with that policy only', async () => {
    const old = await addressOf('shop_ci_1');
    expect((await lab.docker(['stop', '-t', '0', 'shop_ci_1'])).exitCode).toBe(0);
    // no sync in between: the die event removed the member, the start event maps the newcomer
    const reuser = await lab.runContainer({ name: 'reuser2', network: 'shop_default', args: ['--ip', old, '--label', 'egressfw.policy=payments'], cmd: PROBE(PAY.v4, CI.v4) });
    await within(15_000, 'reuser2 through to its own policy', async () => /OWN-OK/.test(await containerLog(reuser)));
    expect(await containerLog(reuser)).not.toMatch(/OTHER-REACHED/);
    expect(await matrix([[reuser, PAY.v4, true], [reuser, CI.v4, false]])).toEqual([]);
    expect((await lab.docker(['rm', '-f', reuser])).exitCode).toBe(0);
  });

  it('dockerd restarted while the daemon runs, and the daemon restarted while containers run: the map is right afterwards', async () => {
    const mark = logs.length;
    await lab.restartDocker();
    await within(20_000, 'events stream lost and reopened', async () => logs.slice(mark).some((l) => /"docker-events"/.test(l)) && logs.slice(mark).some((l) => /"resync"/.test(l)));
    // containers without a restart policy are down now: bring the project back (new addresses, maybe)
    expect((await compose(['up', '-d'])).exitCode).toBe(0);
    await within(15_000, 'pay and ci mapped again', async () => (await matrix([['shop_pay_1', PAY.v4, true], ['shop_ci_1', CI.v4, true]])).length === 0);
    expect(await matrix([['shop_pay_1', CI.v4, false], ['shop_ci_1', PAY.v4, false], ['shop_web_1', PAY.v4, false]])).toEqual([]);
    expect([0, 143]).toContain(await stopDaemon()); // 143: the stop landed in a refresh, which it rolled back
    const late = await lab.runContainer({ name: 'late', network: 'shop_default', args: ['--label', 'egressfw.policy=ci'] });
    expect(await matrix([[late, CI.v4, false]])).toEqual([]); // nobody maps it: nothing
    startDaemon();
    await within(20_000, 'late mapped by the first sync', async () => (await matrix([[late, CI.v4, true]])).length === 0);
    expect(await matrix([[late, PAY.v4, false]])).toEqual([]);
    expect([0, 143]).toContain(await stopDaemon()); // 143: the stop landed in a refresh, which it rolled back
    expect((await lab.docker(['rm', '-f', late])).exitCode).toBe(0);
  });

  it('uninstall restores the kernel exactly', async () => {
    // the containers as at the pristine snapshot (pay's new address leaves no trace in Docker 20.10's rules)
    const r = await efw(lab, ['uninstall', '--config', config, '--state-dir', stateDir]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(orderInsensitive(canonical(await kernelState(lab)))).toBe(pristine);
  });
});
