import { access, unlink } from 'node:fs/promises';
import path from 'node:path';
import { loadConfig } from '../config/load.js';
import { PreconditionError, UsageError } from '../errors.js';
import { BOOT_FILE, CRON_FILE, HEADER, renderBootService, renderCron, renderService, SERVICE_FILE, unsafePath, type InstallPaths } from '../schedule/units.js';
import type { Exec } from '../system/exec.js';

export interface InstallOptions {
  config: string;
  stateDir: string;
  cron: boolean;
  systemd: boolean;
  remove: boolean;
  dryRun: boolean;
}

export interface InstallDeps {
  exec: Exec;
  readText: (file: string) => Promise<string | null>;
  writeFileAtomic: (file: string, text: string) => Promise<void>;
  isRoot: boolean;
  /** is systemd running (so systemctl can enable units now)? */
  systemdRunning: () => Promise<boolean>;
  node: string;
  cli: string;
  out: (text: string) => void;
}

export const exists = (f: string) => access(f).then(() => true, () => false);

/** Remove what `install` wrote (only files carrying our header). Returns the removed paths. */
export async function removeInstalled(deps: InstallDeps, dryRun: boolean): Promise<string[]> {
  const removed: string[] = [];
  const systemd = await deps.systemdRunning();
  for (const file of [SERVICE_FILE, BOOT_FILE, CRON_FILE]) {
    const text = await deps.readText(file);
    if (text === null || !text.includes(HEADER)) continue;
    removed.push(file);
    if (dryRun) continue;
    if (systemd && file !== CRON_FILE) await deps.exec(['systemctl', 'disable', '--now', path.basename(file)]);
    await unlink(file);
  }
  if (systemd && removed.length && !dryRun) await deps.exec(['systemctl', 'daemon-reload']);
  return removed;
}

/** `egressfw install --cron | --systemd [--dry-run] | --remove`. */
export async function runInstall(opts: InstallOptions, deps: InstallDeps): Promise<number> {
  const modes = [opts.cron, opts.systemd, opts.remove].filter(Boolean).length;
  if (modes !== 1) throw new UsageError('choose one of --cron, --systemd or --remove');
  if (!deps.isRoot && !opts.dryRun) throw new PreconditionError('install writes to /etc and needs root: run `sudo egressfw install ...` (or add --dry-run to see the files)');

  if (opts.remove) {
    const removed = await removeInstalled(deps, opts.dryRun);
    deps.out(removed.length ? `${opts.dryRun ? 'would remove' : 'removed'}: ${removed.join(', ')}\n` : 'nothing to remove: no egressfw cron file or units found\n');
    return 0;
  }

  const paths: InstallPaths = { node: deps.node, cli: deps.cli, config: path.resolve(opts.config), stateDir: path.resolve(opts.stateDir) };
  const bad = Object.entries(paths).filter(([, p]) => unsafePath(p));
  if (bad.length) throw new UsageError(`these paths cannot go into a cron or unit file (use plain absolute paths without spaces or quotes): ${bad.map(([k, p]) => `${k}=${JSON.stringify(p)}`).join(', ')}`);
  const config = await loadConfig(paths.config); // a broken config must not be scheduled
  const files: [string, string][] = [];
  if (opts.cron) {
    if (config.schedule.refresh.trim().split(/\s+/).length !== 5) throw new UsageError(`schedule.refresh "${config.schedule.refresh}" has a seconds field; cron takes 5 fields: use --systemd (the daemon) or a 5-field expression`);
    files.push([CRON_FILE, renderCron(paths, config.schedule.refresh)]);
  } else {
    files.push([SERVICE_FILE, renderService(paths)], [BOOT_FILE, renderBootService(paths)]);
  }
  if (opts.dryRun) {
    for (const [file, text] of files) deps.out(`--- ${file}\n${text}`);
    return 0;
  }
  for (const [file] of files) {
    const old = await deps.readText(file);
    if (old !== null && !old.includes(HEADER)) throw new PreconditionError(`${file} exists and was not written by egressfw; move it away and retry. Nothing was changed.`);
  }
  for (const [file, text] of files) await deps.writeFileAtomic(file, text);
  deps.out(`wrote: ${files.map(([f]) => f).join(', ')}\n`);
  if (opts.systemd) {
    if (await deps.systemdRunning()) {
      for (const argv of [['systemctl', 'daemon-reload'], ['systemctl', 'enable', '--now', 'egressfw-boot.service', 'egressfw.service']]) {
        const r = await deps.exec(argv);
        if (r.exitCode !== 0) throw new PreconditionError(`\`${argv.join(' ')}\` failed: ${r.stderr.trim()}`);
      }
      deps.out('enabled and started: egressfw-boot.service, egressfw.service\n');
    } else {
      deps.out('systemd is not running here; enable the units with: systemctl daemon-reload && systemctl enable --now egressfw-boot.service egressfw.service\n');
    }
  }
  return 0;
}
