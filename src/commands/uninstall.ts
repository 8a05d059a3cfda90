import { rm, unlink } from 'node:fs/promises';
import { PreconditionError, CommandError } from '../errors.js';
import type { Family } from '../net/ip.js';
import { UFW_FILE } from '../plan/names.js';
import { planUninstall } from '../plan/uninstall.js';
import { parseState, stateFile } from '../system/state.js';
import type { SyncDeps } from './sync.js';
import { removeDockerDns, removeInstalled, type InstallDeps } from './install.js';

export interface UninstallOptions {
  stateDir: string;
  dryRun: boolean;
}

const RESTORE = { 4: 'iptables-restore', 6: 'ip6tables-restore' } as const;

/**
 * `egressfw uninstall`: remove every set, chain, jump, ufw block, unit and
 * cron file egressfw created, and put back the ufw outgoing policy (and
 * enabled state) it found before its first change.
 */
export async function runUninstall(opts: UninstallOptions, deps: SyncDeps, install: InstallDeps): Promise<number> {
  if (!deps.isRoot) throw new PreconditionError('uninstall changes the firewall and needs root: run `sudo egressfw uninstall` (add --dry-run to see what it would do)');
  const release = await deps.acquireLock();
  try {
    const { state } = parseState(await deps.readText(stateFile(opts.stateDir)));
    const { observed, missingTools } = await deps.observe({ ufw: true, docker: false });
    if (!observed.readable) throw new PreconditionError(`cannot read the firewall (missing: ${missingTools.join(', ')}); install them and retry. Nothing was changed.`);
    const plan = planUninstall(observed, state.original);
    const units = await removeInstalled(install, true);
    const dockerDns = await removeDockerDns(install, true);
    const steps = [...plan.steps, ...units.map((f) => `remove ${f}`), ...(dockerDns ? [dockerDns] : []), ...(state.lastSync || state.original ? [`remove ${opts.stateDir}`] : [])];
    if (opts.dryRun) {
      deps.out(steps.length ? `egressfw uninstall would:\n${steps.map((s) => `  ${s}`).join('\n')}\n` : 'nothing of egressfw is installed\n');
      return 0;
    }
    const run = async (argv: string[], input?: string) => {
      const r = await deps.exec(argv, input === undefined ? {} : { input });
      if (r.exitCode !== 0) throw new CommandError(argv, r.exitCode, r.stderr, 'Run `egressfw uninstall` again once fixed: it picks up from where it stopped.');
    };
    if (plan.nft) await run(['nft', '-f', '-'], plan.nft);
    for (const f of [4, 6] as Family[]) if (plan.iptables[f]) await run([RESTORE[f], '--noflush'], plan.iptables[f]!);
    if (plan.ufw) {
      for (const file of plan.ufw.files) await deps.writeFileAtomic(file.file, file.text);
      for (const argv of plan.ufw.commands) await run(argv);
    }
    for (const f of [4, 6] as Family[]) if (plan.iptablesAfterUfw[f]) await run([RESTORE[f], '--noflush'], plan.iptablesAfterUfw[f]!);
    for (const s of plan.ipsetDestroy) await run(['ipset', 'destroy', s]);
    await removeInstalled(install, false);
    await removeDockerDns(install, false);
    // Backups of the ufw files are ours too; the block is out, so the files are as before.
    for (const f of [4, 6] as Family[]) await unlink(`${UFW_FILE[f]}.egressfw-backup`).catch(() => {});
    await rm(opts.stateDir, { recursive: true, force: true });
    deps.out(steps.length ? `${steps.map((s) => `  ${s}`).join('\n')}\negressfw uninstall: done; nothing of egressfw is left\n` : 'nothing of egressfw was installed\n');
    return 0;
  } finally {
    await release();
  }
}
