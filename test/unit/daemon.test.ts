import { describe, expect, it } from 'vitest';
import { Daemon, formatLog, type DaemonDeps, type DaemonSchedule } from '../../src/schedule/daemon.js';

// Real timers with short intervals; assertions are on the sequence of events, never on durations.
const RARE = '0 0 1 1 *'; // the cron tick never comes during a test
const sched = (over: Partial<DaemonSchedule> = {}): DaemonSchedule => ({ refresh: RARE, driftCheckSec: 0.03, retryMaxSec: 0.2, minTtlSec: 0, retryFirstSec: 0.02, ...over });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function recorder(over: Partial<DaemonDeps> = {}) {
  const events: { event: string; fields?: Record<string, unknown> }[] = [];
  const deps: DaemonDeps = {
    refresh: async () => ({ changes: [], warnings: [] }),
    detectDrift: async () => [],
    repair: async () => [],
    log: (event, fields) => events.push({ event, ...(fields ? { fields } : {}) }),
    now: () => Date.now() / 1000,
    ...over,
  };
  return { events, deps };
}

describe('daemon scheduler', () => {
  it('refreshes at start, then checks for drift and repairs it from saved state', async () => {
    let drifted = true;
    let repairs = 0;
    const { events, deps } = recorder({
      detectDrift: async () => (drifted ? ['iptables: put the jump to EGRESSFW first in DOCKER-USER'] : []),
      repair: async () => {
        repairs++;
        drifted = false;
        return ['iptables: put the jump to EGRESSFW first in DOCKER-USER'];
      },
    });
    const d = new Daemon(sched(), deps);
    d.start();
    await sleep(200);
    await d.stop();
    expect(events[0]).toMatchObject({ event: 'refresh', fields: { changes: 0 } });
    expect(events.filter((e) => e.event === 'drift-repaired')).toHaveLength(1);
    expect(repairs).toBe(1);
  });

  it('retries a failing refresh with growing waits, and logs each failure', async () => {
    let calls = 0;
    const { events, deps } = recorder({
      refresh: async () => {
        calls++;
        if (calls <= 3) throw new Error('dns down\nmore detail');
        return { changes: ['replace ipset egressfw-v4'], warnings: [] };
      },
    });
    const d = new Daemon(sched({ driftCheckSec: 60 }), deps);
    d.start();
    await sleep(400);
    await d.stop();
    const errors = events.filter((e) => e.event === 'error');
    expect(errors.map((e) => e.fields!.retryInSec)).toEqual([0.02, 0.04, 0.08]);
    expect(errors[0]!.fields!.error).toBe('dns down');
    expect(events.at(-1)).toMatchObject({ event: 'refresh', fields: { changes: 1, applied: ['replace ipset egressfw-v4'] } });
  });

  it('refreshes early when a TTL runs out', async () => {
    let calls = 0;
    const { deps } = recorder({
      refresh: async () => {
        calls++;
        return { changes: [], warnings: [], nextRefreshAt: Date.now() / 1000 + 0.05 };
      },
    });
    const d = new Daemon(sched({ driftCheckSec: 60 }), deps);
    d.start();
    await sleep(300);
    await d.stop();
    expect(calls).toBeGreaterThanOrEqual(3);
  });

  it('never runs two jobs at once, and stop() waits for the running one', async () => {
    let running = 0;
    let overlap = false;
    let finished = 0;
    const slow = async () => {
      running++;
      if (running > 1) overlap = true;
      await sleep(40);
      running--;
      finished++;
      return [] as string[];
    };
    const { deps } = recorder({ refresh: async () => ({ changes: await slow(), warnings: [] }), detectDrift: slow });
    const d = new Daemon(sched({ driftCheckSec: 0.01 }), deps);
    d.start();
    d.enqueue('refresh');
    await sleep(150);
    await d.stop();
    const after = finished;
    expect(running).toBe(0);
    expect(overlap).toBe(false);
    await sleep(80);
    expect(finished).toBe(after); // nothing runs after stop
  });

  it('a deleted table (ruleset flush) is checked and repaired at once, not at the next drift tick', async () => {
    let gone = false;
    let repairs = 0;
    const { events, deps } = recorder({
      detectDrift: async () => (gone ? ['nft: create table inet egressfw'] : []),
      repair: async () => {
        repairs++;
        gone = false;
        return ['nft: create table inet egressfw'];
      },
    });
    // drift ticks an hour apart: only the urgent check can repair within the test
    const d = new Daemon(sched({ driftCheckSec: 3600 }), deps);
    d.start();
    await d.idle();
    gone = true;
    d.urgentDriftCheck();
    await d.idle();
    expect(repairs).toBe(1);
    expect(events.at(-1)).toMatchObject({ event: 'drift-repaired', fields: { drift: ['nft: create table inet egressfw'] } });
    await d.stop();
    d.urgentDriftCheck(); // stopped: nothing more runs
    await d.idle();
    expect(repairs).toBe(1);
  });

  it('a failing drift check is logged and the daemon goes on', async () => {
    let checks = 0;
    const { events, deps } = recorder({
      detectDrift: async () => {
        checks++;
        if (checks === 1) throw new Error('iptables-save failed');
        return [];
      },
    });
    const d = new Daemon(sched(), deps);
    d.start();
    await sleep(150);
    await d.stop();
    expect(events.some((e) => e.event === 'error' && e.fields!.job === 'drift-check')).toBe(true);
    expect(checks).toBeGreaterThan(1);
  });
});

describe('daemon log lines', () => {
  const at = new Date('2026-11-28T12:00:00Z');
  it('text: one line, key=value, quoted when needed', () => {
    expect(formatLog(false, at, 'refresh', { changes: 2, applied: ['a b', 'c'], ms: 12 })).toBe('2026-11-28T12:00:00.000Z refresh changes=2 applied="a b; c" ms=12');
  });
  it('json: one object per line', () => {
    expect(JSON.parse(formatLog(true, at, 'error', { job: 'refresh', error: 'x' }))).toEqual({ time: '2026-11-28T12:00:00.000Z', event: 'error', job: 'refresh', error: 'x' });
  });
});

describe('log lines escape what a terminal would act on', () => {
  it('text: a DNS name with an escape sequence stays on one line, escaped', () => {
    const line = formatLog(false, new Date(0), 'refresh', { name: 'x\x1b[2Jy', warnings: ['a\nb'] });
    expect(line).not.toMatch(/[\x00-\x1f\x7f]/);
    expect(line).toContain('name=x\\x1b[2Jy');
  });
});
