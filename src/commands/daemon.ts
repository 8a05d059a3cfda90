import { loadConfig, type Config } from '../config/load.js';
import { computeRound } from '../engine.js';
import { PreconditionError } from '../errors.js';
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
  writer: () => { command(cmds: string): Promise<void>; close(): void };
}

export interface DaemonOptions {
  config: string;
  stateDir: string;
  json: boolean;
}

/** The DNS gate child (src/system/supervise.ts in production): started when dns.gate.enabled, restarted when it exits. */
export interface GateControl {
  start(): void;
  /** SIGHUP to the gate: it re-reads the config */
  signal(sig: 'SIGHUP'): void;
  restart(): Promise<void>;
  stop(): Promise<void>;
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
export async function runDaemon(opts: DaemonOptions, deps: SyncDeps & { timers?: Timers }, proc: DaemonProcess, audit?: AuditDeps, gate?: GateControl, follow?: FollowSystem): Promise<number> {
  if (!deps.isRoot) throw new PreconditionError('the daemon changes the firewall and needs root: run it as root (systemd: `egressfw install --systemd`)');
  let config = await loadConfig(opts.config);
  const timers = deps.timers ?? realTimers;
  const log = (event: string, fields?: Record<string, unknown>) => deps.out(`${formatLog(opts.json, new Date(timers.nowMs()), event, fields)}\n`);
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
    const r = await locked(() => syncOnce(config, { stateDir: opts.stateDir, offline }, deps));
    follower?.synced(r.round.policies);
    return r;
  };

  const daemon = new Daemon(scheduleOf(config), {
    refresh: () =>
      exclusive(async () => {
        const r = await synced(false);
        const next = nextRefreshAt(r.round.allowed);
        return { changes: r.applied, warnings: r.warnings, ...(next !== undefined ? { nextRefreshAt: next } : {}) };
      }),
    detectDrift: async () => {
      const now = deps.now();
      const { state } = parseState(await deps.readText(stateFile(opts.stateDir)), stateCheck(config, now));
      const round = await computeRound(config, state, { query: deps.query, readText: deps.readText, observe: deps.observe, inventory: deps.inventory, now, resolve: false });
      return round.plan.ops.map(describeOp);
    },
    repair: () => exclusive(async () => (await synced(true)).applied),
    log,
    now: deps.now,
    timers,
  });

  const stopped = new Promise<void>((resolve) => {
    const stop = (signal: string) => {
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
      (c) => {
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
        log('config-reloaded', { domains: c.domains.length });
      },
      (e: Error) => log('error', { job: 'reload', error: e.message.replace(/\n\s*/g, ' '), kept: 'previous config' }),
    );
  });

  log('started', { config: opts.config, refresh: config.schedule.refresh, driftCheckSec: config.schedule.driftCheck, domains: config.domains.length, gate: config.dns.gate.enabled });
  daemon.start();
  // Records of refused connections: Docker snapshots and collections (issue 12), beside the sync jobs.
  const auditLoop = audit ? startAuditLoop({ ...auditLoopDeps(opts.stateDir, audit, log), timers }) : null;
  const stopAudit = auditLoop ?? (async () => {});
  // Policies: follow Docker's events between syncs (started whatever the config says now: a SIGHUP may turn policies on).
  if (follow && config.containers.enabled) {
    const w = (writer = follow.writer());
    follower = new PolicyFollower({
      watch: follow.watch,
      inspect: follow.inspect,
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
  }
  if (config.dns.gate.enabled) {
    if (!gate) throw new PreconditionError('dns.gate.enabled is true but this build cannot start the gate');
    gate.start();
  }
  await stopped;
  await stopAudit();
  return 0;
}
