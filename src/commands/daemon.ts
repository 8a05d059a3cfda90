import { loadConfig, withScheduler, type Config } from '../config/load.js';
import { schedulerFile, schedulerText } from '../system/scheduler.js';
import { computeRound } from '../engine.js';
import { InterruptedError, PreconditionError } from '../errors.js';
import { describeOp } from '../plan/render.js';
import { nextRefreshAt } from '../resolve/merge.js';
import { auditLoopDeps, startAuditLoop } from '../schedule/audit-loop.js';
import { Daemon, formatLog, type DaemonSchedule } from '../schedule/daemon.js';
import type { AuditDeps } from '../system/audit-io.js';
import { parseState, stateCheck, stateFile } from '../state-file.js';
import { realTimers, type Timers } from '../timers.js';
import { syncOnce, type SyncDeps } from './sync.js';
import { policiesInUse } from '../policy/assign.js';
import { PolicyFollower } from '../schedule/policy-follow.js';
import type { InventoryContainer } from '../plan/policies.js';
import type { EventStream, EventStreamHandlers } from '../system/docker-events.js';

/** What following Docker's events needs from the system (src/deps.ts): the stream, one container, an nft writer. */
export interface FollowSystem {
  watch: (h: EventStreamHandlers) => EventStream;
  inspect: (id: string) => Promise<InventoryContainer | null>;
  list: (ids: string[]) => Promise<InventoryContainer[]>;
  writer: () => { command(cmds: string): Promise<void>; close(): void };
}
import { Metrics, type BuildInfo } from '../metrics/metrics.js';
import { startMetricsLoop } from '../schedule/metrics-loop.js';
import type { KernelRecord } from '../audit/records.js';
import type { MetricsListen } from '../metrics/listen.js';
import type { Exposition, MetricsServer } from '../system/metrics-out.js';

export interface DaemonOptions {
  config: string;
  stateDir: string;
  json: boolean;
  /** stdout is systemd's journal: each line carries its priority (`journalctl -p warning` shows what matters) */
  journal?: boolean;
}

/** The DNS gate child (src/system/supervise.ts in production): started when dns.gate.enabled, restarted when it exits. */
export interface GateControl {
  start(): void;
  /** SIGHUP to the gate: it re-reads the config */
  signal(sig: 'SIGHUP'): void;
  restart(): Promise<void>;
  stop(): Promise<void>;
  /** whether the child runs now (metrics: egressfw_gate_up) */
  readonly state?: { running: boolean; starts: number };
  /** also hand each of the child's stdout lines (the query log) to fn (metrics: DNS decisions) */
  tap?(fn: (line: string) => void): void;
  /** one loopback query to the gate on this port: does it answer? (src/gate/probe.ts in production) */
  probe?(port: number): Promise<boolean>;
}

/** How long a refresh waits for a gate that does not answer yet (it starts in about 0.5-1 s). */
export const GATE_WAIT_MS = 5000;

/** What the metrics outputs need from the system (src/deps.ts in production). */
export interface DaemonMetricsDeps {
  build: BuildInfo;
  /** the kernel's refusal records, read-only */
  readRecords: () => Promise<{ records: KernelRecord[]; read: string[] }>;
  serve: (listen: MetricsListen, exp: Exposition, onError: (e: Error) => void) => Promise<MetricsServer>;
  writeFileAtomic: (file: string, text: string) => Promise<void>;
}

export interface DaemonProcess {
  on(signal: 'SIGHUP' | 'SIGTERM' | 'SIGINT', fn: () => void): void;
}

const scheduleOf = (c: Config): DaemonSchedule => ({
  refresh: c.schedule.refresh,
  driftCheckSec: c.schedule.driftCheck,
  retryMaxSec: c.schedule.retryMax,
  minTtlSec: c.dns.minTtl,
});

/**
 * `egressfw daemon`: a foreground scheduler for systemd. Refreshes on the
 * cron schedule and when a TTL runs out; between refreshes it reads the
 * kernel for drift and re-applies the saved state at once when it finds any.
 */
/** Calls back when egressfw's nft table is deleted (src/system/nft-watch.ts in production). */
export type WatchTable = (onDeleted: () => void, log: (event: string, fields: Record<string, unknown>) => void) => Promise<{ stop(): Promise<void> }>;

export async function runDaemon(opts: DaemonOptions, deps: SyncDeps & { timers?: Timers }, proc: DaemonProcess, audit?: AuditDeps, gate?: GateControl, metricsDeps?: DaemonMetricsDeps, follow?: FollowSystem, watchTable?: WatchTable): Promise<number> {
  if (!deps.isRoot) throw new PreconditionError('the daemon changes the firewall and needs root: run it as root (systemd: `egressfw install --systemd`)');
  // Under the daemon an unset dns.gate.enabled is on; the marker tells a hand-run sync (and status) so.
  let config = withScheduler(await loadConfig(opts.config), 'daemon');
  await deps.writeFileAtomic(schedulerFile(opts.stateDir), schedulerText('daemon'));
  const timers = deps.timers ?? realTimers;
  const m0 = config.metrics;
  // Metrics only when an output is configured: nothing is counted for nobody.
  const metrics = metricsDeps && (m0.textfile || m0.listen) ? new Metrics(metricsDeps.build, { domainLabels: m0.domainLabels, now: deps.now }) : null;
  const log = (event: string, fields: Record<string, unknown> = {}) => {
    metrics?.event(event, fields);
    deps.out(`${formatLog(opts.json, new Date(timers.nowMs()), event, fields, opts.journal)}\n`);
  };
  const locked = async <T>(fn: () => Promise<T>): Promise<T> => {
    const release = await deps.acquireLock();
    try {
      return await fn();
    } finally {
      await release();
    }
  };
  // One thing at a time in this process: a sync, or one event's map update (they share the map).
  let turn: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = turn.then(fn);
    turn = run.then(() => {}, () => {});
    return run;
  };
  const perPolicy = () => config.containers.enabled && policiesInUse(config);
  let follower: PolicyFollower | null = null;
  let writer: ReturnType<FollowSystem['writer']> | null = null;
  /** a sync (under the file lock), telling the follower what the map now holds */
  const synced = async (offline: boolean) => {
    const r = await locked(() => sync(offline));
    follower?.synced(r.round.policies);
    return r;
  };

  // SIGTERM/SIGINT abort a refresh or repair in flight: its apply rolls back like a failed step (as in
  // `egressfw sync`), and the daemon then exits 143/130 instead of 0.
  const abort = new AbortController();
  let interrupted = null as InterruptedError | null; // set inside the jobs (TS cannot see that)
  const sync = async (offline: boolean) => {
    try {
      return await syncOnce(config, { stateDir: opts.stateDir, offline, signal: abort.signal }, deps);
    } catch (e) {
      if (abort.signal.aborted) throw (interrupted = new InterruptedError(abort.signal.reason as 'SIGTERM' | 'SIGINT', (e as Error).message));
      throw e;
    }
  };
  // The refresh's own lookups are host DNS, redirected to the gate (chain gate-host): a refresh that ran
  // before the gate answers (the first one, while the gate starts) would fail every name and keep the
  // last-known-good addresses until the next refresh. So it waits for the gate, GATE_WAIT_MS at most.
  const gateAnswers = async () => {
    if (!config.dns.gate.enabled || !gate?.probe) return;
    const until = timers.monoMs() + GATE_WAIT_MS;
    while (!abort.signal.aborted && !(await gate.probe(config.dns.gate.port).catch(() => false))) {
      if (timers.monoMs() >= until) return;
      await new Promise<void>((r) => timers.setTimeout(r, 100));
    }
  };
  const daemon = new Daemon(scheduleOf(config), {
    // the wait outside `exclusive`: the policy follower's map updates do not wait for the gate
    refresh: async () => {
      await gateAnswers();
      return exclusive(async () => {
        const r = await synced(false);
        metrics?.round(r.round, { installed: true, synced: true });
        const next = nextRefreshAt(r.round.allowed);
        const flowsCut = r.flows.host + r.flows.containers;
        return { changes: r.applied, warnings: r.warnings, ...(flowsCut ? { flowsCut } : {}), ...(next !== undefined ? { nextRefreshAt: next } : {}) };
      });
    },
    detectDrift: async () => {
      const now = deps.now();
      const { state } = parseState(await deps.readText(stateFile(opts.stateDir)), stateCheck(config, now));
      const round = await computeRound(config, state, { query: deps.query, readText: deps.readText, observe: deps.observe, ...(metrics ? { inspectDocker: deps.inspectDocker } : {}), inventory: deps.inventory, now, resolve: false });
      metrics?.round(round, { installed: state.lastSync !== undefined, synced: false });
      if (round.plan.ops.length) metrics?.event('drift-detected', {});
      return round.plan.ops.map(describeOp);
    },
    repair: () =>
      exclusive(async () => {
        const r = await synced(true);
        metrics?.round(r.round, { installed: true, synced: true });
        return r.applied;
      }),
    log,
    now: deps.now,
    timers,
  });

  const stopped = new Promise<void>((resolve) => {
    const stop = (signal: 'SIGTERM' | 'SIGINT') => {
      if (abort.signal.aborted) return log('stopping', { signal, note: 'already stopping; a rollback in progress is finished first' });
      abort.abort(signal);
      log('stopping', { signal });
      void Promise.all([daemon.stop(), gate?.stop(), follower?.stop().then(() => writer?.close())]).then(() => {
        log('stopped');
        resolve();
      });
    };
    proc.on('SIGTERM', () => stop('SIGTERM'));
    proc.on('SIGINT', () => stop('SIGINT'));
  });
  proc.on('SIGHUP', () => {
    loadConfig(opts.config).then(
      (loaded) => {
        const c = withScheduler(loaded, 'daemon');
        const was = config.dns.gate;
        config = c;
        if (gate) {
          const now = c.dns.gate;
          if (!now.enabled) void gate.stop();
          else if (!was.enabled) gate.start();
          else if (now.port !== was.port || now.listen.join() !== was.listen.join()) void gate.restart();
          else gate.signal('SIGHUP');
        }
        daemon.reschedule(scheduleOf(c));
        startFollower();
        log('config-reloaded', { domains: c.domains.length });
        if (JSON.stringify(c.metrics) !== JSON.stringify(m0)) log('warning', { message: 'metrics.* changed: it takes effect when the daemon restarts (`systemctl restart egressfw`)' });
      },
      (e: Error) => log('error', { job: 'reload', error: e.message.replace(/\n\s*/g, ' '), kept: 'previous config' }),
    );
  });

  // The endpoint first: an address in use stops the daemon before it changes anything.
  const server = metrics && m0.listen ? await metricsDeps!.serve(m0.listen, metrics, (e) => log('error', { job: 'metrics', error: e.message })) : null;
  // A ruleset flush (nftables.service start or reload) deletes our table: repaired at once, not at the next drift tick.
  const watch = config.containers.enabled && watchTable
    ? await watchTable(() => {
        log('table-deleted', { table: 'inet egressfw', action: 'drift check now' });
        daemon.urgentDriftCheck();
      }, log)
    : null;
  log('started', { config: opts.config, refresh: config.schedule.refresh, driftCheckSec: config.schedule.driftCheck, domains: config.domains.length, gate: config.dns.gate.enabled });
  daemon.start();
  // Records of refused connections: Docker snapshots and collections (issue 12), beside the sync jobs.
  const auditLoop = audit ? startAuditLoop({ ...auditLoopDeps(opts.stateDir, audit, log), timers }) : null;
  const stopAudit = auditLoop ?? (async () => {});
  // Policies: follow Docker's events between syncs, only while policies are in use (a SIGHUP may turn them
  // on): an open /events stream holds up dockerd's shutdown (seen on 26.1), and nothing needs it otherwise.
  const startFollower = () => {
    if (!follow || follower || !perPolicy()) return;
    const w = (writer = follow.writer());
    follower = new PolicyFollower({
      watch: follow.watch,
      inspect: follow.inspect,
      list: follow.list,
      write: (cmds) => (perPolicy() ? w.command(cmds) : Promise.resolve()),
      resync: async () => (perPolicy() ? (await locked(() => syncOnce(config, { stateDir: opts.stateDir, offline: true }, deps))).round.policies : null),
      exclusive,
      config: () => config,
      log,
      ...(auditLoop ? { onStart: () => auditLoop.snapshotNow() } : {}),
      nowMs: timers.nowMs,
      setTimer: (fn, ms) => timers.setTimeout(fn, ms),
      clearTimer: (t) => timers.clearTimeout(t),
    });
    follower.start();
  };
  startFollower();
  if (config.dns.gate.enabled) {
    if (!gate) throw new PreconditionError('dns.gate.enabled is true but this build cannot start the gate');
    gate.start();
  }
  if (metrics) gate?.tap?.((line) => metrics.gateLine(line));
  const stopMetrics = metrics
    ? startMetricsLoop(
        {
          metrics,
          readRecords: metricsDeps!.readRecords,
          gate: () => (config.dns.gate.enabled && gate?.state ? gate.state : null),
          ...(m0.textfile ? { writeTextfile: (text: string) => metricsDeps!.writeFileAtomic(m0.textfile!, text) } : {}),
          log,
          timers,
        },
        m0.intervalSec,
      )
    : async () => {};
  if (metrics) log('metrics', { ...(server ? { listen: server.address } : {}), ...(m0.textfile ? { textfile: m0.textfile } : {}), intervalSec: m0.intervalSec });
  await stopped;
  await watch?.stop();
  await Promise.all([stopAudit(), stopMetrics(), server?.close()]);
  if (interrupted) {
    log('interrupted', { signal: abort.signal.reason, error: interrupted.message.split('\n')[0] });
    return interrupted.exitCode;
  }
  return 0;
}
