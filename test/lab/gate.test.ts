// The DNS gate against a real kernel, ufw and dockerd (EFW_DOCKER picks 20.10 or 28.5): containers on
// every kind of network resolve only allowed names, the fake internet's resolver never sees the others,
// answered IPs are open at once (before any refresh), wildcards work, and a dead gate fails closed.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { snapshotMachineNetwork, startLab, type Lab } from './lab.js';
import { labDescribe } from './requirements.js';
import { CLI, efw, writeConfig } from './efw.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// The engine is EFW_DOCKER's (scripts/ci-matrix.sh runs this file on 20.10, 26.1, 28.5 and 28.5-nft).
labDescribe('DNS gate (real kernel, ufw, dockerd)', { docker: true }, () => {
  let lab: Lab;
  let machineBefore: string;
  let config: string;
  let stateDir: string;
  let daemon: ChildProcess | undefined;
  const logs: string[] = [];
  const containers = ['c-default', 'c-user', 'c-custom', 'c-otherdns', 'c-updns'];

  /** busybox nslookup inside a container: the addresses answered, or null when it failed */
  const lookup = async (container: string, name: string, server?: string): Promise<string[] | null> => {
    const r = await lab.docker(['exec', container, 'timeout', '3', 'nslookup', name, ...(server ? [server] : [])], { timeoutMs: 20_000 });
    if (r.exitCode !== 0) return null;
    const ans = r.stdout.split(/\n\s*\n/).filter((b) => /^Name:/m.test(b)).join('\n');
    return [...ans.matchAll(/^Address:\s*(\S+)/gm)].map((m) => m[1]!).sort();
  };
  const upstreamLog = () => fs.readFileSync(`${lab.dir}/dnsmasq.log`, 'utf8');
  const gateLog = () => (fs.existsSync(`${stateDir}/gate.log`) ? fs.readFileSync(`${stateDir}/gate.log`, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : []);
  const gatePid = () => (JSON.parse(fs.readFileSync(`${stateDir}/gate.json`, 'utf8')) as { pid: number }).pid;
  async function within<T>(ms: number, what: string, fn: () => Promise<T | false | null | undefined>): Promise<T> {
    const t0 = Date.now();
    for (;;) {
      const v = await fn();
      if (v) return v;
      if (Date.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms\n${logs.slice(-30).join('\n')}`);
      await sleep(200);
    }
  }

  beforeAll(async () => {
    machineBefore = await snapshotMachineNetwork();
    lab = await startLab({ docker: true, ipv6: true });
    stateDir = `${lab.dir}/state`;
    // No refresh during the test (a change must be usable through the gate alone); minTtl 1h: no early refresh either.
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
staleGrace: 30s
schedule:
  refresh: "0 0 1 1 *"
  driftCheck: 1s
`);
    await lab.setRecords('a.wild.test', { A: ['203.0.113.30'] });
    await lab.setRecords('b.wild.test', { A: ['203.0.113.40'] });
    expect((await lab.host(['sh', '-c', 'ufw --force enable && ufw reload'])).exitCode).toBe(0);
    if (!/^2[0-6]\./.test(lab.dockerVersion)) {
      // Docker 27+: its embedded resolver must ask from the containers' side (see docs/dns-gate.md)
      const r = await efw(lab, ['install', '--docker-dns', '--config', config]);
      expect(r.stdout + r.stderr).toMatch(/Restart Docker/);
      await lab.restartDocker();
      expect((await efw(lab, ['install', '--docker-dns', '--config', config])).stdout).toMatch(/^nothing to change/);
    }
    const nets = await Promise.all([
      lab.docker(['network', 'create', '--ipv6', '--subnet', '2001:db8:1:1::/64', 'appnet']),
      lab.docker(['network', 'create', '--ipv6', '--subnet', '2001:db8:1:2::/64', '-o', 'com.docker.network.bridge.name=custom0', 'customnet']),
    ]);
    for (const r of nets) expect(r.exitCode, r.stderr).toBe(0);
    await Promise.all([
      lab.runContainer({ name: 'c-default' }),
      lab.runContainer({ name: 'c-user', network: 'appnet' }),
      lab.runContainer({ name: 'c-custom', network: 'customnet' }),
      lab.runContainer({ name: 'c-otherdns', network: 'appnet', args: ['--dns', '203.0.113.30'] }),
      lab.runContainer({ name: 'c-updns', args: ['--dns', lab.dnsServer] }),
    ]);
    const sync = await efw(lab, ['sync', '--config', config, '--state-dir', stateDir]);
    expect(sync.exitCode, sync.stderr).toBe(0);
    const argv = lab.hostArgv([process.execPath, CLI, 'daemon', '--config', config, '--state-dir', stateDir]);
    daemon = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    daemon.stdout!.on('data', (d: Buffer) => logs.push(...d.toString().trim().split('\n')));
    daemon.stderr!.on('data', (d: Buffer) => logs.push(...d.toString().trim().split('\n')));
    await within(15_000, 'gate listening', async () => logs.some((l) => /gate: listening/.test(l)));
  });

  afterAll(async () => {
    if (process.env.EFW_GATE_DEBUG && stateDir) fs.copyFileSync(`${stateDir}/gate.log`, process.env.EFW_GATE_DEBUG);
    if (daemon) {
      const d = daemon;
      const exited = new Promise((r) => d.once('exit', r));
      d.kill('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
    }
    await lab?.stop();
    expect(await snapshotMachineNetwork()).toBe(machineBefore);
  });

  it('on every network an allowed name resolves and connects; an unlisted one is refused and never reaches the upstream', async () => {
    const results = await Promise.all(
      containers.map(async (c) => ({
        c,
        allowed: await lookup(c, 'allowed.test'),
        fetch: await lab.fetch('http://allowed.test/', { container: c, timeoutSec: 3 }),
        refused: await lookup(c, `exfil-${c}.blocked.test`),
      })),
    );
    for (const r of results) {
      expect(r.allowed, r.c).toContain('203.0.113.10');
      expect(r.fetch.body, `${r.c}: ${r.fetch.stderr}`).toMatch(/name=allowed\.test/);
      expect(r.refused, r.c).toBeNull();
    }
    const up = upstreamLog();
    expect(up).toMatch(/query\[A\] allowed\.test/);
    expect(up).not.toMatch(/exfil-/);
    // attributed to containers, refused in the log (written in batches: wait for it)
    for (const c of containers) {
      await within(3000, `log line for ${c}`, async () => gateLog().some((l) => l.name === `exfil-${c}.blocked.test` && l.verdict === 'refused' && l.container?.name === c));
    }
  });

  it('status: the gate answers, Docker goes through it, the last hour per container', async () => {
    const r = await efw(lab, ['status', '--config', config, '--state-dir', stateDir, '--json']);
    const doc = JSON.parse(r.stdout) as { gate: { answering: { ok: boolean }; docker: { throughGate: boolean }; lastHour: { refused: number; clients: { who: string; refused: number }[] } } };
    expect(doc.gate.answering.ok).toBe(true);
    expect(doc.gate.docker.throughGate).toBe(true);
    expect(doc.gate.lastHour.refused).toBeGreaterThanOrEqual(containers.length);
    expect(doc.gate.lastHour.clients.map((c) => c.who)).toEqual(expect.arrayContaining(containers));
    const text = await efw(lab, ['status', '--config', config, '--state-dir', stateDir]);
    expect(text.stdout).toMatch(/^DNS gate\n  answering/m);
    expect(text.stdout).toMatch(/top refused names:\n\s+\d+x exfil-/);
  });

  it('DNS aimed at another server (or straight at the upstream) lands in the gate: unlisted names refused there', async () => {
    const [other, upstreamDirect, viaOther] = await Promise.all([
      lookup('c-user', 'exfil-other.blocked.test', '203.0.113.30'),
      lookup('c-default', 'exfil-direct.blocked.test', lab.dnsServer),
      lookup('c-user', 'allowed.test', '203.0.113.30'),
    ]);
    expect(other).toBeNull();
    expect(upstreamDirect).toBeNull();
    expect(viaOther).toContain('203.0.113.10'); // answered by the gate: nothing listens on 203.0.113.30:53
    expect(upstreamLog()).not.toMatch(/exfil-(other|direct)/);
  });

  it('a changed answer is usable at once, through the gate alone (no refresh ran)', async () => {
    await lab.setRecords('allowed.test', { A: ['203.0.113.11'], AAAA: ['2001:db8:10::11'] });
    try {
      const addrs = await within(12_000, 'new answer through the gate (after its 5 s cache)', async () => {
        const a = await lookup('c-user', 'allowed.test');
        return a?.includes('203.0.113.11') && a.includes('2001:db8:10::11') ? a : null;
      });
      expect(addrs).toEqual(['2001:db8:10::11', '203.0.113.11']);
      const r = await lab.fetch('http://allowed.test/', { container: 'c-user', timeoutSec: 3 });
      expect(r.body, r.stderr).toMatch(/site=(203\.0\.113\.11|2001:db8:10::11) /);
      // it came from the gate's sets, not from a sync
      const table = (await lab.host(['nft', 'list', 'table', 'inet', 'egressfw'])).stdout;
      expect(table).toMatch(/set gate4 \{[^}]*203\.0\.113\.11 \. tcp \. 80 timeout/);
      expect(table).toMatch(/set gate6 \{[^}]*2001:db8:10::11 \. tcp \. 80 timeout/);
      expect(table).not.toMatch(/set allow4 \{[^}]*203\.0\.113\.11/);
    } finally {
      await lab.setRecords('allowed.test', { A: ['203.0.113.10'], AAAA: ['2001:db8:10::10'] });
    }
  });

  it('a wildcard entry opens two names under it, while the same IP is refused before any lookup', async () => {
    const before = await lab.fetch('http://203.0.113.30/', { container: 'c-custom', timeoutSec: 2 });
    expect(before.ok).toBe(false);
    expect(await lookup('c-custom', 'a.wild.test')).toEqual(['203.0.113.30']);
    expect(await lookup('c-custom', 'b.wild.test')).toEqual(['203.0.113.40']);
    const [a, b] = await Promise.all([
      lab.fetch('http://a.wild.test/', { container: 'c-custom', timeoutSec: 3 }),
      lab.fetch('http://b.wild.test/', { container: 'c-custom', timeoutSec: 3 }),
    ]);
    expect(a.body, a.stderr).toMatch(/site=203\.0\.113\.30/);
    expect(b.body, b.stderr).toMatch(/site=203\.0\.113\.40/);
    expect(await lookup('c-custom', 'wild.test')).toBeNull(); // the zone itself is not below it
  });

  it('gate down: containers cannot resolve and nothing reaches the upstream; the daemon brings it back', async () => {
    const pid = gatePid();
    const marker = upstreamLog().length;
    process.kill(pid, 'SIGSTOP'); // down, but not exited: the supervisor cannot restart it yet
    try {
      const [a, b] = await Promise.all([lookup('c-user', 'allowed.test'), lookup('c-default', 'allowed.test')]);
      expect(a).toBeNull();
      expect(b).toBeNull();
      expect(upstreamLog().slice(marker)).not.toMatch(/query\[/);
      const st = await efw(lab, ['status', '--config', config, '--state-dir', stateDir, '--json']);
      expect(st.exitCode).toBe(3);
      expect(JSON.parse(st.stdout).gate.answering.ok).toBe(false);
    } finally {
      process.kill(pid, 'SIGKILL');
    }
    const t0 = Date.now();
    await within(10_000, 'gate restarted', async () => fs.existsSync(`${stateDir}/gate.json`) && gatePid() !== pid);
    const back = await within(10_000, 'resolution back', async () => lookup('c-user', 'allowed.test'));
    expect(back).toContain('203.0.113.10');
    console.log(`gate back ${Date.now() - t0} ms after it was killed (Docker ${lab.dockerVersion})`);
    expect(logs.some((l) => /gate-exited/.test(l))).toBe(true);
  });
});
