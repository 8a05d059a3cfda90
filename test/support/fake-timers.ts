import type { TimerHandle, Timers } from '../../src/timers.js';

/** Let pending promise callbacks and finished I/O run (real event-loop turns, no waiting for time). */
export async function settle(turns = 50): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((r) => setImmediate(r));
}

/**
 * Timers whose time moves only when a test says so: advance(ms) runs every
 * timer that falls due, in order, letting the code they start settle between.
 */
export class FakeTimers implements Timers {
  private mono = 0;
  private seq = 0;
  private readonly due = new Map<number, { at: number; fn: () => void; every?: number }>();

  constructor(private wall = Date.parse('2026-11-30T12:00:00Z')) {}

  nowMs = () => this.wall;
  monoMs = () => this.mono;
  setTimeout = (fn: () => void, ms: number): TimerHandle => this.add(fn, ms);
  setInterval = (fn: () => void, ms: number): TimerHandle => this.add(fn, ms, Math.max(1, ms));
  clearTimeout = (t: TimerHandle) => void this.due.delete(t as number);
  clearInterval = (t: TimerHandle) => void this.due.delete(t as number);

  /** timers waiting to fire */
  get pending(): number {
    return this.due.size;
  }

  async advance(ms: number): Promise<void> {
    const end = this.mono + ms;
    for (;;) {
      await settle();
      let next: [number, { at: number; fn: () => void; every?: number }] | undefined;
      for (const e of this.due) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      const [id, t] = next;
      this.step(t.at - this.mono);
      if (t.every) t.at += t.every;
      else this.due.delete(id);
      t.fn();
    }
    this.step(end - this.mono);
    await settle();
  }

  private step(ms: number): void {
    this.mono += ms;
    this.wall += ms;
  }

  private add(fn: () => void, ms: number, every?: number): number {
    const id = ++this.seq;
    this.due.set(id, { at: this.mono + Math.max(0, ms), fn, ...(every ? { every } : {}) });
    return id;
  }
}

/** Wait until `cond` holds: for I/O the code under test started (files, child processes), never for time to pass. */
export async function until(cond: () => boolean, what = 'the condition', limitMs = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > limitMs) throw new Error(`${what} did not happen within ${limitMs} ms`);
    await new Promise<void>((r) => setTimeout(r, 1));
  }
}
