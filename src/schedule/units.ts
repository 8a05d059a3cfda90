/** Pure renderers for `egressfw install`: the cron file and the systemd units. */

export interface InstallPaths {
  node: string;
  cli: string;
  config: string;
  stateDir: string;
}

export const CRON_FILE = '/etc/cron.d/egressfw';
export const SERVICE_FILE = '/etc/systemd/system/egressfw.service';
export const BOOT_FILE = '/etc/systemd/system/egressfw-boot.service';
export const HEADER = '# written by `egressfw install`; remove with `egressfw install --remove`';

/** Only plain absolute paths go into unit and cron files: nothing a shell or systemd would interpret. */
export function unsafePath(p: string): boolean {
  return !/^\/[A-Za-z0-9._/+-]*$/.test(p) || p.includes('..');
}

const cmd = (p: InstallPaths, ...args: string[]) => [p.node, p.cli, ...args, '--config', p.config, '--state-dir', p.stateDir].join(' ');

export function renderCron(p: InstallPaths, schedule: string): string {
  return `${HEADER}
# Refresh the egress allowlist on a schedule; flock -n: a run never starts while the last one is still going.
SHELL=/bin/sh
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
${schedule} root flock -n /run/egressfw.cron.lock ${cmd(p, 'sync', '--quiet')}
# At boot: re-apply the saved allowlist at once (no DNS needed), then refresh.
@reboot root ${cmd(p, 'sync', '--offline', '--quiet')}; sleep 30; flock -n /run/egressfw.cron.lock ${cmd(p, 'sync', '--quiet')}
`;
}

export function renderService(p: InstallPaths): string {
  return `${HEADER}
[Unit]
Description=egressfw: keep outbound traffic to the allowlist (refresh, drift repair)
After=network-online.target docker.service ufw.service egressfw-boot.service
Wants=network-online.target
# Stopped and started again with Docker: every start re-asserts the rules Docker may have moved.
PartOf=docker.service

[Service]
Type=simple
# Young generation capped at 1 MB: the idle daemon keeps about 25 MB less resident memory,
# for slightly more GC work per refresh (npm run bench, docs/benchmarks.md).
Environment=NODE_OPTIONS=--max-semi-space-size=1
ExecStart=${cmd(p, 'daemon')}
ExecReload=/bin/kill -HUP $MAINPID
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target docker.service
`;
}

/**
 * At boot, before Docker starts, put the saved allowlist back without DNS.
 * ufw has loaded the marked block by then (host closed except DNS); this
 * makes containers closed too from their first packet. If it fails, Docker
 * does not start: egressfw fails closed, not open.
 */
export function renderBootService(p: InstallPaths): string {
  return `${HEADER}
[Unit]
Description=egressfw: re-apply the saved allowlist before Docker starts (fail closed at boot)
DefaultDependencies=no
After=local-fs.target ufw.service
Before=docker.service network-pre.target
Wants=network-pre.target
ConditionPathExists=${p.stateDir}/state.json

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=${cmd(p, 'sync', '--offline', '--quiet')}

[Install]
RequiredBy=docker.service
WantedBy=multi-user.target
`;
}
