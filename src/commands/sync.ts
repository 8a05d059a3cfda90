import { loadConfig, withScheduler, type Config } from '../config/load.js';
import { dnsOpen, dnsOpenText } from '../plan/dns-open.js';
import { readScheduler } from '../system/scheduler.js';
import { computeRound, type RoundDeps, wanted, type Round } from '../engine.js';
import { PreconditionError, EgressfwError, InterruptedError } from '../errors.js';
import { diff, type Plan } from '../plan/diff.js';
import { appliedRules } from '../plan/flows.js';
import { describeOp } from '../plan/render.js';
import type { QueryFn } from '../resolve/query.js';
import type { DockerView } from '../plan/coverage.js';
import { printable } from '../text.js';
import { applyPlan, type ApplyDeps } from '../system/apply.js';
import { checkBackend } from '../system/backend.js';
import type { Exec } from '../system/exec.js';
import { cutRefusedFlows, type FlowCut } from '../system/flows.js';
import type { Observation, Wanted } from '../system/observe.js';
import { parseState, serializeState, stateCheck, stateFile, stateNotes, type State } from '../state-file.js';

export interface SyncOptions {
  config: string;
  stateDir: string;
  quiet: boolean;
  /** no DNS: re-apply the saved IPs (boot, drift repair) */
  offline?: boolean;
  /** print one JSON document (what was applied, warnings, connections cut) instead of text */
  json?: boolean;
}

/** Where SIGINT/SIGTERM come from (the process; an EventEmitter in tests). */
export interface SignalSource {
  on(signal: 'SIGINT' | 'SIGTERM', fn: () => void): unknown;
  off(signal: 'SIGINT' | 'SIGTERM', fn: () => void): unknown;
}

export interface SyncDeps {
  query: QueryFn;
  /** Docker's networks for the coverage report (absent: not asked) */
  inspectDocker?: () => Promise<DockerView>;
  /** running containers for the policy map (asked only when policies are in use) */
  inventory?: RoundDeps['inventory'];
  exec: Exec;
  readText: (file: string) => Promise<string | null>;
  writeFileAtomic: ApplyDeps['writeFileAtomic'];
  backupOnce: ApplyDeps['backupOnce'];
  onPath: (cmd: string) => Promise<boolean>;
  observe: (want: Wanted) => Promise<Observation>;
  acquireLock: () => Promise<() => Promise<void>>;
  /** move a damaged state file aside; returns its new path */
  setAside: (file: string, now: number) => Promise<string>;
  now: () => number;
  isRoot: boolean;
  out: (text: string) => void;
  warn: (text: string) => void;
}

export interface SyncResult {
  round: Round;
  /** what was applied (empty: the kernel already matched) */
  applied: string[];
  /** names that failed to resolve, with what is kept for them */
  warnings: string[];
  /** connections opened before this apply that its rules refuse, cut (none when nothing was applied) */
  flows: FlowCut;
}

/** Everything that must hold before the first change; throws with the fix. */
async function preflight(round: Round, plan: Plan, deps: SyncDeps): Promise<void> {
  if (plan.blockers.length) throw new PreconditionError(`${plan.blockers.map((b) => b.message).join('\n')}\nNothing was changed.`);
  if (plan.ops.length) await checkBackend(deps.exec, deps.onPath, deps.readText, round.observed.tables[4].chains.keys());
}

/**
 * One sync, the caller holding the lock: resolve (unless offline), merge with
 * the saved state, plan, apply all or nothing, read back and verify, save state.
 * Shared by `sync` and the daemon.
 */
export async function syncOnce(config: Config, opts: { stateDir: string; offline?: boolean; signal?: AbortSignal }, deps: SyncDeps): Promise<SyncResult> {
  const file = stateFile(opts.stateDir);
  const now = deps.now();
  const loaded = parseState(await deps.readText(file), stateCheck(config, now));
  const prev = loaded.state;
  // A damaged file is not overwritten: it goes aside first (it may hold what uninstall needs).
  const aside = loaded.damaged !== null ? await deps.setAside(file, now) : null;
  const warnings = stateNotes(file, loaded, aside);
  const save = (s: State) => deps.writeFileAtomic(file, serializeState(s));
  let state: State = prev;
  let flows: FlowCut = { host: 0, containers: 0, tracked: 0, notes: [] };
  try {
    const round = await computeRound(config, prev, { query: deps.query, readText: deps.readText, observe: deps.observe, inspectDocker: deps.inspectDocker, inventory: deps.inventory, now, resolve: !opts.offline });
    const plan = round.plan; // already scoped (ufw switched off after enforcing: containers only)
    if (round.scope === 'containers-only') warnings.push('ufw is not active: the host is not restricted until `ufw enable`; container rules stay enforced');
    await preflight(round, plan, deps);
    // containers given nothing by an unknown policy name (or an address claimed twice): said at every sync
    warnings.push(...(round.policies?.warnings ?? []));
    for (const n of round.coverage.notEnforced) {
      warnings.push(`NOT ENFORCED: Docker network ${n.name} (${n.driver}${n.iface ? ` on ${n.iface}` : ''}, ${n.containers} containers): ${n.how}. The host is NOT protected while it exists.`);
    }
    if (opts.signal?.aborted) throw new EgressfwError(`interrupted by ${String(opts.signal.reason)} before any change; nothing was changed`);
    for (const d of round.allowed) {
      if (d.status !== 'ok' && d.status !== 'not-asked') {
        const kept = d.ips.filter((i) => i.source === 'last-known-good').length;
        warnings.push(`${d.name}: ${d.status}${d.detail ? ` (${d.detail})` : ''}${kept ? `; keeping ${kept} last-known-good IPs` : '; nothing allowed for it'}`);
      }
    }
    state = { ...round.state };
    // What egressfw found before changing it (uninstall restores it). Saved before the change,
    // so it is known even if this sync dies midway.
    const original = { ...(prev.original ?? {}) };
    const ufwBefore = round.observed.ufw;
    if (original.ufwOutputPolicy === undefined && ufwBefore && plan.ops.some((o) => o.kind.startsWith('ufw-'))) {
      original.ufwOutputPolicy = ufwBefore.outputPolicy;
      original.ufwEnabled = ufwBefore.enabled;
    }
    if (JSON.stringify(original) !== JSON.stringify(prev.original ?? {})) {
      state.original = original;
      await save({ ...prev, original });
    }
    if (plan.ops.length) {
      await applyPlan(plan, round.observed, { exec: deps.exec, writeFileAtomic: deps.writeFileAtomic, backupOnce: deps.backupOnce, ...(opts.signal ? { signal: opts.signal } : {}) });
      const after = await deps.observe(wanted(config));
      const left = round.rescope(diff(round.desired, after.observed)).ops;
      if (left.length) {
        throw new EgressfwError(`applied, but reading the kernel back shows it differs from the plan (something else changed it meanwhile?):\n${left.map((o) => `  - ${describeOp(o)}`).join('\n')}\nRun \`egressfw sync\` again.`);
      }
      // ct state established is accepted first: what the new rules refuse would otherwise keep flowing.
      flows = await cutRefusedFlows(deps.exec, appliedRules(config, round.desired, round.dns, after.observed, round.scope));
      warnings.push(...flows.notes);
    }
    const applied = plan.ops.map(describeOp);
    await save({ ...state, enforcedSince: prev.enforcedSince ?? now, lastSync: { at: now, ok: true, message: `${applied.length} changes${opts.offline ? ' (offline: saved IPs)' : ''}` } });
    return { round, applied, warnings, flows };
  } catch (e) {
    // Record the failure; the IP history (last-known-good) stays as it was.
    const failed: State = { ...prev, ...(state.original ? { original: state.original } : {}), lastSync: { at: now, ok: false, message: (e as Error).message.split('\n')[0]! } };
    await save(failed).catch(() => {});
    throw e;
  }
}

/**
 * `egressfw sync`. SIGINT/SIGTERM while it runs do not kill it: they abort
 * the apply, which rolls back like a failed step, and then it exits 130/143.
 */
export async function runSync(opts: SyncOptions, deps: SyncDeps, proc: SignalSource = process): Promise<number> {
  if (!deps.isRoot) throw new PreconditionError('sync changes the firewall and needs root: run `sudo egressfw sync` (or `egressfw plan` to see what it would do)');
  const scheduler = await readScheduler(opts.stateDir, deps.readText);
  const config = withScheduler(await loadConfig(opts.config), scheduler);
  const open = dnsOpen(config, scheduler);
  const abort = new AbortController();
  let got: 'SIGINT' | 'SIGTERM' | null = null;
  const on = (signal: 'SIGINT' | 'SIGTERM') => () => {
    if (got) return deps.warn(`egressfw sync: ${signal} again: still rolling back; it exits as soon as that is done`);
    got = signal;
    abort.abort(signal);
    deps.warn(`egressfw sync: ${signal}: stopping; rolling back what this sync changed, then exiting`);
  };
  const handlers = { SIGINT: on('SIGINT'), SIGTERM: on('SIGTERM') };
  for (const [s, fn] of Object.entries(handlers)) proc.on(s as 'SIGINT', fn);
  const release = await deps.acquireLock().catch((e: unknown) => {
    for (const [s, fn] of Object.entries(handlers)) proc.off(s as 'SIGINT', fn);
    throw e;
  });
  try {
    let r: SyncResult;
    try {
      r = await syncOnce(config, { ...opts, signal: abort.signal }, deps);
    } catch (e) {
      if (got) throw new InterruptedError(got, (e as Error).message);
      throw e;
    }
    if (got) deps.warn(`egressfw sync: ${got} came after the changes were applied and verified; they are in force`);
    for (const w of config.warnings) deps.warn(`warning: ${opts.config}: ${w}`);
    for (const w of r.warnings) deps.warn(`warning: ${printable(w)}`); // names and details come from DNS
    // acknowledged: known and accepted, so a cron run stays quiet (plan and status still say it)
    if (open && !open.acknowledged) for (const l of dnsOpenText(open)) deps.warn(l);
    const cut = r.flows.host + r.flows.containers;
    if (opts.json) {
      deps.out(`${JSON.stringify({ applied: r.applied, warnings: [...config.warnings, ...r.warnings], flowsCut: { host: r.flows.host, containers: r.flows.containers, tracked: r.flows.tracked } }, null, 2)}\n`);
    } else if (!opts.quiet) {
      if (!r.applied.length) deps.out('egressfw sync: no changes; the kernel already matches the allowlist\n');
      else {
        deps.out(`${r.applied.map((a) => `  ${a}`).join('\n')}\negressfw sync: applied ${r.applied.length} changes; verified against the kernel\n`);
        deps.out(`egressfw sync: cut ${cut} connection${cut === 1 ? '' : 's'} opened before that the new rules refuse (host ${r.flows.host}, containers ${r.flows.containers}; ${r.flows.tracked} tracked)\n`);
      }
    }
    return 0;
  } finally {
    await release();
    for (const [s, fn] of Object.entries(handlers)) proc.off(s as 'SIGINT', fn);
  }
}
