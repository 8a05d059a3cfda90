import type { KernelRecord } from '../audit/records.js';
import type { Metrics } from '../metrics/metrics.js';
import { realTimers, type Timers } from '../timers.js';

export interface MetricsLoopDeps {
  metrics: Metrics;
  /** the kernel's refusal records (read-only); absent: not read */
  readRecords?: () => Promise<{ records: KernelRecord[]; read: string[] }>;
  /** the gate's process (running, times started); null when the gate is not enabled */
  gate: () => { running: boolean; starts: number } | null;
  /** metrics.textfile: write the exposition atomically */
  writeTextfile?: (text: string) => Promise<void>;
  log: (event: string, fields?: Record<string, unknown>) => void;
  timers?: Timers;
}

/**
 * Every interval: the kernel's refusal counters and the gate's state into the
 * metrics, then the textfile rewritten. Scrapes of the endpoint render what
 * the last tick and the daemon's jobs left (a scrape costs no kernel read).
 * Returns stop(), which waits for the tick in progress.
 */
export function startMetricsLoop(deps: MetricsLoopDeps, intervalSec: number): () => Promise<void> {
  let running: Promise<void> = Promise.resolve();
  let busy = false;
  let lastError = '';
  const tick = () => {
    if (busy) return;
    busy = true;
    running = (async () => {
      try {
        deps.metrics.gate(deps.gate());
        if (deps.readRecords) {
          const k = await deps.readRecords();
          deps.metrics.kernelRecords(k.records, k.read);
        }
        if (deps.writeTextfile) await deps.writeTextfile(await deps.metrics.render());
        lastError = '';
      } catch (e) {
        // Say a lasting problem once, not every interval (it is counted every time).
        const msg = (e as Error).message.split('\n')[0]!;
        if (msg !== lastError) deps.log('error', { job: 'metrics', error: msg });
        else deps.metrics.event('error', { job: 'metrics' });
        lastError = msg;
      } finally {
        busy = false;
      }
    })();
  };
  const timers = deps.timers ?? realTimers;
  const timer = timers.setInterval(tick, intervalSec * 1000);
  tick();
  return async () => {
    timers.clearInterval(timer);
    await running;
  };
}
