import { loadConfig, type Config } from '../config/load.js';
import { computeRound, wanted, type Round } from '../engine.js';
import { PreconditionError, EgressfwError } from '../errors.js';
import { diff, UFW_INACTIVE, withoutHost, type Plan } from '../plan/diff.js';
import { describeOp } from '../plan/render.js';
import type { QueryFn } from '../resolve/dns-client.js';
import type { State } from '../resolve/merge.js';
import { applyPlan, type ApplyDeps } from '../system/apply.js';
import { checkBackend } from '../system/backend.js';
import type { Exec } from '../system/exec.js';
import type { Observation, Wanted } from '../system/observe.js';
import { parseState, stateFile } from '../system/state.js';

export interface SyncOptions {
  config: string;
  stateDir: string;
  quiet: boolean;
  /** no DNS: re-apply the saved IPs (boot, drift repair) */
  offline?: boolean;
}

export interface SyncDeps {
  query: QueryFn;
  exec: Exec;
  readText: (file: string) => Promise<string | null>;
  writeFileAtomic: ApplyDeps['writeFileAtomic'];
  backupOnce: ApplyDeps['backupOnce'];
  onPath: (cmd: string) => Promise<boolean>;
  observe: (want: Wanted) => Promise<Observation>;
  acquireLock: () => Promise<() => Promise<void>>;
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
}

/** Everything that must hold before the first change; throws with the fix. */
async function preflight(round: Round, plan: Plan, deps: SyncDeps): Promise<void> {
  if (plan.blockers.length) throw new PreconditionError(`${plan.blockers.join('\n')}\nNothing was changed.`);
  if (plan.ops.length) await checkBackend(deps.exec, deps.onPath, deps.readText, round.observed.tables[4].chains.keys());
}

/**
 * One sync, the caller holding the lock: resolve (unless offline), merge with
 * the saved state, plan, apply all or nothing, read back and verify, save state.
 * Shared by `sync` and the daemon.
 */
export async function syncOnce(config: Config, opts: { stateDir: string; offline?: boolean }, deps: SyncDeps): Promise<SyncResult> {
  const file = stateFile(opts.stateDir);
  const { state: prev, warning } = parseState(await deps.readText(file));
  const warnings = warning ? [`${file}: ${warning}`] : [];
  const now = deps.now();
  const save = (s: State) => deps.writeFileAtomic(file, `${JSON.stringify(s, null, 2)}\n`);
  let state: State = prev;
  try {
    const round = await computeRound(config, prev, { query: deps.query, readText: deps.readText, observe: deps.observe, now, resolve: !opts.offline });
    // ufw switched off after egressfw had been enforcing: keep the containers enforced meanwhile.
    const ufwOff = prev.enforcedSince !== undefined && round.plan.blockers.includes(UFW_INACTIVE);
    const scope = ufwOff ? withoutHost : (p: Plan) => p;
    const plan = scope(round.plan);
    if (ufwOff) warnings.push('ufw is not active: the host is not restricted until `ufw enable`; container rules stay enforced');
    await preflight(round, plan, deps);
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
      await applyPlan(plan, round.observed, { exec: deps.exec, writeFileAtomic: deps.writeFileAtomic, backupOnce: deps.backupOnce });
      const after = await deps.observe(wanted(config));
      const left = scope(diff(round.desired, after.observed)).ops;
      if (left.length) {
        throw new EgressfwError(`applied, but reading the kernel back shows it differs from the plan (something else changed it meanwhile?):\n${left.map((o) => `  - ${describeOp(o)}`).join('\n')}\nRun \`egressfw sync\` again.`);
      }
    }
    const applied = plan.ops.map(describeOp);
    await save({ ...state, enforcedSince: prev.enforcedSince ?? now, lastSync: { at: now, ok: true, message: `${applied.length} changes${opts.offline ? ' (offline: saved IPs)' : ''}` } });
    return { round, applied, warnings };
  } catch (e) {
    // Record the failure; the IP history (last-known-good) stays as it was.
    const failed: State = { ...prev, ...(state.original ? { original: state.original } : {}), lastSync: { at: now, ok: false, message: (e as Error).message.split('\n')[0]! } };
    await save(failed).catch(() => {});
    throw e;
  }
}

/** `egressfw sync`. */
export async function runSync(opts: SyncOptions, deps: SyncDeps): Promise<number> {
  if (!deps.isRoot) throw new PreconditionError('sync changes the firewall and needs root: run `sudo egressfw sync` (or `egressfw plan` to see what it would do)');
  const config = await loadConfig(opts.config);
  const release = await deps.acquireLock();
  try {
    const r = await syncOnce(config, opts, deps);
    for (const w of config.warnings) deps.warn(`warning: ${opts.config}: ${w}`);
    for (const w of r.warnings) deps.warn(`warning: ${w}`);
    if (!opts.quiet) {
      if (!r.applied.length) deps.out('egressfw sync: no changes; the kernel already matches the allowlist\n');
      else deps.out(`${r.applied.map((a) => `  ${a}`).join('\n')}\negressfw sync: applied ${r.applied.length} changes; verified against the kernel\n`);
    }
    return 0;
  } finally {
    await release();
  }
}
