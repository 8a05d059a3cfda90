// The orchestrators (syncOnce, runPlan, runStatus, the daemon) on the fake kernel, through the
// same argv they spawn: verify-after-apply, the ufw-off scope and drift repair are load-bearing.
import { EventEmitter } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { GATE_WAIT_MS, runDaemon } from '../../src/commands/daemon.js';
import { runPlan } from '../../src/commands/plan.js';
import { runStatus } from '../../src/commands/status.js';
import { syncOnce } from '../../src/commands/sync.js';
import type { QueryFn } from '../../src/resolve/query.js';
import type { Exec } from '../../src/system/exec.js';
import { fakeSyncDeps, kernelExec, tempDirs } from '../support/fake-exec.js';
import { FakeKernel } from '../support/fake-kernel.js';
import { fixture } from '../support/files.js';
import { FakeTimers, until } from '../support/fake-timers.js';

const dirs = tempDirs('efw-orch-', { beforeEach, afterAll });

const query: QueryFn = async (_s, name, type) => ({ rcode: 'NOERROR', answers: type === 'A' ? [{ name, type: 'A', ttl: 60, data: '203.0.113.5' }] : [] });

function setup(opts: { exec?: (k: FakeKernel, real: Exec) => Exec; yaml?: string } = {}) {
  const k = new FakeKernel();
  k.ufw.files = { 4: fixture('before.rules'), 6: fixture('before6.rules') };
  const { exec: real, calls } = kernelExec(k);
  const exec = opts.exec ? opts.exec(k, real) : real;
  const dir = dirs.current();
  const config = path.join(dir, 'egressfw.yml');
  writeFileSync(config, opts.yaml ?? 'allow: [{ domain: api.example.com }]\ndns: { servers: [198.51.100.53] }\nschedule: { driftCheck: 1s, refresh: "0 0 1 1 *" }\n');
  const { deps, out, warn } = fakeSyncDeps(k, dir, exec, query);
  return { k, deps, calls, config, out, warn, stateDir: path.join(dir, 'state') };
}

describe('syncOnce', () => {
  it('reads the kernel back after applying: a change that did not stick is an error, not "applied"', async () => {
    // An nft that says yes and does nothing (another program reverted it, a kernel that ignored it).
    const s = setup({ exec: (_k, real) => async (argv, o) => (argv[0] === 'nft' && argv[1] === '-f' ? { stdout: '', stderr: '', exitCode: 0 } : real(argv, o)) });
    await expect(syncOnce(await loadConfig(s.config), { stateDir: s.stateDir }, s.deps)).rejects.toThrow(/reading the kernel back shows it differs from the plan[\s\S]*nft: create table inet egressfw/);
  });

  it('applies, then a second round has nothing to do', async () => {
    const s = setup();
    const config = await loadConfig(s.config);
    expect((await syncOnce(config, { stateDir: s.stateDir }, s.deps)).applied.length).toBeGreaterThan(0);
    expect((await syncOnce(config, { stateDir: s.stateDir }, s.deps)).applied).toEqual([]);
  });
});

describe('ufw switched off after egressfw enforced: one scope for plan, sync, status and the daemon', () => {
  async function enforcedThenUfwOff() {
    const s = setup();
    const config = await loadConfig(s.config);
    await syncOnce(config, { stateDir: s.stateDir }, s.deps);
    s.k.ufw.enabled = false;
    s.k.nft!.rules = []; // damage while ufw is off
    return { s, config };
  }

  it('sync repairs the containers and leaves the host to the operator', async () => {
    const { s, config } = await enforcedThenUfwOff();
    const from = s.calls.length;
    const r = await syncOnce(config, { stateDir: s.stateDir }, s.deps);
    expect(r.round.scope).toBe('containers-only');
    expect(r.applied).toEqual([expect.stringMatching(/^nft: write chain forward/)]);
    expect(s.calls.slice(from).filter((c) => c.startsWith('ufw'))).toEqual([]);
    expect(r.warnings.join()).toMatch(/ufw is not active: the host is not restricted until `ufw enable`/);
    expect(s.k.nft!.rules.length).toBeGreaterThan(0);
  });

  it('plan shows the same scope and is not blocked; status says PARTIAL and exits 3', async () => {
    const { s } = await enforcedThenUfwOff();
    const planExit = await runPlan({ config: s.config, stateDir: s.stateDir, json: true, detailedExitcode: true }, s.deps);
    const doc = JSON.parse(s.out.at(-1)!);
    expect(doc.scope).toBe('containers-only');
    expect(doc.blockers).toEqual([]);
    expect(planExit).toBe(3); // the chain to repair
    s.out.length = 0;
    expect(await runStatus({ config: s.config, stateDir: s.stateDir, json: false }, s.deps)).toBe(3);
    expect(s.out.join('')).toMatch(/^egressfw status: DRIFT/);
    await syncOnce(await loadConfig(s.config), { stateDir: s.stateDir }, s.deps);
    s.out.length = 0;
    expect(await runStatus({ config: s.config, stateDir: s.stateDir, json: false }, s.deps)).toBe(3);
    expect(s.out.join('')).toMatch(/^egressfw status: PARTIAL/);
  });

  it('a fresh host with ufw inactive is blocked: plan --detailed-exitcode exits 1, like Terraform', async () => {
    const s = setup();
    s.k.ufw.enabled = false;
    expect(await runPlan({ config: s.config, stateDir: s.stateDir, json: false, detailedExitcode: true }, s.deps)).toBe(1);
    expect(s.out.join('')).toMatch(/`egressfw sync` would stop before any change:\n {2}- ufw is installed but not active/);
  });

  it('the daemon repairs the container damage once and then sees no drift (no endless drift-repaired)', async () => {
    const { s } = await enforcedThenUfwOff();
    const timers = new FakeTimers();
    let observed = 0;
    const observe = s.deps.observe;
    const deps = { ...s.deps, timers, observe: (w: Parameters<typeof observe>[0]) => (observed++, observe(w)) };
    const proc = new EventEmitter();
    // the config leaves dns.gate.enabled unset: on under the daemon (the sync before ran without it)
    const gate = { start: () => {}, signal: () => {}, restart: async () => {}, stop: async () => {} };
    const running = runDaemon({ config: s.config, stateDir: s.stateDir, json: true }, deps, proc as never, undefined, gate);
    const events = () => s.out.map((l) => JSON.parse(l) as { event: string; changes?: number });
    await until(() => events().length >= 2, 'the first refresh');
    // the first refresh puts the chain back
    expect(events().map((e) => e.event)).toEqual(['started', 'refresh']);
    expect(events()[1]!.changes).toBeGreaterThan(0);
    expect(s.k.nft!.rules.length).toBeGreaterThan(0);
    const before = observed;
    for (let i = 1; i <= 4; i++) {
      await timers.advance(1000); // a drift check every 1 s, each reading the kernel once
      await until(() => observed - before === i, `drift check ${i}`);
    }
    proc.emit('SIGTERM');
    await running;
    expect(observed - before).toBe(4);
    expect(events().map((e) => e.event)).toEqual(['started', 'refresh', 'stopping', 'stopped']);
  });
});

describe('daemon and the DNS gate', () => {
  it('starts the gate when dns.gate.enabled, signals it on a reload, restarts it when its port moves, stops it when turned off and at exit', async () => {
    const yaml = (gate: string) => `allow: [{ domain: "*.example.com" }]\ndns: { servers: [198.51.100.53], gate: { ${gate} } }\nschedule: { driftCheck: 1s, refresh: "0 0 1 1 *" }\n`;
    const s = setup({ yaml: yaml('enabled: true') });
    const calls: string[] = [];
    const gate = {
      start: () => void calls.push('start'),
      signal: (sig: string) => void calls.push(sig),
      restart: async () => void calls.push('restart'),
      stop: async () => void calls.push('stop'),
    };
    const proc = new EventEmitter();
    const running = runDaemon({ config: s.config, stateDir: s.stateDir, json: true }, { ...s.deps, timers: new FakeTimers() }, proc as never, undefined, gate);
    const count = (event: string) => s.out.filter((l) => (JSON.parse(l) as { event: string }).event === event).length;
    await until(() => count('refresh') === 1, 'the first refresh');
    expect(calls).toEqual(['start']);
    expect([...(s.k.nft?.gate?.keys() ?? [])]).toEqual(['gate-dns', 'gate-input', 'gate-host', 'gate-host-src']); // the first refresh put its chains in
    const reload = async (text: string) => {
      const [reloads, refreshes] = [count('config-reloaded'), count('refresh')];
      writeFileSync(s.config, text);
      proc.emit('SIGHUP');
      // a reload reschedules, and the new schedule starts with a refresh
      await until(() => count('config-reloaded') === reloads + 1 && count('refresh') === refreshes + 1, 'the reload and its refresh');
    };
    await reload(yaml('enabled: true'));
    await reload(yaml('enabled: true, port: 5301'));
    // unset: still on under the daemon (its port back to 5300: restart); a hand-run plan agrees with the daemon's rules
    await reload('allow: [{ domain: api.example.com }]\ndns: { servers: [198.51.100.53] }\nschedule: { driftCheck: 1s, refresh: "0 0 1 1 *" }\n');
    expect(calls).toEqual(['start', 'SIGHUP', 'restart', 'restart']);
    s.out.length = 0;
    expect(await runPlan({ config: s.config, stateDir: s.stateDir, json: false, detailedExitcode: true }, s.deps)).toBe(0);
    expect(s.out.join('')).toMatch(/DNS: through the gate \(dns\.gate, on under the daemon\)/);
    s.out.length = 0; // the plan's text: the daemon's log lines are counted from here
    await reload('allow: [{ domain: api.example.com }]\ndns: { servers: [198.51.100.53], gate: { enabled: false } }\nschedule: { driftCheck: 1s, refresh: "0 0 1 1 *" }\n');
    expect(calls).toEqual(['start', 'SIGHUP', 'restart', 'restart', 'stop']);
    proc.emit('SIGTERM');
    await running;
    expect(calls.at(-1)).toBe('stop');
    expect([...(s.k.nft?.gate?.keys() ?? [])]).toEqual([]); // the refresh after the last reload took them out
  });
  it('a refresh waits for the gate to answer (its lookups are host DNS, redirected to the gate), GATE_WAIT_MS at most', async () => {
    const s = setup({ yaml: 'allow: [{ domain: api.example.com }]\ndns: { servers: [198.51.100.53], gate: { enabled: true } }\nschedule: { driftCheck: 1s, refresh: "0 0 1 1 *" }\n' });
    const timers = new FakeTimers();
    const seen: string[] = [];
    let answering = false;
    const gate = { start: () => {}, signal: () => {}, restart: async () => {}, stop: async () => {}, probe: async (port: number) => (seen.push(`probe ${port} ${answering}`), answering) };
    const q: QueryFn = (...a) => (seen.push('query'), query(...a));
    const proc = new EventEmitter();
    const running = runDaemon({ config: s.config, stateDir: s.stateDir, json: true }, { ...s.deps, query: q, timers }, proc as never, undefined, gate);
    const refreshes = () => s.out.filter((l) => (JSON.parse(l) as { event: string }).event === 'refresh').length;
    await until(() => seen.length === 1, 'the first probe');
    await timers.advance(100);
    expect(seen).toEqual(['probe 5300 false', 'probe 5300 false']); // nothing asked, no refresh yet
    expect(refreshes()).toBe(0);
    answering = true;
    await timers.advance(100);
    await until(() => refreshes() === 1, 'the first refresh');
    expect(seen.slice(0, 3)).toEqual(['probe 5300 false', 'probe 5300 false', 'probe 5300 true']);
    expect(seen.slice(3)).toContain('query');
    expect(JSON.parse(s.out.find((l) => l.includes('"refresh"'))!)).not.toHaveProperty('warnings'); // the name resolved
    // a gate that does not answer holds a refresh back GATE_WAIT_MS, then it runs (and keeps what it cannot resolve)
    answering = false;
    seen.length = 0;
    writeFileSync(s.config, readFileSync(s.config, 'utf8'));
    proc.emit('SIGHUP');
    await until(() => seen.length === 1, 'the reload\'s first probe');
    await timers.advance(GATE_WAIT_MS - 100);
    expect(refreshes()).toBe(1);
    await timers.advance(200);
    await until(() => refreshes() === 2, 'the refresh after the wait');
    proc.emit('SIGTERM');
    await running;
  });
});

describe('DNS open or closed, by default', () => {
  it('not under the daemon (by hand, cron): plan, sync and status say DNS is open; status exits 3 until it is acknowledged', async () => {
    const s = setup();
    await syncOnce(await loadConfig(s.config), { stateDir: s.stateDir }, s.deps);
    await runPlan({ config: s.config, stateDir: s.stateDir, json: false, detailedExitcode: false }, s.deps);
    expect(s.out.join('')).toMatch(/!!! DNS OPEN: containers and the host can resolve ANY name[^\n]*\n!!!   why: egressfw does not run as `egressfw daemon`[^\n]*\n!!!   close it: run egressfw as the daemon: `sudo egressfw install --systemd`/);
    s.out.length = 0;
    expect(await runStatus({ config: s.config, stateDir: s.stateDir, json: true }, s.deps)).toBe(3);
    const doc = JSON.parse(s.out.join(''));
    expect(doc.dnsOpen).toMatchObject({ who: ['containers', 'the host'], acknowledged: false });
    expect(doc.enforced).toBe(true); // the rules are as planned: only DNS is open
    writeFileSync(s.config, 'allow: [{ domain: api.example.com }]\ndns: { servers: [198.51.100.53], openAcknowledged: true }\nschedule: { driftCheck: 1s, refresh: "0 0 1 1 *" }\n');
    s.out.length = 0;
    expect(await runStatus({ config: s.config, stateDir: s.stateDir, json: false }, s.deps)).toBe(0);
    expect(s.out.join('')).toMatch(/DNS open \(acknowledged by dns\.openAcknowledged\)/);
  });

  it('cron marker: DNS open, named as cron; daemon marker: a hand-run plan renders the gate (the daemon\'s rules)', async () => {
    const s = setup();
    const { mkdirSync } = await import('node:fs');
    mkdirSync(s.stateDir, { recursive: true });
    writeFileSync(path.join(s.stateDir, 'scheduler'), 'cron\n');
    await runPlan({ config: s.config, stateDir: s.stateDir, json: true, detailedExitcode: false }, s.deps);
    expect(JSON.parse(s.out.join('')).dnsOpen.why).toMatch(/runs from cron, which runs no DNS gate/);
    writeFileSync(path.join(s.stateDir, 'scheduler'), 'daemon\n');
    s.out.length = 0;
    await runPlan({ config: s.config, stateDir: s.stateDir, json: true, detailedExitcode: false }, s.deps);
    const doc = JSON.parse(s.out.join(''));
    expect(doc.dnsOpen).toBeNull();
    expect(doc.render.nft).toMatch(/add chain inet egressfw gate-dns/);
  });
});
