import { describe, expect, it } from 'vitest';
import { Daemon, formatLog, type CronStart, type DaemonDeps, type DaemonSchedule } from '../../src/schedule/daemon.js';
import { FakeTimers } from '../support/fake-timers.js';

// Injected timers: time moves when the test says so; assertions are on the sequence of events, never on durations.
const sched = (over: Partial<DaemonSchedule> = {}): DaemonSchedule => ({ refresh: '0 * * * *', driftCheckSec: 30, retryMaxSec: 200, minTtlSec: 0, retryFirstSec: 20, ...over });

/** A cron that ticks every `everyMs` of the fake time. */
const fakeCron =
  (timers: FakeTimers, everyMs = 3_600_000): CronStart =>
  (_expr, tick) => {
    let next = timers.monoMs() + everyMs;
    const h = timers.setInterval(() => {
      next += everyMs;
      tick();
    }, everyMs);
    return { destroy: () => timers.clearInterval(h), msToNext: () => next - timers.monoMs() };
  };

function recorder(over: Partial<DaemonDeps> = {}) {
  const timers = new FakeTimers();
  const events: { event: string; fields?: Record<string, unknown> }[] = [];
  const deps: DaemonDeps = {
    refresh: async () => ({ changes: [], warnings: [] }),
    detectDrift: async () => [],
    repair: async () => [],
    log: (event, fields) => events.push({ event, ...(fields ? { fields } : {}) }),
    now: () => timers.nowMs() / 1000,
    timers,
    cron: fakeCron(timers),
    ...over,
  };
  return { events, deps, timers };
}
const sleepOn = (timers: FakeTimers, ms: number) => new Promise<void>((r) => timers.setTimeout(r, ms));

describe('daemon scheduler', () => {
  it('refreshes at start, then checks for drift every driftCheckSec and repairs it from saved state', async () => {
    let drifted = true;
    let checks = 0;
    let repairs = 0;
    const { events, deps, timers } = recorder({
      detectDrift: async () => {
        checks++;
        return drifted ? ['iptables: put the jump to EGRESSFW first in DOCKER-USER'] : [];
      },
      repair: async () => {
        repairs++;
        drifted = false;
        return ['iptables: put the jump to EGRESSFW first in DOCKER-USER'];
      },
    });
    const d = new Daemon(sched(), deps);
    d.start();
    await timers.advance(0);
    expect(events).toEqual([{ event: 'refresh', fields: { changes: 0, ms: 0 } }]);
    expect(checks).toBe(0);
    await timers.advance(30_000);
    expect(checks).toBe(1);
    await timers.advance(60_000);
    await d.stop();
    expect(checks).toBe(3);
    expect(events.filter((e) => e.event === 'drift-repaired')).toHaveLength(1);
    expect(repairs).toBe(1);
  });

  it('retries a failing refresh with growing waits, and logs each failure', async () => {
    let calls = 0;
    const { events, deps, timers } = recorder({
      refresh: async () => {
        calls++;
        if (calls <= 3) throw new Error('dns down\nmore detail');
        return { changes: ['replace ipset egressfw-v4'], warnings: [] };
      },
    });
    const d = new Daemon(sched({ driftCheckSec: 6000 }), deps);
    d.start();
    await timers.advance(0);
    expect(calls).toBe(1);
    await timers.advance(19_999);
    expect(calls).toBe(1); // the first retry is due after 20 s, not before
    await timers.advance(1 + 40_000 + 80_000);
    await d.stop();
    expect(calls).toBe(4);
    const errors = events.filter((e) => e.event === 'error');
    expect(errors.map((e) => e.fields!.retryInSec)).toEqual([20, 40, 80]);
    expect(errors[0]!.fields!.error).toBe('dns down');
    expect(events.at(-1)).toMatchObject({ event: 'refresh', fields: { changes: 1, applied: ['replace ipset egressfw-v4'] } });
  });

  it('refreshes early when a TTL runs out, and not when the cron tick comes first', async () => {
    let calls = 0;
    let ttl = 50;
    const { deps, timers } = recorder({
      refresh: async () => {
        calls++;
        return { changes: [], warnings: [], nextRefreshAt: timers.nowMs() / 1000 + ttl };
      },
    });
    const d = new Daemon(sched({ driftCheckSec: 6000 }), deps);
    d.start();
    await timers.advance(0);
    await timers.advance(50_000);
    expect(calls).toBe(2);
    await timers.advance(50_000);
    expect(calls).toBe(3);
    ttl = 7200; // beyond the hourly tick: the tick refreshes
    await timers.advance(50_000);
    expect(calls).toBe(4);
    await timers.advance(3_600_000);
    await d.stop();
    expect(calls).toBe(5); // the tick at 1 h, no early refresh
  });

  it('never runs two jobs at once, and stop() waits for the running one', async () => {
    let running = 0;
    let overlap = false;
    let finished = 0;
    const { deps, timers } = recorder();
    const slow = async () => {
      running++;
      if (running > 1) overlap = true;
      await sleepOn(timers, 4000);
      running--;
      finished++;
      return [] as string[];
    };
    Object.assign(deps, { refresh: async () => ({ changes: await slow(), warnings: [] }), detectDrift: slow });
    const d = new Daemon(sched({ driftCheckSec: 1 }), deps);
    d.start();
    d.enqueue('refresh');
    await timers.advance(15_000);
    expect(finished).toBeGreaterThan(2);
    const stopping = d.stop();
    await timers.advance(4000);
    await stopping;
    const after = finished;
    expect(running).toBe(0);
    expect(overlap).toBe(false);
    await timers.advance(60_000);
    expect(finished).toBe(after); // nothing runs after stop
    expect(timers.pending).toBe(0);
  });

  it('a failing drift check is logged and the daemon goes on', async () => {
    let checks = 0;
    const { events, deps, timers } = recorder({
      detectDrift: async () => {
        checks++;
        if (checks === 1) throw new Error('iptables-save failed');
        return [];
      },
    });
    const d = new Daemon(sched(), deps);
    d.start();
    await timers.advance(90_000);
    await d.stop();
    expect(events.filter((e) => e.event === 'error').map((e) => e.fields)).toEqual([{ job: 'drift-check', error: 'iptables-save failed' }]);
    expect(checks).toBe(3);
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
