/** Pure renderers for `egressfw install`: the cron file and the systemd units. */

export interface InstallPaths {
  /** the node binary to start `cli` with; absent when `cli` starts itself (the .deb's /usr/bin/egressfw) */
  node?: string;
  cli: string;
  config: string;
  stateDir: string;
}

export const CRON_FILE = '/etc/cron.d/egressfw';
export const SERVICE_FILE = '/etc/systemd/system/egressfw.service';
export const BOOT_FILE = '/etc/systemd/system/egressfw-boot.service';
export const HEADER = '# written by `egressfw install`; remove with `egressfw install --remove`';
/** The units the .deb ships (not enabled); `egressfw install --systemd` writes its own to /etc, which take precedence. */
export const PACKAGE_UNIT_DIR = '/lib/systemd/system';
export const PACKAGE_HEADER = '# shipped by the egressfw package; enable with `systemctl enable --now egressfw-boot.service egressfw.service`';
/** where the .deb installs the CLI */
export const PACKAGE_CLI = '/usr/bin/egressfw';

/** Only plain absolute paths go into unit and cron files: nothing a shell or systemd would interpret. */
export function unsafePath(p: string): boolean {
  return !/^\/[A-Za-z0-9._/+-]*$/.test(p) || p.includes('..');
}

const cmd = (p: InstallPaths, ...args: string[]) => [...(p.node ? [p.node] : []), p.cli, ...args, '--config', p.config, '--state-dir', p.stateDir].join(' ');

const under = (p: string, dirs: string[]) => dirs.some((d) => p === d || p.startsWith(`${d}/`));

/**
 * The sandbox both units run in. egressfw changes the firewall (iptables, ip6tables, ipset, nft, ufw):
 * it needs CAP_NET_ADMIN, and CAP_NET_RAW for iptables' legacy backend (raw sockets). It writes its
 * state, ufw's files (/etc/ufw; ufw rewrites /etc/default/ufw in place, its temp files go to the
 * private /tmp) and locks in /run (its own, xtables.lock, ufw.lock). The rest of the file system is
 * read-only, homes hidden. Netlink is how ipset and nft talk to the kernel. System calls: what
 * services use, plus memory protection keys (V8 guards its compiled code with them where the CPU
 * can). test/lab/package.test.ts traces sync and the daemon, ufw and iptables included, against
 * this filter and these address families. Not set, on purpose:
 * MemoryDenyWriteExecute (V8 compiles code at run time), ProtectKernelTunables (ufw applies
 * /etc/ufw/sysctl.conf when egressfw enables or reloads it), PrivateNetwork and IPAddressDeny (it
 * resolves names and firewalls the host's own network).
 * `systemd-analyze security` rates this 2.3-2.4 (test/unit/units.test.ts checks it stays at most 4.0).
 */
export function sandbox(p: InstallPaths): string {
  const paths = [p.node, p.cli, p.config, p.stateDir].filter((x): x is string => x !== undefined);
  // Files egressfw needs must stay visible: homes become read-only instead of hidden, and a
  // private /tmp is skipped when they live in /tmp or /var/tmp (tests; not for production).
  const inHome = paths.some((x) => under(x, ['/home', '/root', '/run/user']));
  const inTmp = paths.some((x) => under(x, ['/tmp', '/var/tmp']));
  // StateDirectory= creates the directory; any other place must exist before the unit starts.
  const state = under(p.stateDir, ['/var/lib']) && p.stateDir !== '/var/lib'
    ? `StateDirectory=${p.stateDir.slice('/var/lib/'.length)}`
    : `ReadWritePaths=${p.stateDir}`;
  return `CapabilityBoundingSet=${UNIT_CAPABILITIES.join(' ')}
AmbientCapabilities=
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=${UNIT_WRITABLE.join(' ')}
${state}
ProtectHome=${inHome ? 'read-only' : 'yes'}
PrivateTmp=${inTmp ? 'no' : 'yes'}
PrivateDevices=yes
PrivateMounts=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
KeyringMode=private
UMask=0077
RestrictAddressFamilies=${UNIT_ADDRESS_FAMILIES.join(' ')}
SystemCallArchitectures=native
SystemCallFilter=@system-service @pkey
SystemCallErrorNumber=EPERM`;
}

/** Exported for the lab test that runs sync and the daemon confined the same way. */
/** CAP_NET_BIND_SERVICE: the DNS gate's upstream sockets are bound to reserved ports below 1024 (src/system/upstream-pool.ts) */
export const UNIT_CAPABILITIES = ['CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_NET_BIND_SERVICE'];
/** '-': optional (ufw is not needed when host.enabled is false) */
export const UNIT_WRITABLE = ['/run', '-/etc/ufw', '-/etc/default/ufw'];
export const UNIT_ADDRESS_FAMILIES = ['AF_UNIX', 'AF_INET', 'AF_INET6', 'AF_NETLINK'];

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

export function renderService(p: InstallPaths, header = HEADER): string {
  return `${header}
[Unit]
Description=egressfw: keep outbound traffic to the allowlist (refresh, drift repair)
Documentation=man:egressfw(8)
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
# A stop that lands in a refresh rolls that refresh back and exits 143 (SIGTERM), like sync: still a clean stop.
SuccessExitStatus=143
Restart=always
RestartSec=5
${sandbox(p)}

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
export function renderBootService(p: InstallPaths, header = HEADER): string {
  return `${header}
[Unit]
Description=egressfw: re-apply the saved allowlist before Docker starts (fail closed at boot)
Documentation=man:egressfw(8)
DefaultDependencies=no
After=local-fs.target ufw.service
Before=docker.service network-pre.target
Wants=network-pre.target
ConditionPathExists=${p.stateDir}/state.json

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=${cmd(p, 'sync', '--offline', '--quiet')}
${sandbox(p)}

[Install]
RequiredBy=docker.service
WantedBy=multi-user.target
`;
}
