import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeEach, expect, it } from 'vitest';
import { runStatus } from '../../src/commands/status.js';
import { syncOnce } from '../../src/commands/sync.js';
import { loadConfig } from '../../src/config/load.js';
import type { QueryFn } from '../../src/resolve/query.js';
import { fakeSyncDeps, kernelExec, tempDirs } from '../support/fake-exec.js';
import { FakeKernel } from '../support/fake-kernel.js';
import { fixture, golden } from '../support/files.js';

const dirs = tempDirs('efw-status-', { beforeEach, afterAll });
const NAMES = Array.from({ length: 1000 }, (_, i) => `svc${String(i).padStart(4, '0')}.example.com`);
const FAILING = new Set(['svc0007.example.com', 'svc0500.example.com']);

/** 1,000 names, each with one A record; `failing` answer NXDOMAIN on the second sync (they keep their IPs). */
async function synced(failing: Set<string>) {
  const k = new FakeKernel();
  k.ufw.files = { 4: fixture('before.rules'), 6: fixture('before6.rules') };
  const { exec } = kernelExec(k);
  const dir = dirs.current();
  const file = path.join(dir, 'egressfw.yml');
  writeFileSync(file, `allow:\n${NAMES.map((n) => `  - domain: ${n}\n`).join('')}dns: { servers: [198.51.100.53], openAcknowledged: true }\n`); // DNS open on purpose here: the summary of names is the subject
  let round = 0;
  const query: QueryFn = async (_s, name, type) => {
    if (round > 0 && failing.has(name)) return { rcode: 'NXDOMAIN', answers: [] };
    const i = NAMES.indexOf(name);
    return { rcode: 'NOERROR', answers: type === 'A' ? [{ name, type: 'A', ttl: 300, data: `203.0.${113 + (i >> 8)}.${i & 255}` }] : [] };
  };
  const { deps, out } = fakeSyncDeps(k, dir, exec, query);
  const config = await loadConfig(file);
  const stateDir = path.join(dir, 'state');
  await syncOnce(config, { stateDir }, deps);
  round++;
  await syncOnce(config, { stateDir }, deps);
  out.length = 0;
  return { deps, out, file, stateDir };
}

it('status with 1,000 names all fine: a summary that fits one screen (golden)', async () => {
  const s = await synced(new Set());
  expect(await runStatus({ config: s.file, stateDir: s.stateDir, json: false }, s.deps)).toBe(0);
  const text = s.out.join('');
  expect(text.split('\n').length).toBeLessThanOrEqual(24);
  golden('status-1000-ok.txt', text);
}, 30_000);

it('status with 1,000 names, 2 failing: the summary counts them and lists only those two (golden)', async () => {
  const s = await synced(FAILING);
  await runStatus({ config: s.file, stateDir: s.stateDir, json: false }, s.deps);
  const text = s.out.join('');
  expect(text).toMatch(/^names: 1000: 998 ok, 2 nxdomain \(2 keep their last-known-good IPs\)$/m);
  expect(text).toContain('svc0007.example.com  nxdomain');
  expect(text).not.toContain('svc0008.example.com');
  expect(text.split('\n').length).toBeLessThanOrEqual(24);
  golden('status-1000-two-failing.txt', text);
}, 30_000);

it('--verbose (and --domains) lists every name with its IPs; --json keeps everything', async () => {
  const s = await synced(new Set());
  await runStatus({ config: s.file, stateDir: s.stateDir, json: false, verbose: true }, s.deps);
  const text = s.out.join('');
  for (const n of ['svc0000.example.com', 'svc0999.example.com']) expect(text).toContain(`  ${n}  ok`);
  expect(text).toContain('    203.0.116.231  seen 0s ago; kept 5m more');
  s.out.length = 0;
  await runStatus({ config: s.file, stateDir: s.stateDir, json: true }, s.deps);
  const doc = JSON.parse(s.out.join('')) as { domains: { name: string; ips: unknown[] }[] };
  expect(doc.domains).toHaveLength(1000);
  expect(doc.domains.every((d) => d.ips.length === 1)).toBe(true);
}, 30_000);

it('networks: only the count and the ones NOT enforced, unless --verbose', async () => {
  const s = await synced(new Set());
  const net = (name: string, driver: string, bridge: string | null, parent: string | null) => ({ id: name, name, driver, scope: 'local', internal: false, bridge, parent, subnets: { 4: ['198.51.100.128/28'], 6: [] }, enableIPv6: false, containers: [] });
  const inspectDocker = async () => ({
    engine: { version: '28.5.2', apiVersion: '1.51', firewallBackend: 'iptables' as const, firewallDriver: 'iptables', firewalld: false },
    networks: [net('bridge', 'bridge', 'docker0', null), net('appnet', 'bridge', 'br-0123456789ab', null), net('macnet', 'macvlan', null, 'eth0')],
  });
  await runStatus({ config: s.file, stateDir: s.stateDir, json: false }, { ...s.deps, inspectDocker });
  const text = s.out.join('');
  expect(text).toMatch(/^networks: 3, 2 enforced \(--verbose lists them\)\n\n!!! NOT ENFORCED: the host is NOT protected while these networks exist !!!\n!!! {3}macnet \(macvlan on eth0/m);
  expect(text).not.toMatch(/^ {2}appnet /m);
  s.out.length = 0;
  await runStatus({ config: s.file, stateDir: s.stateDir, json: false, verbose: true }, { ...s.deps, inspectDocker });
  expect(s.out.join('')).toMatch(/^ {2}appnet +bridge +br-0123456789ab/m);
}, 30_000);
