import { afterEach, describe, expect, it, vi } from 'vitest';
import { startAuditLoop } from '../../src/schedule/audit-loop.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('the daemon audit loop', () => {
  it('collects at once and then every collectSec, snapshots every snapshotSec, never two jobs at a time', async () => {
    vi.useFakeTimers();
    const events: string[] = [];
    let running = 0;
    let overlap = false;
    const job = (name: string, ms: number, out: () => unknown = () => undefined) => async () => {
      running++;
      if (running > 1) overlap = true;
      events.push(name);
      await new Promise((r) => setTimeout(r, ms));
      running--;
      return out() as never;
    };
    const logs: unknown[] = [];
    const stop = startAuditLoop(
      { snapshot: job('snapshot', 100), collect: job('collect', 3000, () => ['set nearly full']), log: (e, f) => logs.push([e, f]) },
      { snapshotSec: 1, collectSec: 10 },
    );
    await vi.advanceTimersByTimeAsync(25_000);
    expect(overlap).toBe(false);
    expect(events.filter((e) => e === 'collect')).toHaveLength(3); // t=0, 10, 20
    // while a 3 s collection runs, snapshots due then are skipped, not stacked
    expect(events.filter((e) => e === 'snapshot').length).toBeGreaterThan(10);
    expect(events.filter((e) => e === 'snapshot').length).toBeLessThan(25);
    expect(logs).toEqual([['audit', { notes: ['set nearly full'] }]]); // the same note once
    const done = stop();
    await vi.advanceTimersByTimeAsync(5000);
    await done;
    const n = events.length;
    await vi.advanceTimersByTimeAsync(30_000);
    expect(events).toHaveLength(n);
  });

  it('logs a failing job and keeps going', async () => {
    vi.useFakeTimers();
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
      },
      { snapshotSec: 100, collectSec: 1 },
    );
    await vi.advanceTimersByTimeAsync(2500);
    await stop();
    expect(calls).toBe(3);
    expect(logs[0]).toEqual(['error', { job: 'audit-collect', error: '`nft list set inet egressfw refused4` failed' }]);
  });
});
