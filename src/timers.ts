/**
 * Time and timers, injected (like the gate's nowMs and the merge's now) so
 * tests move time forward instead of waiting for it to pass.
 */
export type TimerHandle = unknown;

export interface Timers {
  /** unix ms */
  nowMs(): number;
  /** monotonic ms (deadlines, durations) */
  monoMs(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(t: TimerHandle): void;
  setInterval(fn: () => void, ms: number): TimerHandle;
  clearInterval(t: TimerHandle): void;
}

export const realTimers: Timers = {
  nowMs: () => Date.now(),
  monoMs: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout | undefined),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (t) => clearInterval(t as NodeJS.Timeout | undefined),
};
