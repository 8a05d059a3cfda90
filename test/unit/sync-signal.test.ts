import { EventEmitter } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { runDaemon } from '../../src/commands/daemon.js';
import { runSync } from '../../src/commands/sync.js';
import type { Observed } from '../../src/plan/observed.js';
import type { QueryFn } from '../../src/resolve/query.js';
import { fixture } from '../support/files.js';
import { FakeKernel } from '../support/fake-kernel.js';
import { fakeSyncDeps, kernelExec, tempDirs } from '../support/fake-exec.js';

// Ctrl-C or `systemctl stop` during a sync: what was applied is undone, like a failed step, before exiting.
const dirs = tempDirs('efw-signal-', { beforeEach, afterAll });
let dir = '';
beforeEach(() => {
  dir = dirs.current();
});

const query: QueryFn = async (_s, name, type) => ({ rcode: 'NOERROR', answers: type === 'A' ? [{ name, type: 'A', ttl: 60, data: '203.0.113.5' }] : [] });
const comparable = (o: Observed) => ({ sets: o.sets, t4: [...o.tables[4].chains].filter(([c]) => c !== 'EGRESSFW-HOST'), t6: [...o.tables[6].chains].filter(([c]) => c !== 'EGRESSFW-HOST'), ufw: o.ufw });

function setup(blockOn: string, yaml = 'allow: [{ domain: api.example.com }]\ndns: { servers: [198.51.100.53] }\n') {
  const k = new FakeKernel();
  k.ufw.files = { 4: fixture('before.rules'), 6: fixture('before6.rules') };
  k.tables[4].set('DOCKER-USER', ['-A DOCKER-USER -j RETURN']);
  k.tables[4].set('FORWARD', ['-A FORWARD -j DOCKER-USER']);
  let reached!: () => void;
  const atBlockedStep = new Promise<void>((r) => (reached = r));
  let unblock!: () => void;
  const blocked = new Promise<void>((r) => (unblock = r));
  const { exec, calls } = kernelExec(k, async (argv) => {
    if (argv[0] === blockOn) {
      reached();
      await blocked; // the step is running when the signal comes
    }
  });
  const config = path.join(dir, 'egressfw.yml');
  writeFileSync(config, yaml);
  const { deps, warn } = fakeSyncDeps(k, dir, exec, query);
  return { k, deps, calls, config, atBlockedStep, unblock, warn, before: k.observe() };
}

describe('sync: SIGINT/SIGTERM mid-apply roll back like a failed step', () => {
  for (const [signal, code] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
    it(`${signal} while iptables-restore runs: the set and ufw changes are undone, exit ${code}`, async () => {
      const s = setup('iptables-restore');
      const proc = new EventEmitter();
      const run = runSync({ config: s.config, stateDir: path.join(dir, 'state'), quiet: true }, s.deps, proc);
      const outcome = run.then(() => null, (e: Error & { exitCode?: number }) => e);
      await s.atBlockedStep;
      expect(s.k.sets.has('egressfw-v4')).toBe(true); // ipset and ufw steps are done
      proc.emit(signal);
      s.unblock();
      const e = await outcome;
      expect(e).not.toBeNull();
      expect(e!.exitCode).toBe(code);
      expect(e!.message).toMatch(new RegExp(`^interrupted by ${signal} before ip6tables-restore\\n`));
      expect(e!.message).toMatch(/rolled back; the previous rules are in force/);
      // the next step never started: what follows the blocked step is its rollback
      expect(s.calls[s.calls.indexOf('iptables-restore --noflush') + 1]).toBe('iptables-restore --noflush');
      expect(s.k.nft).toBeNull();
      expect(comparable(s.k.observe())).toEqual(comparable(s.before));
      expect(JSON.parse(readFileSync(path.join(dir, 'state', 'state.json'), 'utf8')).lastSync.ok).toBe(false);
      expect(proc.listenerCount(signal)).toBe(0); // handlers are gone afterwards
    });
  }

  it('a second signal during the rollback does not cut it short', async () => {
    const s = setup('iptables-restore');
    const proc = new EventEmitter();
    const run = runSync({ config: s.config, stateDir: path.join(dir, 'state'), quiet: true }, s.deps, proc).then(() => null, (e: Error & { exitCode?: number }) => e);
    await s.atBlockedStep;
    proc.emit('SIGINT');
    proc.emit('SIGINT');
    s.unblock();
    const e = await run;
    expect(e!.exitCode).toBe(130);
    expect(comparable(s.k.observe())).toEqual(comparable(s.before));
    expect(s.warn.join('\n')).toMatch(/rolling back/);
  });

  it('no signal: the same sync applies everything (the fake blocks nothing)', async () => {
    const s = setup('none');
    const proc = new EventEmitter();
    expect(await runSync({ config: s.config, stateDir: path.join(dir, 'state'), quiet: true }, s.deps, proc)).toBe(0);
    expect(s.calls).toContain('ip6tables-restore --noflush');
    expect(s.k.nft?.rules.length).toBeGreaterThan(0);
  });
});

describe('daemon: SIGTERM/SIGINT during a refresh roll it back like sync, then exit 143/130', () => {
  // the cron tick and drift checks never come during the test: the only job is the refresh at start
  const yaml = 'allow: [{ domain: api.example.com }]\ndns: { servers: [198.51.100.53], gate: { enabled: false } }\nschedule: { refresh: "0 0 1 1 *", driftCheck: 1h }\n';
  for (const [signal, code] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
    it(`${signal} while the refresh's iptables-restore runs: undone, exit ${code}`, async () => {
      const s = setup('iptables-restore', yaml);
      const proc = new EventEmitter();
      const out: string[] = [];
      const running = runDaemon({ config: s.config, stateDir: path.join(dir, 'state'), json: true }, { ...s.deps, out: (t: string) => void out.push(t) }, proc as never);
      await s.atBlockedStep;
      expect(s.k.sets.has('egressfw-v4')).toBe(true); // ipset and ufw steps are done
      proc.emit(signal);
      proc.emit(signal); // a second one does not cut the rollback short
      s.unblock();
      expect(await running).toBe(code);
      // the next step never started: what follows the blocked step is its rollback
      expect(s.calls[s.calls.indexOf('iptables-restore --noflush') + 1]).toBe('iptables-restore --noflush');
      expect(s.k.nft).toBeNull();
      expect(comparable(s.k.observe())).toEqual(comparable(s.before));
      expect(JSON.parse(readFileSync(path.join(dir, 'state', 'state.json'), 'utf8')).lastSync.ok).toBe(false);
      const events = out.map((l) => JSON.parse(l) as { event: string; error?: string });
      expect(events.map((e) => e.event)).toEqual(['started', 'stopping', 'stopping', 'error', 'stopped', 'interrupted']);
      expect(events.at(-1)!.error).toMatch(new RegExp(`^interrupted by ${signal} before ip6tables-restore`));
    });
  }

  it('SIGTERM with no job running: the daemon stops and exits 0', async () => {
    const s = setup('none', yaml);
    const proc = new EventEmitter();
    const out: string[] = [];
    const running = runDaemon({ config: s.config, stateDir: path.join(dir, 'state'), json: true }, { ...s.deps, out: (t: string) => void out.push(t) }, proc as never);
    while (!out.some((l) => JSON.parse(l).event === 'refresh')) await new Promise((r) => setImmediate(r));
    proc.emit('SIGTERM');
    expect(await running).toBe(0);
    expect(s.k.nft?.rules.length).toBeGreaterThan(0);
  });
});
