// Prometheus' own checker on what egressfw ships and serves: the example alert rules (syntax and
// `promtool test rules`: they fire on what they should) and the exposition the daemon writes
// (`promtool check metrics`: format and naming conventions). promtool comes from Debian 12's
// `prometheus` package, unpacked into the lab cache (installing it would start a Prometheus server).
import { execa } from 'execa';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { syncOnce } from '../../src/commands/sync.js';
import { loadConfig } from '../../src/config/load.js';
import { Metrics } from '../../src/metrics/metrics.js';
import type { QueryFn } from '../../src/resolve/query.js';
import { fakeSyncDeps, kernelExec } from '../support/fake-exec.js';
import { FakeKernel } from '../support/fake-kernel.js';
import { fixture } from '../support/files.js';
import { debian12Tool } from '../support/node-runtimes.js';

const RULES = path.resolve('examples/prometheus');
let promtool: string;
let tmp: string;
beforeAll(async () => {
  promtool = await debian12Tool('prometheus', 'usr/bin/promtool');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'egressfw-promtool-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const run = (args: string[], input?: string) => execa(promtool, args, { reject: false, cwd: RULES, ...(input !== undefined ? { input } : {}) });

it('the example alert rules pass `promtool check rules` and their unit tests (`promtool test rules`)', async () => {
  const check = await run(['check', 'rules', 'egressfw-alerts.yml']);
  expect(check.stdout + check.stderr).toMatch(/SUCCESS: \d+ rules found/);
  expect(check.exitCode).toBe(0);
  const test = await run(['test', 'rules', 'egressfw-alerts.test.yml']);
  expect(test.stdout + test.stderr).toMatch(/SUCCESS/);
  expect(test.exitCode).toBe(0);
});

it('promtool fails a broken rule file (the check above can fail)', async () => {
  fs.writeFileSync(path.join(tmp, 'bad.yml'), 'groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: egressfw_enforced ==\n');
  expect((await run(['check', 'rules', path.join(tmp, 'bad.yml')])).exitCode).not.toBe(0);
});

const query: QueryFn = async (_s, name, type) => ({ rcode: 'NOERROR', answers: type === 'A' && name === 'api.example.com' ? [{ name, type: 'A', ttl: 60, data: '203.0.113.5' }] : [] });

it('the exposition egressfw writes passes `promtool check metrics` (format and naming conventions), every metric family present', async () => {
  const k = new FakeKernel();
  k.ufw.files = { 4: fixture('before.rules'), 6: fixture('before6.rules') };
  const { exec } = kernelExec(k);
  const config = path.join(tmp, 'egressfw.yml');
  fs.writeFileSync(config, 'allow: [{ domain: api.example.com }, { domain: gone.example.com }]\ndns: { servers: [198.51.100.53] }\nmetrics: { listen: "127.0.0.1:9633", domainLabels: true }\n');
  const { deps } = fakeSyncDeps(k, tmp, exec, query);
  const r = await syncOnce(await loadConfig(config), { stateDir: path.join(tmp, 'state') }, deps);
  const m = new Metrics({ version: '0.1.0', nodejs: process.versions.node }, { domainLabels: true, now: () => 1_750_000_000 });
  m.round(r.round, { installed: true, synced: true });
  m.event('refresh', { changes: 3, ms: 420 });
  m.event('drift-detected', {});
  m.event('drift-repaired', { ms: 80 });
  m.event('error', { job: 'refresh' });
  m.gate({ running: true, starts: 2 });
  const line = (verdict: string, ms: number) => JSON.stringify({ time: '2026-12-02T00:00:00.000Z', client: '172.17.0.2', container: null, name: 'x.test', type: 'A', verdict, rcode: 'NOERROR', ips: [], cached: false, ms, releaseMs: 1, transport: 'udp' });
  m.gateLine(line('allowed', 12));
  m.gateLine(line('refused', 0));
  m.kernelRecords([{ family: 4, src: 'host', dst: '203.0.113.20', proto: 'tcp', port: '443', packets: 2, bytes: 120 }], ['host4', 'containers4']);
  const text = await m.render();
  const check = await run(['check', 'metrics'], text);
  expect(check.stdout + check.stderr).toBe('');
  expect(check.exitCode).toBe(0);
  const families = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((x) => `${x[1]} ${x[2]}`);
  expect(families).toEqual([
    'egressfw_enforced gauge', 'egressfw_audit_mode gauge', 'egressfw_drift_operations gauge', 'egressfw_drift_detected_total counter', 'egressfw_drift_repaired_total counter',
    'egressfw_last_sync_success_timestamp_seconds gauge', 'egressfw_last_refresh_success_timestamp_seconds gauge', 'egressfw_sync_duration_seconds histogram', 'egressfw_errors_total counter',
    'egressfw_domains gauge', 'egressfw_domains_last_known_good gauge', 'egressfw_set_elements gauge', 'egressfw_gate_admitted_addresses gauge', 'egressfw_refused_connections_total counter',
    'egressfw_dns_queries_total counter', 'egressfw_dns_upstream_duration_seconds histogram', 'egressfw_gate_restarts_total counter', 'egressfw_build_info gauge', 'egressfw_domain_ok gauge', 'egressfw_gate_up gauge',
  ]);
  // and promtool does complain about a badly named one (the check above can fail)
  const bad = await run(['check', 'metrics'], '# HELP egressfw_refusals refused\n# TYPE egressfw_refusals counter\negressfw_refusals 3\n');
  expect(bad.stdout + bad.stderr).toMatch(/counter metrics should have "_total" suffix/);
});
