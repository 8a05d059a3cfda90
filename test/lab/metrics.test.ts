// Prometheus metrics from a real daemon against a real kernel, ufw, dockerd and the DNS gate: what the
// endpoint and the textfile say matches what happened (a refused connection counts once, for the
// containers and for the host; a DNS refusal counts once; a drift repair counts once), both pass
// `promtool check metrics`, and the endpoint answers on the host's loopback only: not from a
// container, not from outside the host.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { snapshotMachineNetwork, startLab, type Lab } from './lab.js';
import { labDescribe } from './requirements.js';
import { CLI, efw, writeConfig } from './efw.js';
import { parseExposition, type Samples } from '../support/prom-text.js';
import { debian12Tool } from '../support/node-runtimes.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const PORT = 9633;

labDescribe('metrics (real kernel, ufw, dockerd, DNS gate)', { docker: true }, () => {
  let lab: Lab;
  let machineBefore: string;
  let config: string;
  let stateDir: string;
  let textfile: string;
  let promtool: string;
  let daemon: ChildProcess | undefined;
  const logs: string[] = [];

  const scrape = async (): Promise<{ text: string; s: Samples }> => {
    const r = await lab.host(['curl', '-sS', '-m', '3', `http://127.0.0.1:${PORT}/metrics`]);
    expect(r.exitCode, r.stderr).toBe(0);
    return { text: r.stdout, s: parseExposition(r.stdout) };
  };
  const textfileNow = () => parseExposition(fs.readFileSync(textfile, 'utf8'));
  /** wait for a metric to reach a value, then make sure it stays there (counted once, not again) */
  async function settles(key: string, want: number, ms = 10_000): Promise<void> {
    const t0 = Date.now();
    while ((await scrape()).s.get(key) !== want) {
      if (Date.now() - t0 > ms) throw new Error(`${key} is ${(await scrape()).s.get(key)}, not ${want}, after ${ms} ms\n${logs.slice(-20).join('\n')}`);
      await sleep(300);
    }
    await sleep(2500); // two more metric intervals and drift checks
    expect((await scrape()).s.get(key), `${key} changed again`).toBe(want);
  }

  beforeAll(async () => {
    machineBefore = await snapshotMachineNetwork();
    promtool = await debian12Tool('prometheus', 'usr/bin/promtool');
    lab = await startLab({ docker: true });
    stateDir = `${lab.dir}/state`;
    textfile = `${lab.dir}/node-exporter/egressfw.prom`;
    fs.mkdirSync(`${lab.dir}/node-exporter`);
    config = writeConfig(lab, 'egressfw.yml', `allow:
  - domain: allowed.test
    ports: [80]
dns:
  servers: [${lab.dnsServer}]
  timeout: 1s
  minTtl: 1h
  gate:
    enabled: true
schedule:
  refresh: "0 0 1 1 *"
  driftCheck: 1s
metrics:
  listen: "127.0.0.1:${PORT}"
  textfile: ${textfile}
  interval: 1s
`);
    expect((await lab.host(['sh', '-c', 'ufw --force enable && ufw reload'])).exitCode).toBe(0);
    if (!/^2[0-6]\./.test(lab.dockerVersion)) {
      await efw(lab, ['install', '--docker-dns', '--config', config]);
      await lab.restartDocker();
    }
    await lab.runContainer({ name: 'c1' });
    const sync = await efw(lab, ['sync', '--config', config, '--state-dir', stateDir]);
    expect(sync.exitCode, sync.stderr).toBe(0);
    const argv = lab.hostArgv([process.execPath, CLI, 'daemon', '--config', config, '--state-dir', stateDir]);
    daemon = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    daemon.stdout!.on('data', (d: Buffer) => logs.push(...d.toString().trim().split('\n')));
    daemon.stderr!.on('data', (d: Buffer) => logs.push(...d.toString().trim().split('\n')));
    const t0 = Date.now();
    while (!logs.some((l) => /gate: listening/.test(l)) || !logs.some((l) => / metrics /.test(l)) || !fs.existsSync(textfile)) {
      if (Date.now() - t0 > 20_000) throw new Error(`daemon not up:\n${logs.join('\n')}`);
      await sleep(200);
    }
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

  it('starts enforced: every part 1, the gate up, names ok, build info with the real Docker', async () => {
    await settles('egressfw_enforced{network="",part="containers"}', 1);
    const { s } = await scrape();
    expect(s.get('egressfw_enforced{network="",part="host"}')).toBe(1);
    expect(s.get('egressfw_gate_up')).toBe(1);
    expect(s.get('egressfw_domains{status="ok"}')).toBe(1);
    expect(s.get('egressfw_drift_operations')).toBe(0);
    expect([...s.keys()].find((k) => k.startsWith('egressfw_build_info{'))).toContain(`docker="${lab.dockerVersion}"`);
  });

  it('a refused connection counts once: from a container, and from the host', async () => {
    const before = (await scrape()).s;
    const c = 'egressfw_refused_connections_total{family="ipv4",part="containers"}';
    const h = 'egressfw_refused_connections_total{family="ipv4",part="host"}';
    const r = await lab.fetch('http://203.0.113.20/', { container: 'c1', timeoutSec: 3 });
    expect(r.ok).toBe(false);
    await settles(c, (before.get(c) ?? 0) + 1);
    const hr = await lab.host(['curl', '-sS', '-m', '3', 'http://203.0.113.20/']);
    expect(hr.exitCode).not.toBe(0);
    await settles(h, (before.get(h) ?? 0) + 1);
  });

  it('a DNS refusal counts once; an allowed answer is counted and timed', async () => {
    const before = (await scrape()).s;
    const refused = 'egressfw_dns_queries_total{decision="refused"}';
    const answered = 'egressfw_dns_queries_total{decision="answered"}';
    const q = await lab.docker(['exec', 'c1', 'timeout', '3', 'nslookup', '-type=a', 'exfil.blocked.test'], { timeoutMs: 20_000 });
    expect(q.exitCode).not.toBe(0);
    await settles(refused, before.get(refused)! + 1);
    const a = await lab.docker(['exec', 'c1', 'timeout', '3', 'nslookup', '-type=a', 'allowed.test'], { timeoutMs: 20_000 });
    expect(a.stdout).toContain('203.0.113.10');
    await settles(answered, before.get(answered)! + 1);
    expect((await scrape()).s.get('egressfw_dns_upstream_duration_seconds_count')).toBeGreaterThanOrEqual(1);
    // counted from the gate's query lines, which stay out of the daemon's journal (a flood would flood it)
    expect(logs.filter((l) => l.includes('exfil.blocked.test'))).toEqual([]);
  });

  it('a drift repair counts once', async () => {
    const before = (await scrape()).s;
    expect((await lab.host(['nft', 'flush', 'set', 'inet', 'egressfw', 'allow4'])).exitCode).toBe(0);
    await settles('egressfw_drift_repaired_total', before.get('egressfw_drift_repaired_total')! + 1);
    const { s } = await scrape();
    expect(s.get('egressfw_drift_detected_total')).toBe(before.get('egressfw_drift_detected_total')! + 1);
    expect(s.get('egressfw_sync_duration_seconds_count{job="repair"}')).toBe((before.get('egressfw_sync_duration_seconds_count{job="repair"}') ?? 0) + 1);
    expect(s.get('egressfw_enforced{network="",part="containers"}')).toBe(1);
  });

  it('the textfile says the same as the endpoint, and both pass promtool check metrics', async () => {
    await sleep(1500); // one more interval: the textfile holds the last tick
    const endpoint = await scrape();
    const file = textfileNow();
    for (const key of ['egressfw_drift_repaired_total', 'egressfw_dns_queries_total{decision="refused"}', 'egressfw_refused_connections_total{family="ipv4",part="containers"}', 'egressfw_refused_connections_total{family="ipv4",part="host"}', 'egressfw_enforced{network="",part="host"}']) {
      expect(file.get(key), key).toBe(endpoint.s.get(key));
    }
    for (const text of [endpoint.text, fs.readFileSync(textfile, 'utf8')]) {
      const r = await execa(promtool, ['check', 'metrics'], { input: text, reject: false });
      expect(r.stdout + r.stderr).toBe('');
      expect(r.exitCode).toBe(0);
    }
    // written atomically: no temp file left in the collector's directory, nothing else ending in .prom
    expect(fs.readdirSync(`${lab.dir}/node-exporter`).filter((f) => f.endsWith('.prom'))).toEqual(['egressfw.prom']);
  });

  it('the endpoint is not reachable from a container, nor from outside the host', async () => {
    // docker0's address and the host's uplink address: nothing listens there
    for (const url of [`http://198.51.100.65:${PORT}/metrics`, `http://198.51.100.2:${PORT}/metrics`, `http://127.0.0.1:${PORT}/metrics`]) {
      const r = await lab.fetch(url, { container: 'c1', timeoutSec: 3 });
      expect(r.ok, url).toBe(false);
    }
    const outside = await lab.inet(['curl', '-sS', '-m', '3', `http://198.51.100.2:${PORT}/metrics`]);
    expect(outside.exitCode).not.toBe(0);
    // not only because ufw drops incoming: the socket is bound to loopback alone
    const ss = await lab.host(['ss', '-Hltn', `sport = :${PORT}`]);
    expect(ss.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/)[3])).toEqual([`127.0.0.1:${PORT}`]);
    // and it still answers on loopback
    expect((await scrape()).s.get('egressfw_gate_up')).toBe(1);
  });
});
