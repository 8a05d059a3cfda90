import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ContainerInfo } from '../../src/audit/collect.js';
import { runReport } from '../../src/commands/report.js';
import { runSuggest } from '../../src/commands/suggest.js';
import type { Exec } from '../../src/system/exec.js';
import { collectAudit, historyFile, readKernelRecords, snapshotContainers, type AuditDeps } from '../../src/system/audit-io.js';
import { readTail } from '../../src/system/read-file.js';
import { readText, writeFileAtomic } from '../../src/system/files.js';
import { acquireLock } from '../../src/system/lock.js';
import { fixture } from '../support/files.js';
import { gateLogLine } from '../support/gate-log.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const tmp = () => {
  const d = mkdtempSync(path.join(os.tmpdir(), 'efw-audit-'));
  dirs.push(d);
  return d;
};

/** A kernel as the tools print it: nft sets and chain, ipset sets, iptables-save. */
function fakeExec(over: Record<string, { stdout?: string; stderr?: string; exitCode?: number }> = {}): Exec & { calls: string[] } {
  const base: Record<string, { stdout?: string; stderr?: string; exitCode?: number }> = {
    'nft -j list set inet egressfw refused4': { stdout: fixture('audit/nft-refused4.json') },
    'nft -j list set inet egressfw refused6': { stdout: fixture('audit/nft-refused6.json') },
    'nft -j list chain inet egressfw forward': { stdout: fixture('audit/nft-chain-audit.json') },
    'ipset save egressfw-refused-host-v4': { stdout: fixture('audit/ipset-host-v4.txt') },
    'ipset save egressfw-refused-host-v6': { stderr: 'ipset v7.17: The set with the given name does not exist\n', exitCode: 1 },
    'iptables-save -t filter': { stdout: '*filter\n:EGRESSFW-HOST - [0:0]\n-A EGRESSFW-HOST -m conntrack --ctstate NEW -m set ! --match-set egressfw-refused-host-v4 dst,dst -m comment --comment "egressfw refused-record" -j SET --add-set egressfw-refused-host-v4 dst,dst\nCOMMIT\n' },
    ...over,
  };
  const calls: string[] = [];
  const exec = (async (argv: readonly string[]) => {
    const key = argv.join(' ');
    calls.push(key);
    const r = base[key];
    if (!r) return { stdout: '', stderr: `unexpected: ${key}`, exitCode: 99 };
    return { stdout: r.stdout ?? '', stderr: r.stderr ?? '', exitCode: r.exitCode ?? 0 };
  }) as Exec & { calls: string[] };
  exec.calls = calls;
  return exec;
}

const web: ContainerInfo = { id: 'c'.repeat(64), name: 'shop-web-1', image: 'shop/web', labels: { 'com.docker.compose.project': 'shop', 'com.docker.compose.service': 'web' }, networks: [{ name: 'shop_default', ipv4: '198.51.100.66', ipv6: '2001:db8:1::2' }], state: 'running' };

function deps(now: number, exec: Exec, over: Partial<AuditDeps> = {}): AuditDeps & { out: (t: string) => void; warn: (t: string) => void; printed: string[] } {
  const printed: string[] = [];
  return {
    exec,
    readText,
    writeFileAtomic,
    listContainers: async () => [web],
    acquireLock: (file) => acquireLock(file),
    now: () => now,
    isRoot: true,
    out: (t) => printed.push(t),
    warn: (t) => printed.push(`WARN ${t}`),
    printed,
    ...over,
  };
}

const T0 = 1_790_000_000;

describe('reading the kernel', () => {
  it('reads both record kinds, both modes; a set that does not exist is "read, empty", a failing tool is a note', async () => {
    const k = await readKernelRecords(fakeExec());
    expect(k.records.map((r) => `${r.src}>${r.dst}:${r.proto}/${r.port}=${r.packets}`)).toEqual([
      '198.51.100.66>203.0.113.20:udp/53=1',
      '198.51.100.66>203.0.113.20:tcp/443=3',
      'host>203.0.113.30:icmp/echo-request=2',
      'host>203.0.113.20:tcp/443=5',
      'host>203.0.113.30:udp/123=1',
      '2001:db8:1::2>2001:db8:20::20:tcp/80=2',
    ]);
    expect(k.read.sort()).toEqual(['containers4', 'containers6', 'host4', 'host6']);
    expect(k.modes).toEqual({ containers: 'audit', host: 'enforce' });
    expect(k.notes).toEqual([]);
    const broken = await readKernelRecords(fakeExec({ 'nft -j list set inet egressfw refused6': { stderr: 'netlink: Error: Operation not permitted', exitCode: 1 } }));
    expect(broken.read).not.toContain('containers6'); // its counters are kept for the next read
    expect(broken.notes).toEqual(['`nft list set inet egressfw refused6` failed: netlink: Error: Operation not permitted']);
    const noNft = await readKernelRecords(fakeExec(Object.fromEntries(['refused4', 'refused6'].map((s) => [`nft -j list set inet egressfw ${s}`, { stderr: 'nft: not installed', exitCode: 127 }]))));
    expect(noNft.notes).toContain('nft is not installed: container records cannot be read (`apt-get install nftables`)');
  });

  it('reads only the tail of a long gate log, whole lines only', async () => {
    const d = tmp();
    const file = path.join(d, 'gate.log');
    writeFileSync(file, `${'x'.repeat(100)}\n{"a":1}\n{"b":2}\n`);
    expect(await readTail(file, 12)).toBe('{"b":2}\n');
    expect(await readTail(file, 1000)).toBe(readFileSync(file, 'utf8'));
    expect(await readTail(path.join(d, 'none'), 10)).toBeNull();
  });
});

describe('collectAudit / report / suggest against a fake kernel and a real state dir', () => {
  it('collects, saves the history (0600), attributes and names, and the next read counts only growth', async () => {
    const dir = tmp();
    writeFileSync(path.join(dir, 'state.json'), JSON.stringify({ version: 1, domains: { 'api.example.test': { ips: { '203.0.113.20': { firstSeen: T0 - 50, lastSeen: T0, ttl: 60 } }, status: 'ok' } } }));
    const first = await collectAudit(dir, deps(T0, fakeExec()));
    expect(first.notes).toEqual([]);
    expect(first.history.hits.find((h) => h.dst === '203.0.113.20' && h.port === '443' && h.src !== 'host')).toMatchObject({ n: 3, who: [web.id], sure: true, mode: 'audit', names: [{ name: 'api.example.test', via: 'resolution' }] });
    expect(readFileSync(historyFile(dir), 'utf8').split('\n')[0]).toContain('"collectedAt":1790000000');
    expect((await import('node:fs')).statSync(historyFile(dir)).mode & 0o777).toBe(0o600);
    // the same kernel a minute later (the ipset timeouts ran down by 60 s): nothing new
    const older = fixture('audit/ipset-host-v4.txt').replace(/^(add .* timeout )(\d+)/gm, (_, a: string, n: string) => `${a}${Number(n) - 60}`);
    const again = await collectAudit(dir, deps(T0 + 60, fakeExec({ 'ipset save egressfw-refused-host-v4': { stdout: older } })));
    expect(again.history.hits).toHaveLength(first.history.hits.length);
  });

  it('report: text and JSON; not root: the saved history and a note, and the kernel is not read', async () => {
    const dir = tmp();
    const d = deps(T0, fakeExec());
    expect(await runReport({ config: path.join(dir, 'none.yml'), stateDir: dir, since: '1h', json: false }, d)).toBe(0);
    expect(d.printed.join('')).toMatch(/container shop-web-1 \(compose shop\/web; image shop\/web; id cccccccccccc\)/);
    const exec = fakeExec();
    const j = deps(T0 + 10, exec, { isRoot: false });
    await runReport({ config: path.join(dir, 'none.yml'), stateDir: dir, since: '1h', json: true }, j);
    const doc = JSON.parse(j.printed.join('')) as { sources: { label: string }[]; notes: string[] };
    expect(doc.sources.map((s) => s.label)).toEqual(['shop-web-1', 'host']);
    expect(doc.notes[0]).toMatch(/^not root/);
    expect(exec.calls).toEqual([]);
    await expect(runReport({ config: path.join(dir, 'none.yml'), stateDir: dir, since: 'soon', json: false }, d)).rejects.toThrow(/--since "soon"/);
  });

  it('report reads the config when there is one: containers not managed, Docker is not asked; a broken one is an error', async () => {
    const dir = tmp();
    const config = path.join(dir, 'egressfw.yml');
    writeFileSync(config, 'allow: []\ncontainers:\n  enabled: false\n');
    let asked = 0;
    const d = deps(T0, fakeExec(), { listContainers: async () => (asked++, [web]) });
    expect(await runReport({ config, stateDir: dir, since: '1h', json: true }, d)).toBe(0);
    expect(asked).toBe(0);
    expect(await runReport({ config: path.join(dir, 'none.yml'), stateDir: dir, since: '1h', json: true }, d)).toBe(0);
    expect(asked).toBe(1);
    writeFileSync(config, 'allow: [{ domain: "bad name" }]\n');
    await expect(runReport({ config, stateDir: dir, since: '1h', json: false }, d)).rejects.toThrow(/invalid config/);
  });

  it('suggest prints YAML and never writes the config', async () => {
    const dir = tmp();
    const config = path.join(dir, 'egressfw.yml');
    const text = 'allow:\n  - domain: api.example.test\n    ports: [80]\ndns:\n  servers: [198.51.100.53]\n';
    writeFileSync(config, text);
    writeFileSync(path.join(dir, 'gate.log'), `${gateLogLine({ at: (T0 - 30) * 1000, client: '198.51.100.66', name: 'api.example.test', verdict: 'allowed', ips: ['203.0.113.20'] })}\n`);
    const d = deps(T0, fakeExec());
    expect(await runSuggest({ config, stateDir: dir, since: '24h' }, d)).toBe(0);
    const out = d.printed.join('');
    expect(out).toContain('  # already allowed on 80/tcp: this adds 443/tcp, 53/udp\n  - domain: api.example.test\n    ports: [443, "53/udp"]');
    expect(readFileSync(config, 'utf8')).toBe(text);
    // a broken config is the user's to fix: exit code 2 via ConfigError
    writeFileSync(config, 'allow: [{ domain: "bad name" }]\n');
    await expect(runSuggest({ config, stateDir: dir, since: '24h' }, d)).rejects.toThrow(/invalid config/);
  });

  it('snapshots between collections so a short-lived container is named after it exited', async () => {
    const dir = tmp();
    let list: ContainerInfo[] = [web];
    const d = (now: number) => deps(now, fakeExec({ 'nft -j list set inet egressfw refused4': { stdout: '{"nftables":[{"set":{"name":"refused4","size":65536,"timeout":604800}}]}' } }), { listContainers: async () => list });
    await snapshotContainers(dir, d(T0));
    list = [{ ...web, state: 'exited', networks: [{ name: 'shop_default', ipv4: '', ipv6: '' }] }];
    const c = await collectAudit(dir, d(T0 + 30));
    // the fixture's refused6 element (2001:db8:1::2, last update 2 s before the read) is web's
    expect(c.history.hits.find((h) => h.src === '2001:db8:1::2')).toMatchObject({ who: [web.id], sure: true });
    expect(c.history.containers.get(web.id)?.state).toBe('exited');
  });

  it('waits for a collection in progress instead of failing', async () => {
    const dir = tmp();
    const release = await acquireLock(path.join(dir, 'audit.lock'));
    const pending = collectAudit(dir, deps(T0, fakeExec()));
    await new Promise((r) => setTimeout(r, 250));
    await release();
    expect((await pending).history.collectedAt).toBe(T0);
  });
});
