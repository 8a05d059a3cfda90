import { collectAudit, snapshotContainers, type AuditDeps } from '../system/audit-io.js';
import { realTimers, type Timers } from '../timers.js';

export interface AuditLoopDeps {
  /** Docker snapshot: which container holds which address (cheap: one API call) */
  snapshot: () => Promise<void>;
  /** read the kernel's records into the audit history */
  collect: () => Promise<string[]>;
  log: (event: string, fields?: Record<string, unknown>) => void;
  /** default: the real ones */
  timers?: Timers;
}

export interface AuditLoopTimes {
  /** a container living shorter than this between two snapshots is seen by none: its attempts stay unattributed */
  snapshotSec: number;
  /** the resolution of "first seen" for containers and of "last seen" for the host */
  collectSec: number;
}

export const AUDIT_LOOP_TIMES: AuditLoopTimes = { snapshotSec: 5, collectSec: 60 };

/**
 * The daemon's share of audit: Docker snapshots often, collections of the
 * kernel's records less often, one job at a time (snapshots due while a job
 * runs are skipped, a collection due then runs right after it). Returns
 * stop(), which waits for the job in progress.
 */
export function startAuditLoop(deps: AuditLoopDeps, times: AuditLoopTimes = AUDIT_LOOP_TIMES): (() => Promise<void>) & { snapshotNow(): void } {
  let chain: Promise<void> = Promise.resolve();
  let busy = false;
  let stopped = false;
  let collectDue = false;
  /** asked for by a container start event (snapshotNow): never skipped, at most one waits */
  let snapshotDue = false;
  let lastNotes = '';
  const run = (job: 'snapshot' | 'collect'): void => {
    if (stopped) return;
    if (busy) {
      // a periodic snapshot missed is taken again in a few seconds; a collection (or an event's snapshot) waits its turn
      if (job === 'collect') collectDue = true;
      return;
    }
    busy = true;
    chain = (async () => {
      try {
        if (job === 'snapshot') await deps.snapshot();
        else {
          const notes = await deps.collect();
          // Say a note once, not every minute.
          const text = notes.join('; ');
          if (text && text !== lastNotes) deps.log('audit', { notes });
          lastNotes = text;
        }
      } catch (e) {
        deps.log('error', { job: `audit-${job}`, error: (e as Error).message.split('\n')[0] });
      } finally {
        busy = false;
      }
      if (snapshotDue) {
        snapshotDue = false;
        run('snapshot');
      } else if (collectDue) {
        collectDue = false;
        run('collect');
      }
    })();
  };
  const timers = deps.timers ?? realTimers;
  const snap = timers.setInterval(() => run('snapshot'), times.snapshotSec * 1000);
  const coll = timers.setInterval(() => run('collect'), times.collectSec * 1000);
  run('collect');
  const stop = async () => {
    stopped = true;
    timers.clearInterval(snap);
    timers.clearInterval(coll);
    await chain;
  };
  // Docker's start events (the daemon follows them for policies): a container that lives 1 s is still seen running.
  const snapshotNow = () => {
    if (busy) snapshotDue = true;
    else run('snapshot');
  };
  return Object.assign(stop, { snapshotNow });
}

/** The loop's jobs on the real system layer. */
export function auditLoopDeps(stateDir: string, deps: AuditDeps, log: AuditLoopDeps['log']): AuditLoopDeps {
  return {
    snapshot: () => snapshotContainers(stateDir, deps),
    collect: async () => (await collectAudit(stateDir, deps)).notes,
    log,
  };
}
