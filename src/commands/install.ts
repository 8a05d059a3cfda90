import { access } from 'node:fs/promises';
import path from 'node:path';
import { loadConfig } from '../config/load.js';
import { upstreamHosts } from '../resolve/upstream.js';
import { DAEMON_JSON, DAEMON_JSON_BACKUP, planDockerDns, undoDockerDns } from '../gate/docker-dns.js';
import { PreconditionError, UsageError } from '../errors.js';
import { BOOT_FILE, CRON_FILE, HEADER, PACKAGE_HEADER, PACKAGE_UNIT_DIR, renderBootService, renderCron, renderService, SERVICE_FILE, unsafePath, type InstallPaths } from '../schedule/units.js';
import type { Exec } from '../system/exec.js';
import { describeSteps, executeSteps, type Step } from '../system/steps.js';
import { schedulerFile, schedulerText } from '../system/scheduler.js';

export interface InstallOptions {
  config: string;
  stateDir: string;
  cron: boolean;
  systemd: boolean;
  remove: boolean;
  dryRun: boolean;
  /** point Docker's embedded resolver at the upstream servers from the containers' side (DNS gate) */
  dockerDns?: boolean;
}

export interface InstallDeps {
  exec: Exec;
  readText: (file: string) => Promise<string | null>;
  writeFileAtomic: (file: string, text: string) => Promise<void>;
  isRoot: boolean;
  /** is systemd running (so systemctl can enable units now)? */
  systemdRunning: () => Promise<boolean>;
  /** absent when `cli` starts itself (#!/usr/bin/node): the .deb's /usr/bin/egressfw */
  node?: string;
  cli: string;
  out: (text: string) => void;
  /** delete one file (a missing one is fine) */
  removeFile: (file: string) => Promise<void>;
}

/**
 * `install --docker-dns`: daemon.json `dns` so Docker 27+ asks upstream from
 * the containers' namespaces, where the gate's redirect catches it (see
 * src/gate/docker-dns.ts). Exit 0 "nothing to change" when already so.
 */
async function installDockerDns(opts: InstallOptions, deps: InstallDeps): Promise<number> {
  const config = await loadConfig(path.resolve(opts.config));
  const { hosts: upstream } = await upstreamHosts(config, deps.readText);
  const plan = planDockerDns(await deps.readText(DAEMON_JSON), upstream);
  if (plan.action === 'error') throw new PreconditionError(plan.message);
  if (plan.action === 'nothing') {
    deps.out(`${plan.message}\n`);
    return 0;
  }
  if (opts.dryRun) {
    deps.out(`--- ${DAEMON_JSON}\n${plan.text}`);
    return 0;
  }
  // The first backup is the pristine original (a second install after an uninstall makes a new one).
  if ((await deps.readText(DAEMON_JSON_BACKUP)) === null) await deps.writeFileAtomic(DAEMON_JSON_BACKUP, plan.backup);
  await deps.writeFileAtomic(DAEMON_JSON, plan.text);
  deps.out(`${plan.message}\n`);
  return 0;
}

/** Undo `install --docker-dns` (uninstall): the steps, none when there is nothing to undo. */
export async function removeDockerDnsSteps(deps: Pick<InstallDeps, 'readText'>): Promise<Step[]> {
  const undo = undoDockerDns(await deps.readText(DAEMON_JSON), await deps.readText(DAEMON_JSON_BACKUP));
  if (!undo) return [];
  const say = `${undo.text === null ? 'remove' : 'restore `dns` in'} ${DAEMON_JSON} (restart Docker afterwards)`;
  return [undo.text === null ? { say, remove: DAEMON_JSON } : { say, write: { file: DAEMON_JSON, text: undo.text } }, { say: '', remove: DAEMON_JSON_BACKUP }];
}

export const exists = (f: string) => access(f).then(() => true, () => false);

/**
 * Remove what `install` wrote (only files carrying our header), and stop and disable
 * the units the .deb ships if they are there (their files belong to the package and stay).
 */
export async function removeInstalledSteps(deps: InstallDeps): Promise<Step[]> {
  const systemd = await deps.systemdRunning();
  const ours: string[] = [];
  const units: string[] = [];
  const says: string[] = [];
  for (const file of [SERVICE_FILE, BOOT_FILE, CRON_FILE]) {
    const text = await deps.readText(file);
    if (text === null || !text.includes(HEADER)) continue;
    ours.push(file);
    if (systemd && file !== CRON_FILE) units.push(path.basename(file));
  }
  for (const unit of [SERVICE_FILE, BOOT_FILE].map((f) => path.basename(f))) {
    const text = await deps.readText(path.join(PACKAGE_UNIT_DIR, unit));
    if (text === null || !text.includes(PACKAGE_HEADER) || !systemd) continue;
    if (!units.includes(unit)) units.push(unit);
    says.push(`disable ${unit}${unit === path.basename(SERVICE_FILE) ? ' and stop it' : ''} (shipped by the package; its file stays)`);
  }
  // Disable while the unit files are still there (systemctl needs them), then remove ours. Only the
  // daemon is stopped: docker.service requires egressfw-boot, so stopping that would stop Docker.
  // systemctl's own failures do not stop the removal (the files must go either way).
  return [
    ...(units.length ? [{ say: says.join('\n'), argv: ['systemctl', 'disable', ...units], mayFail: true }] : []),
    ...(units.includes(path.basename(SERVICE_FILE)) ? [{ say: '', argv: ['systemctl', 'stop', path.basename(SERVICE_FILE)], mayFail: true }] : []),
    ...ours.map((file): Step => ({ say: `remove ${file}`, remove: file })),
    ...(units.length ? [{ say: '', argv: ['systemctl', 'daemon-reload'], mayFail: true }] : []),
  ];
}

/** `egressfw install --cron | --systemd [--dry-run] | --remove`. */
export async function runInstall(opts: InstallOptions, deps: InstallDeps): Promise<number> {
  const modes = [opts.cron, opts.systemd, opts.remove, opts.dockerDns].filter(Boolean).length;
  if (modes !== 1) throw new UsageError('choose one of --cron, --systemd, --docker-dns or --remove');
  if (!deps.isRoot && !opts.dryRun) throw new PreconditionError('install writes to /etc and needs root: run `sudo egressfw install ...` (or add --dry-run to see the files)');
  if (opts.dockerDns) return installDockerDns(opts, deps);

  if (opts.remove) {
    // no scheduler any more: an unset dns.gate.enabled is off again (plan and status say DNS is open)
    const steps = [...(await removeInstalledSteps(deps)), { say: '', remove: schedulerFile(path.resolve(opts.stateDir)) }];
    await executeSteps(steps, deps, { dryRun: opts.dryRun, hint: 'Run `egressfw install --remove` again once fixed.' });
    const done = describeSteps(steps);
    deps.out(done.length ? `${opts.dryRun ? 'would' : 'done'}:\n${done.map((d) => `  ${d}\n`).join('')}` : 'nothing to remove: no egressfw cron file or units found\n');
    return 0;
  }

  const paths: InstallPaths = { ...(deps.node ? { node: deps.node } : {}), cli: deps.cli, config: path.resolve(opts.config), stateDir: path.resolve(opts.stateDir) };
  const bad = Object.entries(paths).filter(([, p]) => unsafePath(p));
  if (bad.length) throw new UsageError(`these paths cannot go into a cron or unit file (use plain absolute paths without spaces or quotes): ${bad.map(([k, p]) => `${k}=${JSON.stringify(p)}`).join(', ')}`);
  const config = await loadConfig(paths.config); // a broken config must not be scheduled
  const files: [string, string][] = [];
  if (opts.cron) {
    // Cron runs no DNS gate: a gate wanted explicitly would leave containers without DNS (their DNS goes to its port).
    if (config.dns.gate.setting === true) {
      throw new UsageError(`dns.gate.enabled is true in ${paths.config}, but cron runs no DNS gate (containers would have no DNS at all): use --systemd (the daemon runs the gate), or set dns.gate.enabled: false. Nothing was changed.`);
    }
    if (config.schedule.refresh.trim().split(/\s+/).length !== 5) throw new UsageError(`schedule.refresh "${config.schedule.refresh}" has a seconds field; cron takes 5 fields: use --systemd (the daemon) or a 5-field expression`);
    files.push([CRON_FILE, renderCron(paths, config.schedule.refresh)]);
  } else {
    // The units' sandbox makes only existing paths writable; systemd creates a state directory under /var/lib itself.
    if (!opts.dryRun && !paths.stateDir.startsWith('/var/lib/') && !(await exists(paths.stateDir))) {
      throw new UsageError(`--state-dir ${paths.stateDir} does not exist; create it (mkdir -p ${paths.stateDir}) or use one under /var/lib, and retry. Nothing was changed.`);
    }
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
  const systemd = opts.systemd && (await deps.systemdRunning());
  // plan, a hand-run sync and status read how egressfw is scheduled (an unset dns.gate.enabled is on under the daemon only).
  const stateDirThere = await exists(paths.stateDir);
  const steps: Step[] = [
    ...files.map(([file, text]): Step => ({ say: `wrote ${file}`, write: { file, text } })),
    ...(stateDirThere ? [{ say: '', write: { file: schedulerFile(paths.stateDir), text: schedulerText(opts.cron ? 'cron' : 'daemon') } }] : []),
    ...(systemd
      ? [
          { say: '', argv: ['systemctl', 'daemon-reload'] },
          { say: 'enabled and started: egressfw-boot.service, egressfw.service', argv: ['systemctl', 'enable', '--now', 'egressfw-boot.service', 'egressfw.service'] },
        ]
      : []),
  ];
  await executeSteps(steps, deps, { dryRun: false, hint: 'Fix that, then run `egressfw install` again.' });
  deps.out(`${describeSteps(steps).join('\n')}\n`);
  if (opts.cron && config.dns.gate.setting === undefined && config.containers.enabled) {
    deps.out(`note: cron mode runs no DNS gate: DNS stays an open channel for containers and the host (plan, sync and status say so; status exits 3 until dns.openAcknowledged: true). \`egressfw install --systemd\` closes it.\n`);
  }
  if (opts.systemd && !systemd) {
    deps.out('systemd is not running here; enable the units with: systemctl daemon-reload && systemctl enable --now egressfw-boot.service egressfw.service\n');
  }
  return 0;
}
