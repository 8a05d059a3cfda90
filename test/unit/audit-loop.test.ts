import { describe, expect, it } from 'vitest';
import { startAuditLoop } from '../../src/schedule/audit-loop.js';
import { FakeTimers } from '../support/fake-timers.js';

describe('the daemon audit loop', () => {
  it('collects at once and then every collectSec, snapshots every snapshotSec, never two jobs at a time', async () => {
    const timers = new FakeTimers();
    const events: string[] = [];
    let running = 0;
    let overlap = false;
    const job = (name: string, ms: number, out: () => unknown = () => undefined) => async () => {
      running++;
      if (running > 1) overlap = true;
      events.push(name);
      await new Promise((r) => timers.setTimeout(() => r(undefined), ms));
      running--;
      return out() as never;
    };
    const logs: unknown[] = [];
    const stop = startAuditLoop(
      { snapshot: job('snapshot', 100), collect: job('collect', 3000, () => ['set nearly full']), log: (e, f) => logs.push([e, f]), timers },
      { snapshotSec: 1, collectSec: 10 },
    );
    await timers.advance(25_000);
    expect(overlap).toBe(false);
    expect(events.filter((e) => e === 'collect')).toHaveLength(3); // t=0, 10, 20
    // while a 3 s collection runs, snapshots due then are skipped, not stacked
    expect(events.filter((e) => e === 'snapshot').length).toBeGreaterThan(10);
    expect(events.filter((e) => e === 'snapshot').length).toBeLessThan(25);
    expect(logs).toEqual([['audit', { notes: ['set nearly full'] }]]); // the same note once
    const done = stop();
    await timers.advance(5000);
    await done;
    const n = events.length;
    await timers.advance(30_000);
    expect(events).toHaveLength(n);
  });

  it('logs a failing job and keeps going', async () => {
    const timers = new FakeTimers();
    const logs: unknown[] = [];
    let calls = 0;
    const stop = startAuditLoop(
      {
        snapshot: async () => {},
        collect: async () => {
          calls++;
          throw new Error('`nft list set inet egressfw refused4` failed\nmore');
        },
        log: (e, f) => logs.push([e, f]),
        timers,
      },
      { snapshotSec: 100, collectSec: 1 },
    );
    await timers.advance(2500);
    await stop();
    expect(calls).toBe(3);
    expect(logs[0]).toEqual(['error', { job: 'audit-collect', error: '`nft list set inet egressfw refused4` failed' }]);
  });
});
