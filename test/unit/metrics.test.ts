import { EventEmitter } from 'node:events';
import { closeSync, fstatSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createServer, request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { runDaemon, type DaemonMetricsDeps } from '../../src/commands/daemon.js';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError, PreconditionError } from '../../src/errors.js';
import { parseMetricsListen } from '../../src/metrics/listen.js';
import { Metrics } from '../../src/metrics/metrics.js';
import type { QueryFn } from '../../src/resolve/query.js';
import { formatLog, priorityOf } from '../../src/schedule/daemon.js';
import { journalStream } from '../../src/system/journal.js';
import { serveMetrics } from '../../src/system/metrics-out.js';
import { fakeSyncDeps, kernelExec, tempDirs } from '../support/fake-exec.js';
import { FakeKernel } from '../support/fake-kernel.js';
import { fixture } from '../support/files.js';
import { FakeTimers, until } from '../support/fake-timers.js';
import { parseExposition } from '../support/prom-text.js';

const dirs = tempDirs('efw-metrics-', { beforeEach, afterAll });
const BUILD = { version: '0.1.0', nodejs: '18.20.4' };

describe('metrics.listen', () => {
  it('takes loopback addresses and unix sockets', () => {
    expect(parseMetricsListen('127.0.0.1:9633')).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 9633 });
    expect(parseMetricsListen('localhost:9633')).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 9633 });
    expect(parseMetricsListen('[::1]:9633')).toEqual({ kind: 'tcp', host: '::1', port: 9633 });
    expect(parseMetricsListen('unix:/run/egressfw-metrics.sock')).toEqual({ kind: 'unix', path: '/run/egressfw-metrics.sock' });
  });

  it('refuses anything else with a message naming the fix', () => {
    for (const v of ['0.0.0.0:9633', '[::]:9633', '192.0.2.1:9633', ':9633', '9633', 'unix:relative.sock', '127.0.0.1:0', '127.0.0.1:70000', '127.0.0.2:9633']) {
      const r = parseMetricsListen(v);
      expect('error' in r, v).toBe(true);
    }
    expect((parseMetricsListen('0.0.0.0:9100') as { error: string }).error).toMatch(/"0\.0\.0\.0:9100" is not a loopback address: egressfw serves metrics only on loopback .*metrics\.textfile with node_exporter/);
  });

  it('a config with a public metrics.listen or a textfile not ending in .prom is refused (exit 2), with the key named', async () => {
    const dir = dirs.current();
    const file = path.join(dir, 'c.yml');
    writeFileSync(file, 'allow: [{ domain: api.example.com }]\nmetrics: { listen: "0.0.0.0:9633", textfile: /var/lib/node-exporter/egressfw.txt }\n');
    const e = await loadConfig(file).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as Error).message).toMatch(/metrics\.listen: "0\.0\.0\.0:9633" is not a loopback address/);
    expect((e as Error).message).toMatch(/metrics\.textfile: metrics\.textfile must be an absolute path ending in \.prom/);
    writeFileSync(file, 'allow: [{ domain: api.example.com }]\nmetrics: { listen: "[::1]:9633", textfile: /var/lib/node-exporter/egressfw.prom, interval: 5s }\n');
    expect((await loadConfig(file)).metrics).toEqual({ listen: { kind: 'tcp', host: '::1', port: 9633 }, textfile: '/var/lib/node-exporter/egressfw.prom', intervalSec: 5, domainLabels: false });
  });
});

it('the example config\'s metrics block, uncommented, loads', async () => {
  const file = path.join(dirs.current(), 'example.yml');
  const text = readFileSync('examples/egressfw.yml', 'utf8').replace(/^# (metrics:|  listen:|  textfile:)/gm, '$1');
  expect(text).toMatch(/^metrics:\n {2}listen: "127\.0\.0\.1:9633"/m);
  writeFileSync(file, text);
  expect((await loadConfig(file)).metrics).toEqual({ listen: { kind: 'tcp', host: '127.0.0.1', port: 9633 }, textfile: '/var/lib/prometheus/node-exporter/egressfw.prom', intervalSec: 15, domainLabels: false });
});

describe('Metrics', () => {
  it('counts the gate\'s decisions from its query lines and the upstream share of fresh answers in the histogram', async () => {
    const m = new Metrics(BUILD, { domainLabels: false, now: () => 1000 });
    const line = (verdict: string, cached: boolean, ms: number, releaseMs?: number) => JSON.stringify({ time: '2026-12-02T00:00:00.000Z', client: '172.17.0.2', container: null, name: 'x.test', type: 'A', verdict, rcode: 'NOERROR', ips: [], cached, ms, ...(releaseMs !== undefined ? { releaseMs } : {}), transport: 'udp' });
    m.gateLine(line('allowed', false, 30, 2)); // 28 ms upstream
    m.gateLine(line('allowed', true, 0));
    m.gateLine(line('refused', false, 0));
    m.gateLine(line('failed', false, 4000));
    m.gateLine(line('shed', false, 0));
    m.gateLine(JSON.stringify({ ...JSON.parse(line('shed', false, 0)), count: 40 })); // the held ones of a second, one line
    m.gateLine('gate: listening on 0.0.0.0'); // not a query line
    m.gateLine('{"cut');
    const s = parseExposition(await m.render());
    expect(s.get('egressfw_dns_queries_total{decision="answered"}')).toBe(2);
    expect(s.get('egressfw_dns_queries_total{decision="refused"}')).toBe(1);
    expect(s.get('egressfw_dns_queries_total{decision="failed"}')).toBe(1);
    expect(s.get('egressfw_dns_queries_total{decision="shed"}')).toBe(41);
    expect(s.get('egressfw_dns_upstream_duration_seconds_count')).toBe(1);
    expect(s.get('egressfw_dns_upstream_duration_seconds_bucket{le="0.025"}')).toBe(0);
    expect(s.get('egressfw_dns_upstream_duration_seconds_bucket{le="0.05"}')).toBe(1);
  });

  it('refusals are the kernel\'s own counters, per part and family; a side read with no records is 0, one not read is absent', async () => {
    const m = new Metrics(BUILD, { domainLabels: false, now: () => 1000 });
    const rec = (src: string, family: 4 | 6, packets: number) => ({ family, src, dst: '203.0.113.20', proto: 'tcp', port: '443', packets, bytes: 60 * packets });
    m.kernelRecords([rec('172.17.0.2', 4, 3), rec('172.17.0.3', 4, 1), rec('host', 4, 2)], ['containers4', 'containers6', 'host4']);
    const s = parseExposition(await m.render());
    expect(s.get('egressfw_refused_connections_total{family="ipv4",part="containers"}')).toBe(4);
    expect(s.get('egressfw_refused_connections_total{family="ipv6",part="containers"}')).toBe(0);
    expect(s.get('egressfw_refused_connections_total{family="ipv4",part="host"}')).toBe(2);
    expect(s.has('egressfw_refused_connections_total{family="ipv6",part="host"}')).toBe(false);
    // read again: the kernel's total, not added up again
    m.kernelRecords([rec('172.17.0.2', 4, 5)], ['containers4']);
    expect(parseExposition(await m.render()).get('egressfw_refused_connections_total{family="ipv4",part="containers"}')).toBe(5);
  });
});

const query: QueryFn = async (_s, name, type) => ({ rcode: 'NOERROR', answers: type === 'A' && name === 'api.example.com' ? [{ name, type: 'A', ttl: 60, data: '203.0.113.5' }] : [] });

describe('daemon metrics', () => {
  it('the textfile tells what happened: enforced, names by status, one drift found and repaired once, errors by kind, build info', async () => {
    const k = new FakeKernel();
    k.ufw.files = { 4: fixture('before.rules'), 6: fixture('before6.rules') };
    const { exec } = kernelExec(k);
    const dir = dirs.current();
    const config = path.join(dir, 'egressfw.yml');
    const textfile = path.join(dir, 'node-exporter', 'egressfw.prom');
    writeFileSync(config, `allow: [{ domain: api.example.com }, { domain: gone.example.com }]\ndns: { servers: [198.51.100.53], gate: { enabled: false } }\nschedule: { driftCheck: 1s, refresh: "0 0 1 1 *" }\nmetrics: { textfile: ${textfile}, interval: 1s }\n`); // no gate child here (on by default under the daemon)
    const { deps, out } = fakeSyncDeps(k, dir, exec, query);
    const written: string[] = [];
    const metricsDeps: DaemonMetricsDeps = {
      build: BUILD,
      readRecords: async () => ({ records: [{ family: 4, src: '172.17.0.2', dst: '203.0.113.20', proto: 'tcp', port: '443', packets: 1, bytes: 60 }], read: ['containers4', 'containers6'] }),
      serve: async () => {
        throw new Error('no listen configured');
      },
      writeFileAtomic: async (file, text) => {
        expect(file).toBe(textfile);
        written.push(text);
      },
    };
    const timers = new FakeTimers();
    const proc = new EventEmitter();
    const running = runDaemon({ config, stateDir: path.join(dir, 'state'), json: true }, { ...deps, timers }, proc as never, undefined, undefined, metricsDeps);
    const events = () => out.map((l) => JSON.parse(l).event as string);
    await until(() => events().includes('refresh') && written.length > 0, 'the first refresh and textfile');
    await timers.advance(1000); // a drift check with nothing to repair, a metrics tick
    k.nft!.rules = []; // damage
    await timers.advance(1000);
    await until(() => events().includes('drift-repaired'), 'the repair');
    for (let i = 0; i < 3; i++) await timers.advance(1000); // more drift checks (nothing to repair) and ticks
    const n = written.length;
    await timers.advance(1000);
    await until(() => written.length > n, 'a textfile written after the repair');
    proc.emit('SIGTERM');
    await running;
    expect(events().filter((e) => e === 'drift-repaired')).toHaveLength(1);
    const s = parseExposition(written.at(-1)!);
    expect(s.get('egressfw_drift_detected_total')).toBe(1);
    expect(s.get('egressfw_drift_repaired_total')).toBe(1);
    expect(s.get('egressfw_drift_operations')).toBe(0);
    expect(s.get('egressfw_enforced{network="",part="containers"}')).toBe(1);
    expect(s.get('egressfw_enforced{network="",part="host"}')).toBe(1);
    expect(s.get('egressfw_domains{status="ok"}')).toBe(1);
    expect(s.get('egressfw_domains{status="nodata"}')).toBe(1); // gone.example.com: no addresses
    expect(s.get('egressfw_last_refresh_success_timestamp_seconds')).toBe(1_750_000_000);
    expect(s.get('egressfw_sync_duration_seconds_count{job="refresh"}')).toBe(1);
    expect(s.get('egressfw_sync_duration_seconds_count{job="repair"}')).toBe(1);
    expect(s.get('egressfw_errors_total{kind="refresh"}')).toBe(0);
    expect(s.get('egressfw_refused_connections_total{family="ipv4",part="containers"}')).toBe(1);
    expect(s.get('egressfw_set_elements{set="egressfw-v4"}')).toBeGreaterThan(0);
    expect(s.get('egressfw_build_info{docker="",firewall_backend="",nodejs="18.20.4",version="0.1.0"}')).toBe(1);
    expect(s.has('egressfw_gate_up')).toBe(false); // the gate is not enabled
    expect([...s.keys()].some((x) => x.includes('api.example.com'))).toBe(false); // no names in labels by default
  });
});

describe('serveMetrics', () => {
  const exp = { render: async () => 'egressfw_up 1\n', contentType: 'text/plain; version=0.0.4; charset=utf-8' };
  const get = (o: { port?: number; socketPath?: string; path: string; method?: string }) =>
    new Promise<{ status: number; body: string; type: string }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', ...o, method: o.method ?? 'GET' }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body, type: String(res.headers['content-type']) }));
      });
      req.on('error', reject);
      req.end();
    });
  const freePort = () =>
    new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });

  it('serves /metrics on loopback (404 elsewhere, 405 for POST) and says clearly when the port is taken', async () => {
    const port = await freePort();
    const srv = await serveMetrics({ kind: 'tcp', host: '127.0.0.1', port }, exp, () => {});
    try {
      expect(await get({ port, path: '/metrics' })).toEqual({ status: 200, body: 'egressfw_up 1\n', type: exp.contentType });
      expect((await get({ port, path: '/' })).status).toBe(404);
      expect((await get({ port, path: '/metrics', method: 'POST' })).status).toBe(405);
      const e = await serveMetrics({ kind: 'tcp', host: '127.0.0.1', port }, exp, () => {}).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(PreconditionError);
      expect((e as Error).message).toBe(`metrics.listen 127.0.0.1:${port} is in use by another process: choose another port (or stop what listens there)`);
    } finally {
      await srv.close();
    }
  });

  it('serves on a unix socket, replaces a stale socket, refuses to unlink a file that is not one', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'efw-sock-'));
    try {
      const sock = path.join(dir, 'm.sock');
      const a = await serveMetrics({ kind: 'unix', path: sock }, exp, () => {});
      expect((await get({ socketPath: sock, path: '/metrics' })).body).toBe('egressfw_up 1\n');
      await a.close();
      const b = await serveMetrics({ kind: 'unix', path: sock }, exp, () => {});
      await b.close();
      const file = path.join(dir, 'not-a-socket');
      writeFileSync(file, 'keep me');
      await expect(serveMetrics({ kind: 'unix', path: file }, exp, () => {})).rejects.toThrow(/exists and is not a socket; remove it or choose another path/);
      expect(readFileSync(file, 'utf8')).toBe('keep me');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('journal priorities', () => {
  it('errors as errors, repairs and a crashed gate as warnings, routine as info', () => {
    expect(priorityOf('error', { job: 'refresh' })).toBe(3);
    expect(priorityOf('gate-error')).toBe(3);
    expect(priorityOf('drift-repaired')).toBe(4);
    expect(priorityOf('gate-exited')).toBe(4);
    expect(priorityOf('refresh', { changes: 0 })).toBe(6);
    expect(priorityOf('refresh', { changes: 0, warnings: ['gone.example.com: NXDOMAIN'] })).toBe(4);
    expect(priorityOf('started')).toBe(5);
    const at = new Date(0);
    expect(formatLog(false, at, 'error', { job: 'refresh' }, true)).toBe('<3>1970-01-01T00:00:00.000Z error job=refresh');
    expect(formatLog(true, at, 'refresh', { changes: 0 }, true)).toBe('<6>{"time":"1970-01-01T00:00:00.000Z","event":"refresh","changes":0}');
    expect(formatLog(false, at, 'error', { job: 'refresh' })).toBe('1970-01-01T00:00:00.000Z error job=refresh');
  });

  it('prefixes only when the stream really is the journal (JOURNAL_STREAM names its device:inode)', () => {
    expect(journalStream(1, {})).toBe(false);
    expect(journalStream(1, { JOURNAL_STREAM: '1:1' })).toBe(false);
    expect(journalStream(1, { JOURNAL_STREAM: 'garbage' })).toBe(false);
    const st = fstatSync(1, { bigint: true });
    expect(journalStream(1, { JOURNAL_STREAM: `${st.dev}:${st.ino}` })).toBe(true);
  });

  it('the CLI, its stderr being the journal, files a fatal error as an error (<3>); not otherwise', async () => {
    const dir = dirs.current();
    const errFile = path.join(dir, 'stderr');
    const run = (env: Record<string, string>) => {
      const fd = openSync(errFile, 'w');
      try {
        const st = fstatSync(fd, { bigint: true });
        const r = spawnSync(process.execPath, [path.resolve('dist/cli.js'), 'plan', '--config', path.join(dir, 'missing.yml')], { stdio: ['ignore', 'ignore', fd], env: { ...process.env, ...(env.JOURNAL_STREAM === 'this' ? { JOURNAL_STREAM: `${st.dev}:${st.ino}` } : env) } });
        return { status: r.status, stderr: readFileSync(errFile, 'utf8') };
      } finally {
        closeSync(fd);
      }
    };
    const journal = run({ JOURNAL_STREAM: 'this' });
    expect(journal.status).toBe(2);
    expect(journal.stderr).toMatch(/^<3>egressfw: /);
    const elsewhere = run({ JOURNAL_STREAM: '1:2' });
    expect(elsewhere.stderr).toMatch(/^egressfw: /);
  });
});
