/**
 * Run egressfw inside the lab host as the .deb installs it on Debian 12 and, optionally, confined the
 * way its systemd unit confines it (there is no systemd in the lab: the unit's settings are read from
 * the unit file and rebuilt with mounts and setpriv).
 *
 * "Installed": a private mount namespace (nested in the lab host's) where read-only overlays add the
 * unpacked .deb's /usr/bin/egressfw and Debian 12's node 18 (as /usr/bin/node, its /usr/share/nodejs
 * and libraries) to the machine's /usr. Nothing is written anywhere; the mounts die with the process.
 *
 * "Confined", from the unit file:
 *   ProtectSystem=strict    every mount read-only except /proc, /sys, /dev and the writable paths below
 *   ReadWritePaths=, StateDirectory=   bind-mounted onto themselves first, so they stay writable
 *   PrivateTmp=yes          empty tmpfs on /tmp and /var/tmp
 *   ProtectHome=yes         empty, inaccessible tmpfs on /home and /root
 *   PrivateDevices=yes      a tmpfs /dev with null, zero, full, random, urandom, tty only
 *   CapabilityBoundingSet=, NoNewPrivileges=yes   setpriv --bounding-set ... --no-new-privs
 *   Environment=            a clean environment as systemd gives (PATH, the unit's variables)
 * Not rebuilt here (no seccomp tool without systemd): SystemCallFilter= and RestrictAddressFamilies=.
 * strace (EFW strace option) records what the confined process really calls, for the lab test to
 * compare with what those two settings allow.
 */
import path from 'node:path';

export interface Unit {
  capabilities: string[];
  noNewPrivileges: boolean;
  readWritePaths: string[];
  stateDirectory?: string;
  protectHome: string;
  privateTmp: boolean;
  privateDevices: boolean;
  environment: string[];
  execStart: string[];
  systemCallFilter: string[];
  addressFamilies: string[];
}

/** The settings above from a unit file's text. */
export function parseUnit(text: string): Unit {
  const all = (key: string) => [...text.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]!.trim());
  const one = (key: string) => all(key).at(-1) ?? '';
  const words = (key: string) => all(key).flatMap((v) => v.split(/\s+/).filter(Boolean));
  const state = one('StateDirectory');
  return {
    capabilities: words('CapabilityBoundingSet'),
    noNewPrivileges: one('NoNewPrivileges') === 'yes',
    readWritePaths: words('ReadWritePaths'),
    ...(state ? { stateDirectory: path.join('/var/lib', state) } : {}),
    protectHome: one('ProtectHome') || 'no',
    privateTmp: one('PrivateTmp') === 'yes',
    privateDevices: one('PrivateDevices') === 'yes',
    environment: words('Environment'),
    execStart: one('ExecStart').split(/\s+/),
    systemCallFilter: words('SystemCallFilter'),
    addressFamilies: words('RestrictAddressFamilies'),
  };
}

const TRIPLET = process.arch === 'arm64' ? 'aarch64-linux-gnu' : 'x86_64-linux-gnu';
/** systemd's PATH for services (merged /usr) */
const SERVICE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const SCRIPT = `set -eu
# installed: the .deb's /usr/bin/egressfw, Debian 12's node 18 as /usr/bin/node (read-only overlays)
mount -t overlay -o "lowerdir=$EFW_DEB/usr/bin:$EFW_NODE/usr/bin:/usr/bin" efw-usr-bin /usr/bin
mount -t overlay -o "lowerdir=$EFW_DEB/usr/lib:/usr/lib" efw-usr-lib /usr/lib
mount -t overlay -o "lowerdir=$EFW_NODE/usr/lib/$EFW_TRIPLET:/usr/lib/$EFW_TRIPLET" efw-usr-lib-arch "/usr/lib/$EFW_TRIPLET"
mount -t overlay -o "lowerdir=$EFW_NODE/usr/share:/usr/share" efw-usr-share /usr/share
if [ -z "$EFW_CONFINE" ]; then exec env -i $EFW_ENV "$@"; fi
[ -z "$EFW_STATE" ] || mkdir -p "$EFW_STATE"
writable=""
for p in $EFW_RW; do
  optional=no
  case $p in -*) p=\${p#-}; optional=yes;; esac
  if [ ! -e "$p" ]; then
    [ $optional = yes ] && continue
    echo "sandbox: ReadWritePaths=$p does not exist" >&2; exit 1
  fi
  mount --bind "$p" "$p"
  writable="$writable $p"
done
if [ "$EFW_TMP" = yes ]; then
  mount -t tmpfs -o mode=1777 efw-tmp /tmp; mount -t tmpfs -o mode=1777 efw-vartmp /var/tmp
  writable="$writable /tmp /var/tmp"
fi
if [ "$EFW_HOME" = yes ]; then for h in /home /root; do [ ! -d $h ] || mount -t tmpfs -o mode=000 efw-home $h; done; fi
if [ "$EFW_DEV" = yes ]; then
  mount -t tmpfs -o mode=755 efw-dev /dev
  mknod -m 666 /dev/null c 1 3; mknod -m 666 /dev/zero c 1 5; mknod -m 666 /dev/full c 1 7
  mknod -m 666 /dev/random c 1 8; mknod -m 666 /dev/urandom c 1 9; mknod -m 666 /dev/tty c 5 0
  ln -s /proc/self/fd /dev/fd; ln -s /proc/self/fd/0 /dev/stdin; ln -s /proc/self/fd/1 /dev/stdout; ln -s /proc/self/fd/2 /dev/stderr
fi
# ProtectSystem=strict: every other mount read-only
findmnt -rno TARGET,FSTYPE | sort -u | while read -r t type; do
  case "$t" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue;; esac
  [ "$type" != nsfs ] || continue  # namespace handles (dockerd's), not files
  case " $writable " in *" $t "*) continue;; esac
  mount -o remount,bind,ro "$t"
done
exec setpriv $EFW_NNP --inh-caps=-all --ambient-caps=-all --bounding-set="$EFW_CAPS" -- $EFW_STRACE env -i $EFW_ENV "$@"
`;

export interface SandboxOpts {
  /** the unpacked .deb */
  debRoot: string;
  /** Debian 12's node 18, unpacked (test/support/node-runtimes.ts) */
  node18Root: string;
  /** confine like this unit; without it, only "installed" */
  unit?: Unit;
  /** strace -f into this file (inside the confined process: a writable path, e.g. under /run) */
  strace?: string;
}

/**
 * argv for lab.host()/lab.hostArgv() that runs `argv` (e.g. /usr/bin/egressfw sync ...) installed and,
 * with `unit`, confined. Process chain: unshare, sh, setpriv, [strace,] env, all exec'ing: the pid
 * spawned is the program's own (strace's with `strace`).
 */
export function installedArgv(opts: SandboxOpts, argv: string[]): { argv: string[]; env: Record<string, string> } {
  const u = opts.unit;
  const caps = u ? ['-all', ...u.capabilities.map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`)].join(',') : '';
  const env: Record<string, string> = {
    EFW_DEB: opts.debRoot,
    EFW_NODE: opts.node18Root,
    EFW_TRIPLET: TRIPLET,
    EFW_ENV: [`PATH=${SERVICE_PATH}`, ...(u?.environment ?? [])].join(' '),
    EFW_CONFINE: u ? 'yes' : '',
    EFW_STATE: u?.stateDirectory ?? '',
    EFW_RW: [...(u?.readWritePaths ?? []), ...(u?.stateDirectory ? [u.stateDirectory] : [])].join(' '),
    EFW_TMP: u?.privateTmp ? 'yes' : 'no',
    EFW_HOME: u?.protectHome ?? 'no',
    EFW_DEV: u?.privateDevices ? 'yes' : 'no',
    EFW_NNP: u?.noNewPrivileges ? '--no-new-privs' : '',
    EFW_CAPS: caps,
    EFW_STRACE: opts.strace ? `strace -f -qq -o ${opts.strace}` : '',
  };
  return { argv: ['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', SCRIPT, 'sh', ...argv], env };
}
