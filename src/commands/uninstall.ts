import path from 'node:path';
import { PreconditionError } from '../errors.js';
import type { Family } from '../net/ip.js';
import { UFW_FILE } from '../plan/kernel-names.js';
import { planUninstall } from '../plan/uninstall.js';
import { STATE_FILES, type StateDirCleanup } from '../system/state.js';
import { parseState, recoverOriginal, stateFile, type State } from '../state-file.js';
import type { SyncDeps } from './sync.js';
import { removeDockerDnsSteps, removeInstalledSteps, type InstallDeps } from './install.js';
import { describeSteps, executeSteps, type Step } from '../system/steps.js';

export interface UninstallOptions {
  stateDir: string;
  dryRun: boolean;
  /** accepted like every command's; uninstall needs nothing from it (it removes what the kernel and the state show) */
  config?: string;
}

export interface UninstallDeps extends SyncDeps {
  /** remove egressfw's own files (STATE_FILES) from the state dir, and the dir if that empties it */
  removeStateFiles: (dir: string, dryRun: boolean) => Promise<StateDirCleanup>;
  /** delete one file (a missing one is fine) */
  removeFile: (file: string) => Promise<void>;
}

const RESTORE = { 4: 'iptables-restore', 6: 'ip6tables-restore' } as const;

/** What egressfw found before its first change: from state.json, else from a damaged copy set aside next to it (newest first). */
async function originalOf(state: State, aside: string[], deps: UninstallDeps): Promise<State['original']> {
  if (state.original?.ufwOutputPolicy) return state.original;
  for (const file of [...aside].sort().reverse()) {
    const text = await deps.readText(file).catch(() => null);
    const o = text === null ? undefined : recoverOriginal(text);
    if (o?.ufwOutputPolicy) return { ...o, ...state.original };
  }
  return state.original;
}

/**
 * `egressfw uninstall`: remove every set, chain, jump, ufw block, unit and
 * cron file egressfw created, and put back the ufw outgoing policy (and
 * enabled state) it found before its first change. In the state dir only
 * egressfw's own files go (STATE_FILES); the directory goes only if that
 * leaves it empty.
 */
export async function runUninstall(opts: UninstallOptions, deps: UninstallDeps, install: InstallDeps): Promise<number> {
  if (!deps.isRoot) throw new PreconditionError('uninstall changes the firewall and needs root: run `sudo egressfw uninstall` (add --dry-run to see what it would do)');
  const release = await deps.acquireLock();
  try {
    const file = stateFile(opts.stateDir);
    const loaded = parseState(await deps.readText(file), { now: deps.now() });
    const stateDir = await deps.removeStateFiles(opts.stateDir, true); // what is there (nothing removed yet)
    const damagedCopies = stateDir.removed.filter((f) => STATE_FILES[1]!.name.test(path.basename(f)));
    const original = await originalOf(loaded.state, damagedCopies, deps);
    const { observed, missingTools } = await deps.observe({ ufw: true, docker: false });
    if (!observed.readable) throw new PreconditionError(`cannot read the firewall (missing: ${missingTools.join(', ')}); install them and retry. Nothing was changed.`);
    const plan = planUninstall(observed, original);
    // Firewall first (nft, iptables, ufw, then what ufw let go of, the sets), then units, daemon.json, files.
    const restore = (f: Family, text: string | null): Step[] => (text ? [{ say: '', argv: [RESTORE[f], '--noflush'], input: text }] : []);
    const steps: Step[] = [
      ...(plan.nft ? [{ say: '', argv: ['nft', '-f', '-'], input: plan.nft }] : []),
      ...restore(4, plan.iptables[4]),
      ...restore(6, plan.iptables[6]),
      ...(plan.ufw?.files ?? []).map((f): Step => ({ say: '', write: f })),
      ...(plan.ufw?.commands ?? []).map((argv): Step => ({ say: '', argv })),
      ...restore(4, plan.iptablesAfterUfw[4]),
      ...restore(6, plan.iptablesAfterUfw[6]),
      ...plan.ipsetDestroy.map((set): Step => ({ say: '', argv: ['ipset', 'destroy', set] })),
      ...(await removeInstalledSteps(install)),
      ...(await removeDockerDnsSteps(install)),
      // Backups of the ufw files are ours too; the block is out, so the files are as before.
      ...([4, 6] as Family[]).map((f): Step => ({ say: '', remove: `${UFW_FILE[f]}.egressfw-backup` })),
    ];
    const stateSteps = [
      ...stateDir.removed.map((f) => `remove ${f}`),
      ...(stateDir.dirRemoved ? [`remove the directory ${opts.stateDir} (empty then)`] : []),
    ];
    const said = [...plan.steps, ...describeSteps(steps), ...stateSteps];
    const leftNote = stateDir.removed.length && stateDir.left.length
      ? `left ${opts.stateDir} in place: it holds files egressfw did not write: ${stateDir.left.slice(0, 10).join(', ')}${stateDir.left.length > 10 ? `, ... (${stateDir.left.length} in all)` : ''}\n`
      : '';
    await executeSteps(steps, deps, { dryRun: opts.dryRun, hint: 'Run `egressfw uninstall` again once fixed: it picks up from where it stopped.' });
    if (opts.dryRun) {
      deps.out(said.length ? `egressfw uninstall would:\n${said.map((s) => `  ${s}`).join('\n')}\n${leftNote}` : 'nothing of egressfw is installed\n');
      return 0;
    }
    await deps.removeStateFiles(opts.stateDir, false);
    deps.out(said.length ? `${said.map((s) => `  ${s}`).join('\n')}\n${leftNote}egressfw uninstall: done; nothing of egressfw is left\n` : 'nothing of egressfw was installed\n');
    return 0;
  } finally {
    await release();
  }
}
