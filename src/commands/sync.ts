import { loadConfig } from '../config/load.js';
import { computeRound, type Round } from '../engine.js';
import { PreconditionError, EgressfwError } from '../errors.js';
import { diff } from '../plan/diff.js';
import { describeOp } from '../plan/render.js';
import type { QueryFn } from '../resolve/dns-client.js';
import type { State } from '../resolve/merge.js';
import { applyPlan, type ApplyDeps } from '../system/apply.js';
import { checkBackend } from '../system/backend.js';
import type { Exec } from '../system/exec.js';
import type { Observation } from '../system/observe.js';
import { parseState, stateFile } from '../system/state.js';

export interface SyncOptions {
  config: string;
  stateDir: string;
  quiet: boolean;
}

export interface SyncDeps {
  query: QueryFn;
  exec: Exec;
  readText: (file: string) => Promise<string | null>;
  writeFileAtomic: ApplyDeps['writeFileAtomic'];
  backupOnce: ApplyDeps['backupOnce'];
  onPath: (cmd: string) => Promise<boolean>;
  observe: (wantUfw: boolean) => Promise<Observation>;
  acquireLock: () => Promise<() => Promise<void>>;
  now: () => number;
  isRoot: boolean;
  out: (text: string) => void;
  warn: (text: string) => void;
}

const PKG: Record<string, string> = { ipset: 'ipset', ufw: 'ufw' };

/** Everything that must hold before the first change; throws with the fix. */
async function preflight(round: Round, deps: SyncDeps): Promise<void> {
  const missing = round.missingTools.filter((t) => t !== 'ufw' || round.config.host.enabled);
  if (missing.length) {
    const pkgs = [...new Set(missing.map((t) => PKG[t] ?? 'iptables'))];
    throw new PreconditionError(`missing tools: ${missing.join(', ')}. Install them (\`apt-get install ${pkgs.join(' ')}\`) and retry. Nothing was changed.`);
  }
  await checkBackend(deps.exec, deps.onPath, round.observed.tables[4].chains.keys());
  if (round.plan.blockers.length) {
    throw new PreconditionError(`${round.plan.blockers.join('\n')}\nNothing was changed.`);
  }
}

/** `egressfw sync`: resolve, merge with saved state, plan, apply (all or nothing), verify, save state. */
export async function runSync(opts: SyncOptions, deps: SyncDeps): Promise<number> {
  if (!deps.isRoot) throw new PreconditionError('sync changes the firewall and needs root: run `sudo egressfw sync` (or `egressfw plan` to see what it would do)');
  const config = await loadConfig(opts.config);
  const release = await deps.acquireLock();
  try {
    return await syncLocked(config, opts, deps);
  } finally {
    await release();
  }
}

async function syncLocked(config: Awaited<ReturnType<typeof loadConfig>>, opts: SyncOptions, deps: SyncDeps): Promise<number> {
  const file = stateFile(opts.stateDir);
  const { state: prev, warning } = parseState(await deps.readText(file));
  if (warning) deps.warn(`warning: ${file}: ${warning}`);
  const now = deps.now();
  const round = await computeRound(config, prev, { query: deps.query, readText: deps.readText, observe: deps.observe, now });
  await preflight(round, deps);

  for (const d of round.allowed) {
    if (d.status !== 'ok') {
      const kept = d.ips.filter((i) => i.source === 'last-known-good').length;
      deps.warn(`warning: ${d.name}: ${d.status}${d.detail ? ` (${d.detail})` : ''}${kept ? `; keeping ${kept} last-known-good IPs` : '; nothing allowed for it'}`);
    }
  }

  const state: State = { ...round.state };
  const ufwBefore = round.observed.ufw;
  if (!state.original && ufwBefore && round.plan.ops.some((o) => o.kind.startsWith('ufw-'))) {
    state.original = { ufwOutputPolicy: ufwBefore.outputPolicy, ufwEnabled: ufwBefore.enabled };
  }

  const say = (t: string) => {
    if (!opts.quiet) deps.out(`${t}\n`);
  };
  try {
    if (round.plan.ops.length === 0) say('egressfw sync: no changes; the kernel already matches the allowlist');
    else {
      // Save what we found before the first change (uninstall restores it), then change.
      if (state.original && !prev.original) await deps.writeFileAtomic(file, `${JSON.stringify({ ...prev, original: state.original }, null, 2)}\n`);
      await applyPlan(round.plan, round.observed, { exec: deps.exec, writeFileAtomic: deps.writeFileAtomic, backupOnce: deps.backupOnce, log: () => {} });
      for (const op of round.plan.ops) say(`  ${describeOp(op)}`);
      const after = await deps.observe(config.host.enabled);
      const left = diff(round.desired, after.observed).ops;
      if (left.length) {
        throw new EgressfwError(`applied, but reading the kernel back shows it differs from the plan (something else changed it meanwhile?):\n${left.map((o) => `  - ${describeOp(o)}`).join('\n')}\nRun \`egressfw sync\` again.`);
      }
      say(`egressfw sync: applied ${round.plan.ops.length} changes; verified against the kernel`);
    }
    state.lastSync = { at: now, ok: true, message: `${round.plan.ops.length} changes` };
    await deps.writeFileAtomic(file, `${JSON.stringify(state, null, 2)}\n`);
    return 0;
  } catch (e) {
    // Record the failure, keeping the previous IP history (last-known-good) as it was.
    const failed: State = { ...prev, ...(state.original ? { original: state.original } : {}), lastSync: { at: now, ok: false, message: (e as Error).message.split('\n')[0]! } };
    await deps.writeFileAtomic(file, `${JSON.stringify(failed, null, 2)}\n`).catch(() => {});
    throw e;
  }
}
