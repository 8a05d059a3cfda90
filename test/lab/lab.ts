/**
 * Real-kernel test lab for egressfw: a fake internet and a Docker host, each in
 * its own network namespace, so tests can run the real ufw/iptables/ipset/dockerd
 * without touching the machine they run on.
 *
 *   inet   "the internet": DNS (dnsmasq) + HTTP/HTTPS sites on `lo`
 *          up0 198.51.100.1/30, 2001:db8:ff::1/64
 *           |  (veth, created inside the namespaces: the machine never sees it)
 *          eth0 198.51.100.2/30, 2001:db8:ff::2/64
 *   host   "the Docker host": dockerd, ufw, iptables, egressfw; also a private
 *          mount namespace (see startHolder).
 * Both are unnamed namespaces held by a `sleep` each (no `ip netns add`), so they
 * vanish with their processes; names and cgroups use a random lab id (efw-<id>).
 *
 * Must run as root. Every test file that calls startLab() must call stop() in
 * afterAll; an 'exit'/signal handler and a stale-lab sweep in startLab() are
 * only safety nets.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { machineDebianMirrors } from '../../scripts/apt-sources.js';
import { dockerClient, type DockerClient } from '../../src/system/docker.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** Survives between runs (TLS material, image tarballs); rebuilt when missing. */
export const CACHE_DIR = process.env.EFW_LAB_CACHE ?? '/var/tmp/efw-lab-cache';
const LAB_DIR_PREFIX = '/var/tmp/efw-lab-';

/** Every address the lab uses: documentation ranges only, assigned inside the namespaces. */
export const ADDR = {
  inetUplink4: '198.51.100.1',
  hostUplink4: '198.51.100.2', // what the internet sees for NATed container traffic
  uplink4Len: 30,
  inetUplink6: '2001:db8:ff::1',
  hostUplink6: '2001:db8:ff::2',
  uplink6Len: 64,
  dns4: '198.51.100.53',
  dns6: '2001:db8:53::53',
  /** docker0 (--bip); Docker's 172.17/16 default is not a documentation range. */
  dockerBip: '198.51.100.65/26',
  /** pool for `docker network create` without --subnet: eight /28 networks */
  dockerPool: '198.51.100.128/25',
  dockerPoolSize: 28,
  /** docker0's IPv6 subnet (--fixed-cidr-v6) */
  dockerV6: '2001:db8:1::/64',
  /** routed back to the host by the internet: give user networks v6 subnets in here, e.g. 2001:db8:1:1::/64 */
  dockerV6Routed: '2001:db8:1::/48',
} as const;

/**
 * Docker engines the lab can run (EFW_DOCKER, default 20.10). 20.10 is the machine's own
 * (Debian 12 docker.io); the others are unpacked by scripts/fetch-docker.sh into
 * CACHE_DIR/docker-<version> and put first on dockerd's PATH (dockerd starts its own
 * containerd, docker-proxy, docker-init from there; runc stays the machine's).
 */
export const DOCKER_VERSIONS = ['20.10', '26.1', '28.5', '28.5-nft'] as const;
export type DockerVersion = (typeof DOCKER_VERSIONS)[number];

interface DockerFlavor {
  /** dir holding usr/sbin/dockerd etc., or null for the machine's own */
  root: string | null;
  /** dockerd's own firewall backend (DOCKER_FIREWALL_BACKEND, Docker 28 experimental) */
  firewallBackend: 'iptables' | 'nftables';
  /** IPv6 flags beyond --ipv6 --fixed-cidr-v6 */
  ipv6Flags: string[];
}

export function dockerFlavor(v: string): DockerFlavor {
  switch (v) {
    // 20.10 refuses --ip6tables without --experimental (and creates no IPv6 DOCKER-USER)
    case '20.10':
      return { root: null, firewallBackend: 'iptables', ipv6Flags: ['--experimental', '--ip6tables'] };
    // 26.1 still refuses --ip6tables without --experimental ("ip6tables rules are only available if
    // experimental features are enabled"); it does create an IPv6 DOCKER-USER
    case '26.1':
      return { root: path.join(CACHE_DIR, 'docker-26.1'), firewallBackend: 'iptables', ipv6Flags: ['--experimental', '--ip6tables'] };
    // ip6tables on by default from 27
    case '28.5':
      return { root: path.join(CACHE_DIR, 'docker-28.5'), firewallBackend: 'iptables', ipv6Flags: [] };
    case '28.5-nft':
      return { root: path.join(CACHE_DIR, 'docker-28.5'), firewallBackend: 'nftables', ipv6Flags: [] };
    default:
      throw new Error(`lab: EFW_DOCKER=${v} is not one of ${DOCKER_VERSIONS.join(', ')}`);
  }
}

export interface Site {
  name: string;
  v4: string;
  v6?: string;
}
/** Web sites of the fake internet; all serve HTTP on 80 and 8080 and HTTPS on 443. */
export const SITES: readonly Site[] = [
  { name: 'allowed.test', v4: '203.0.113.10', v6: '2001:db8:10::10' },
  { name: 'allowed2.test', v4: '203.0.113.11', v6: '2001:db8:10::11' }, // spare: "allowed.test moved"
  { name: 'blocked.test', v4: '203.0.113.20', v6: '2001:db8:20::20' },
  { name: 'other.test', v4: '203.0.113.30', v6: '2001:db8:30::30' },
  { name: 'v4only.test', v4: '203.0.113.40' },
];
export const HTTP_PORTS = [80, 8080] as const;
export const TLS_PORTS = [443] as const;
export const BUSYBOX_IMAGE = 'busybox:latest';
export const NGINX_IMAGE = 'efw-nginx:latest';

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** 124 when timeoutMs expired (like coreutils `timeout`), 128+N when killed by signal N */
  exitCode: number;
}
export interface ExecOpts {
  env?: Record<string, string>;
  input?: string;
  timeoutMs?: number;
  cwd?: string;
}
export interface DnsRecords {
  A?: string[];
  AAAA?: string[];
  /** alias to another name the lab serves (dnsmasq only CNAMEs to names it knows) */
  CNAME?: string;
}
export interface FetchResult extends ExecResult {
  ok: boolean;
  /** response body ('' on failure) */
  body: string;
  ms: number;
}

export interface Lab {
  id: string;
  /** lab temp dir, visible from the machine and from host(): a place to put config files */
  dir: string;
  /** the namespaces' paths (/proc/PID/ns/net of their holder), for `nsenter --net=PATH`; valid until stop() */
  hostNetns: string;
  inetNetns: string;
  dnsServer: string;
  dnsServer6: string;
  /** lab CA (PEM path). Already trusted inside the host (/etc/ssl/certs/ca-certificates.crt) and in the busybox image. */
  caCert: string;
  /** started with dockerd / with IPv6 on the host side */
  hasDocker: boolean;
  ipv6: boolean;
  /** which engine (EFW_DOCKER): '20.10' | '26.1' | '28.5' | '28.5-nft' */
  dockerLabel: DockerVersion;
  /** the running dockerd's version as it reports it, e.g. '28.5.2+dfsg4' ('' without docker) */
  dockerVersion: string;
  /** dockerd's firewall backend (checked against `docker info` FirewallBackend where the API has it) */
  firewallBackend: 'iptables' | 'nftables';
  /** dockerd's socket as a path the test process can open (through the lab's mount namespace) */
  dockerSocket: string;
  /** Engine API client on the lab's dockerd (src/system/docker.ts) */
  dockerApi(): DockerClient;
  /** run argv inside the Docker host: its net namespace AND its private mount namespace. Never throws on non-zero exit. */
  host(argv: string[], opts?: ExecOpts): Promise<ExecResult>;
  /** run argv in the fake-internet namespace. Never throws on non-zero exit. */
  inet(argv: string[], opts?: ExecOpts): Promise<ExecResult>;
  /** the argv prefix host() uses, for spawning long-running processes yourself (stop() kills them) */
  hostArgv(argv: string[]): string[];
  /** docker CLI against the lab's own dockerd (default socket /run/docker.sock inside host()) */
  docker(args: string[], opts?: ExecOpts): Promise<ExecResult>;
  /** `docker run -d ... sleep` a busybox (by default) container; returns its name. Throws on failure. */
  runContainer(opts?: { name?: string; network?: string; image?: string; args?: string[]; cmd?: string[] }): Promise<string>;
  /**
   * Replace ALL answers for a name (omitted list = none; no records at all = NXDOMAIN).
   * Returns once the lab DNS server answers with the new data (TTL 5 s: caches may lag).
   */
  setRecords(name: string, rec: DnsRecords): Promise<void>;
  /** back to the SITES table */
  resetRecords(): Promise<void>;
  /** addresses the lab DNS server returns for name (via busybox nslookup in the inet namespace) */
  resolve(name: string, type: 'A' | 'AAAA'): Promise<string[]>;
  /** busybox `wget -q -O - URL` wrapped in `timeout`, from the host or from a running container */
  fetch(url: string, opts?: { container?: string; timeoutSec?: number }): Promise<FetchResult>;
  /** stop (false) or start again (true) the lab DNS server: "DNS is down" */
  setDnsUp(up: boolean): Promise<void>;
  /** stop dockerd (SIGTERM, by pid) and start it again with the same flags, as `systemctl restart docker` would */
  restartDocker(): Promise<void>;
  /** tear everything down; idempotent */
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------
// process helpers

/** sbin dirs may be missing from PATH under CI; every tool below lives there. */
const ENV_PATH = [...new Set([...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'])].join(':');

async function run(argv: string[], opts: ExecOpts = {}): Promise<ExecResult> {
  const [file, ...args] = argv;
  if (!file) throw new Error('run: empty argv');
  const r = await execa(file, args, {
    reject: false,
    stripFinalNewline: false,
    env: { ...opts.env, PATH: opts.env?.PATH ?? ENV_PATH },
    ...(opts.input !== undefined ? { input: opts.input } : { stdin: 'ignore' as const }),
    timeout: opts.timeoutMs ?? 120_000,
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
  });
  let exitCode = r.exitCode ?? -1;
  if (r.timedOut) exitCode = 124;
  else if (r.exitCode === undefined && r.signal) exitCode = 128 + (os.constants.signals[r.signal] ?? 0);
  return { stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? ''), exitCode };
}

async function must(argv: string[], opts: ExecOpts = {}): Promise<string> {
  const r = await run(argv, opts);
  if (r.exitCode !== 0) throw new Error(`lab: \`${argv.join(' ')}\` exited ${r.exitCode}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
/** EFW_LAB_DEBUG=1 prints how long each setup step took */
function phase(t0: number, what: string): void {
  if (process.env.EFW_LAB_DEBUG) console.error(`lab: ${what} +${Date.now() - t0} ms`);
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** /proc/PID/stat starttime: with the pid it identifies a process (pids get reused) */
function procStart(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}
/** Killed processes can stay zombies (nobody reaps them): those count as gone. */
/** Killed processes can linger as zombies: those count as gone. */
export function procAlive(pid: number): boolean {
  try {
    return !/^State:\s+[ZX]/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}
function nsOf(pid: number | 'self', kind: 'net' | 'mnt'): string | undefined {
  try {
    return fs.readlinkSync(`/proc/${pid}/ns/${kind}`);
  } catch {
    return undefined;
  }
}

/** Spawn a daemon in its own session with output to a log file; the pid is the daemon's (nsenter/unshare exec, no fork). */
function spawnDaemon(argv: string[], log: string, stdout: 'pipe' | 'log' = 'log', env: NodeJS.ProcessEnv = { ...process.env, PATH: ENV_PATH }): ChildProcess {
  const fd = fs.openSync(log, 'a');
  const [file, ...args] = argv;
  const child = spawn(file!, args, {
    detached: true,
    stdio: ['ignore', stdout === 'pipe' ? 'pipe' : fd, fd],
    env,
  });
  fs.closeSync(fd);
  child.on('error', () => {}); // reported through the readiness checks
  child.unref();
  return child;
}

/** Resolves with the first stdout line matching re (child keeps running). */
/** Resolves with the first stdout line of `child` matching re; fails (with the log's tail) on timeout or exit. */
export function waitForLine(child: ChildProcess, re: RegExp, ms: number, what: string, log?: string): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const fail = (why: string) => {
      clearTimeout(timer);
      const tail = log && fs.existsSync(log) ? fs.readFileSync(log, 'utf8').slice(-2000) : '';
      reject(new Error(`lab: ${what} ${why}\n${tail}`));
    };
    const timer = setTimeout(() => fail(`not ready after ${ms} ms`), ms);
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = buf.match(re);
      if (m) {
        clearTimeout(timer);
        child.stdout!.removeAllListeners('data');
        child.stdout!.destroy(); // the daemon writes nothing more there; frees our end
        resolve(m);
      }
    });
    child.once('exit', (code) => fail(`exited (${code})`));
  });
}

// ---------------------------------------------------------------------------
// lab state, teardown (synchronous, so it also works from 'exit' and signal handlers)

interface LabState {
  id: string;
  dir: string;
  ownerPid: number;
  ownerStart: string;
  /** daemons we spawned, identified by pid + start time */
  procs: { pid: number; start: string; what: string }[];
  /** `sleep`s holding the namespaces: inet (net ns), host (net + mount ns) */
  inet?: { pid: number; start: string };
  holder?: { pid: number; start: string };
}

const live = new Set<LabState>();

function saveState(st: LabState): void {
  fs.writeFileSync(path.join(st.dir, 'lab.json'), JSON.stringify(st, null, 1));
}

function recorded(p: { pid: number; start: string } | undefined): boolean {
  return !!p && procAlive(p.pid) && procStart(p.pid) === p.start;
}

/** cgroup dirs named efw-<id> (Docker's --cgroup-parent; runc nests a relative one under its own cgroup), deepest first */
function labCgroupDirs(id: string): string[] {
  const roots: string[] = [];
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [pre, post] = line.split(' - ');
    if (pre && post && /^cgroup2? /.test(post)) roots.push(pre.split(' ')[4]!);
  }
  const found: string[] = [];
  const walk = (dir: string, depth: number, inLab: boolean) => {
    let ents: fs.Dirent[];
    try {
      ents = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of ents) {
      if (!e.isDirectory()) continue;
      const lab = inLab || e.name === `efw-${id}`;
      if (lab || depth < 3) walk(path.join(dir, e.name), depth + 1, lab);
      if (lab) found.push(path.join(dir, e.name)); // after its children: deepest first
    }
  };
  for (const r of roots) walk(r, 0, false);
  return found;
}

/** Every live process that belongs to the lab: our daemons, anything in the lab's namespaces, the containers' cgroups. */
function labPids(st: LabState): Set<number> {
  const pids = new Set<number>();
  const mine = { net: nsOf('self', 'net'), mnt: nsOf('self', 'mnt') };
  // Namespace ids only while their holder lives (with the recorded start time): a freed
  // namespace's inode number can be reused by an unrelated one.
  const nets = new Set<string>();
  const mnts = new Set<string>();
  for (const h of [st.inet, st.holder]) {
    if (!h || !recorded(h)) continue;
    const n = nsOf(h.pid, 'net');
    if (n) nets.add(n);
  }
  if (st.holder && recorded(st.holder)) {
    const m = nsOf(st.holder.pid, 'mnt');
    if (m) mnts.add(m);
  }
  // Never let a mix-up make the sweep below match the machine's own namespaces.
  if (mine.net) nets.delete(mine.net);
  if (mine.mnt) mnts.delete(mine.mnt);
  for (const p of st.procs) if (recorded(p)) pids.add(p.pid);
  for (const h of [st.inet, st.holder]) if (h && recorded(h)) pids.add(h.pid);
  if (nets.size || mnts.size) {
    for (const ent of fs.readdirSync('/proc')) {
      const pid = Number(ent);
      if (!Number.isInteger(pid) || pid === process.pid || pid <= 1) continue;
      const n = nsOf(pid, 'net');
      const m = nsOf(pid, 'mnt');
      if (((n && nets.has(n)) || (m && mnts.has(m))) && procAlive(pid)) pids.add(pid);
    }
  }
  for (const dir of labCgroupDirs(st.id)) {
    try {
      for (const l of fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n')) {
        const pid = Number(l);
        if (pid > 1 && pid !== process.pid && procAlive(pid)) pids.add(pid);
      }
    } catch {
      /* gone */
    }
  }
  return pids;
}

function otherLabDirs(st: LabState | undefined): string[] {
  return fs
    .readdirSync(path.dirname(LAB_DIR_PREFIX))
    .map((e) => path.join(path.dirname(LAB_DIR_PREFIX), e))
    .filter((p) => /^efw-lab-[0-9a-f]{6}$/.test(path.basename(p)) && p !== st?.dir);
}

function teardownSync(st: LabState): void {
  // 1. kill: SIGKILL is fine, nothing of the lab is kept. Repeat: dying daemons may have spawned more.
  for (let round = 0; round < 100; round++) {
    const pids = labPids(st);
    if (!pids.size) break;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    sleepSync(20);
  }
  // 2. containers' cgroups (only removable once empty)
  for (let round = 0; round < 50; round++) {
    const dirs = labCgroupDirs(st.id);
    if (!dirs.length) break;
    for (const d of dirs) {
      try {
        fs.rmdirSync(d);
      } catch {
        /* busy: retry */
      }
    }
    sleepSync(20);
  }
  // 3. The namespaces (and the private mounts) died with their last process: nothing named to remove.
  // 4. files: no mount of ours was ever made in the machine's mount namespace, so this stays on this fs
  fs.rmSync(st.dir, { recursive: true, force: true });
  live.delete(st);
}

/** Tear down labs whose owning process died without stop() (vitest killed, crash). */
export function cleanupStaleLabs(): string[] {
  const cleaned: string[] = [];
  for (const dir of otherLabDirs(undefined)) {
    let st: LabState;
    try {
      st = JSON.parse(fs.readFileSync(path.join(dir, 'lab.json'), 'utf8')) as LabState;
    } catch {
      // no state file: a lab that died before writing it, nothing but the dir exists
      try {
        if (Date.now() - fs.statSync(dir).mtimeMs > 60_000) fs.rmSync(dir, { recursive: true, force: true });
      } catch {
        /* ignore */
      }
      continue;
    }
    if (procAlive(st.ownerPid) && procStart(st.ownerPid) === st.ownerStart) continue;
    teardownSync(st);
    cleaned.push(st.id);
  }
  return cleaned;
}

let handlersInstalled = false;
function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  const all = () => {
    for (const st of [...live]) {
      try {
        teardownSync(st);
      } catch {
        /* best effort */
      }
    }
  };
  process.on('exit', all);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const h = () => {
      all();
      process.removeListener(sig, h);
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, h);
  }
}

// ---------------------------------------------------------------------------
// cached artefacts: TLS material, image tarballs

export interface TlsFiles {
  ca: string;
  cert: string;
  key: string;
}

/** Lab CA + one server cert for every site name and address (cached; keyed by the SAN list). */
export async function ensureTls(): Promise<TlsFiles> {
  const sans = SITES.flatMap((s) => [`DNS:${s.name}`, `IP:${s.v4}`, ...(s.v6 ? [`IP:${s.v6}`] : [])]).join(',');
  const key = crypto.createHash('sha256').update(sans).digest('hex').slice(0, 12);
  const dir = path.join(CACHE_DIR, `tls-${key}`);
  const files = { ca: path.join(dir, 'ca.crt'), cert: path.join(dir, 'server.crt'), key: path.join(dir, 'server.key') };
  if (fs.existsSync(files.key)) return files;
  fs.mkdirSync(CACHE_DIR, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(CACHE_DIR, 'tls-build-'));
  try {
    const o = (...a: string[]) => must(['openssl', ...a], { timeoutMs: 60_000 });
    await o('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${tmp}/ca.key`, '-out', `${tmp}/ca.crt`, '-days', '3650',
      '-subj', '/CN=egressfw lab CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    await o('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${tmp}/server.key`, '-out', `${tmp}/server.csr`, '-subj', `/CN=${SITES[0]!.name}`);
    fs.writeFileSync(`${tmp}/ext.cnf`, `subjectAltName=${sans}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n`);
    await o('x509', '-req', '-in', `${tmp}/server.csr`, '-CA', `${tmp}/ca.crt`, '-CAkey', `${tmp}/ca.key`, '-CAcreateserial',
      '-out', `${tmp}/server.crt`, '-days', '3650', '-extfile', `${tmp}/ext.cnf`);
    fs.chmodSync(`${tmp}/server.key`, 0o644); // read by the web server only; lab material, not a secret
    try {
      fs.renameSync(tmp, dir);
    } catch {
      /* another process won the race: use its copy */
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return files;
}

/** busybox-static as a rootfs tarball: bin/busybox, applet symlinks, lab CA, passwd (cached; keyed by binary + CA). */
export async function ensureBusyboxTarball(caPath: string): Promise<string> {
  fs.mkdirSync(CACHE_DIR, { recursive: true });
  let bin = '/bin/busybox';
  // The busybox-static package installs a static /bin/busybox; otherwise unpack the .deb.
  const ldd = fs.existsSync(bin) ? await run(['ldd', bin]) : undefined;
  if (!ldd || !/not a dynamic executable|statically linked/.test(ldd.stdout + ldd.stderr)) {
    const debDir = path.join(CACHE_DIR, 'debs');
    fs.mkdirSync(debDir, { recursive: true });
    const findDeb = () => fs.readdirSync(debDir).find((f) => f.startsWith('busybox-static_') && f.endsWith('.deb'));
    if (!findDeb()) await must(['apt-get', 'download', 'busybox-static'], { timeoutMs: 120_000, cwd: debDir });
    const deb = findDeb();
    if (!deb) throw new Error('lab: apt-get download busybox-static produced no .deb');
    const x = path.join(debDir, 'x');
    fs.rmSync(x, { recursive: true, force: true });
    await must(['dpkg', '-x', path.join(debDir, deb), x]);
    bin = path.join(x, 'bin', 'busybox');
  }
  const hash = crypto.createHash('sha256').update(fs.readFileSync(bin)).update(fs.readFileSync(caPath)).digest('hex').slice(0, 12);
  const out = path.join(CACHE_DIR, `busybox-${hash}.tar`);
  if (fs.existsSync(out)) return out;
  const tmp = fs.mkdtempSync(path.join(CACHE_DIR, 'busybox-build-'));
  try {
    const root = path.join(tmp, 'rootfs');
    for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc/ssl/certs', 'tmp', 'root']) fs.mkdirSync(path.join(root, d), { recursive: true });
    fs.chmodSync(path.join(root, 'tmp'), 0o1777);
    fs.copyFileSync(bin, path.join(root, 'bin/busybox'));
    fs.chmodSync(path.join(root, 'bin/busybox'), 0o755);
    // `busybox --install -s` outside a chroot would link to /proc/self/exe; make the links ourselves.
    for (const applet of (await must([bin, '--list-full'])).split('\n').filter(Boolean)) {
      const p = path.join(root, applet);
      if (!fs.existsSync(p)) fs.symlinkSync('/bin/busybox', p);
    }
    fs.writeFileSync(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
    fs.writeFileSync(path.join(root, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
    fs.writeFileSync(path.join(root, 'etc/resolv.conf'), ''); // placeholder: Docker mounts its own
    fs.copyFileSync(caPath, path.join(root, 'etc/ssl/certs/ca-certificates.crt'));
    await must(['tar', '--numeric-owner', '--owner=0', '--group=0', '-C', root, '-cf', `${tmp}/img.tar`, '.']);
    fs.renameSync(`${tmp}/img.tar`, out);
    for (const f of fs.readdirSync(CACHE_DIR)) if (/^busybox-[0-9a-f]+\.tar$/.test(f) && path.join(CACHE_DIR, f) !== out) fs.rmSync(path.join(CACHE_DIR, f), { force: true });
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return out;
}

/** Debian bookworm minbase + nginx + the stream module as a rootfs tarball (cached; ~45 s cold, from the machine's Debian mirror). */
export async function ensureNginxTarball(): Promise<string> {
  const out = path.join(CACHE_DIR, 'nginx-bookworm.tar');
  if (fs.existsSync(out)) return out;
  fs.mkdirSync(CACHE_DIR, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(CACHE_DIR, 'nginx-build-'));
  const root = path.join(tmp, 'rootfs');
  try {
    // debootstrap mounts /proc etc. in the target: keep those mounts out of the machine's namespace.
    await must(
      ['unshare', '--mount', '--propagation', 'private', '--', 'debootstrap', '--variant=minbase',
        '--include=nginx,libnginx-mod-stream,ca-certificates', 'bookworm', root, machineDebianMirrors().archive],
      { timeoutMs: 600_000 },
    );
    // smaller tarball = faster `docker import` in every lab
    for (const d of ['var/cache/apt/archives', 'var/lib/apt/lists']) {
      for (const f of fs.readdirSync(path.join(root, d))) if (f.endsWith('.deb') || f.includes('_dists_')) fs.rmSync(path.join(root, d, f), { force: true });
    }
    for (const d of ['usr/share/doc', 'usr/share/man', 'usr/share/info', 'usr/share/locale']) {
      fs.rmSync(path.join(root, d), { recursive: true, force: true });
      fs.mkdirSync(path.join(root, d));
    }
    // logs to the container's stdout/stderr, like the official image
    fs.rmSync(path.join(root, 'var/log/nginx/access.log'), { force: true });
    fs.rmSync(path.join(root, 'var/log/nginx/error.log'), { force: true });
    fs.symlinkSync('/dev/stdout', path.join(root, 'var/log/nginx/access.log'));
    fs.symlinkSync('/dev/stderr', path.join(root, 'var/log/nginx/error.log'));
    await must(['tar', '--numeric-owner', '-C', root, '-cf', `${tmp}/img.tar`, '.'], { timeoutMs: 300_000 });
    fs.renameSync(`${tmp}/img.tar`, out);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return out;
}

/** Make NGINX_IMAGE available in the lab's dockerd (builds the cached tarball on first use). */
export async function ensureNginxImage(lab: Lab): Promise<string> {
  if ((await lab.docker(['image', 'inspect', NGINX_IMAGE])).exitCode === 0) return NGINX_IMAGE;
  const tar = await ensureNginxTarball();
  await dockerImport(lab, tar, NGINX_IMAGE, ['CMD ["nginx", "-g", "daemon off;"]']);
  return NGINX_IMAGE;
}

async function dockerImport(lab: Lab, tar: string, tag: string, changes: string[]): Promise<void> {
  // `docker import` reads the tarball itself: the path is visible in the host's mount namespace too.
  const r = await lab.docker(['import', ...changes.flatMap((c) => ['-c', c]), tar, tag], { timeoutMs: 300_000 });
  if (r.exitCode !== 0) throw new Error(`lab: docker import ${tag} failed: ${r.stderr}`);
}

// ---------------------------------------------------------------------------
// the lab

function hostsFile(records: Map<string, DnsRecords>): string {
  let s = '';
  for (const [name, r] of records) {
    if (r.CNAME) continue;
    for (const a of [...(r.A ?? []), ...(r.AAAA ?? [])]) s += `${a} ${name}\n`;
  }
  return s;
}

function defaultRecords(): Map<string, DnsRecords> {
  return new Map(SITES.map((s) => [s.name, { A: [s.v4], AAAA: s.v6 ? [s.v6] : [] }]));
}

export async function startLab(opts: { docker?: boolean; ipv6?: boolean; dockerVersion?: DockerVersion } = {}): Promise<Lab> {
  if (process.getuid?.() !== 0) throw new Error('lab: must run as root');
  const withDocker = opts.docker !== false;
  const ipv6 = opts.ipv6 !== false;
  const dockerLabel = (opts.dockerVersion ?? process.env.EFW_DOCKER ?? '20.10') as DockerVersion;
  const flavor = dockerFlavor(dockerLabel);
  if (withDocker && flavor.root && !fs.existsSync(path.join(flavor.root, 'usr/sbin/dockerd'))) {
    throw new Error(`lab: Docker ${dockerLabel} is not unpacked in ${flavor.root}: run \`scripts/fetch-docker.sh ${dockerLabel.replace(/-nft$/, '')}\``);
  }
  cleanupStaleLabs();
  installExitHandlers();

  const id = crypto.randomBytes(3).toString('hex');
  const dir = `${LAB_DIR_PREFIX}${id}`;
  fs.mkdirSync(dir, { mode: 0o755 });
  const st: LabState = {
    id,
    dir,
    ownerPid: process.pid,
    ownerStart: procStart(process.pid)!,
    procs: [],
  };
  live.add(st);
  saveState(st);
  const hostArgv = (argv: string[]) => ['nsenter', '-t', String(st.holder!.pid), '-m', '-n', '--', ...argv];
  const inetArgv = (argv: string[]) => ['nsenter', '-t', String(st.inet!.pid), '-n', '--', ...argv];
  const records = defaultRecords();
  const cnameKey = () => JSON.stringify([...records].filter(([, r]) => r.CNAME).map(([n, r]) => [n, r.CNAME]));
  let dnsCnames = '';
  let dnsPid = 0;
  let stopped = false;

  const track = (child: ChildProcess, what: string) => {
    if (!child.pid) throw new Error(`lab: could not start ${what}`);
    st.procs.push({ pid: child.pid, start: procStart(child.pid) ?? '', what });
    saveState(st);
    return child.pid;
  };

  const resolve = async (name: string, type: 'A' | 'AAAA', timeoutMs = 5000): Promise<string[]> => {
    const r = await run(inetArgv(['busybox', 'nslookup', `-type=${type.toLowerCase()}`, name, ADDR.dns4]), { timeoutMs });
    // answers follow the "Name:" line of the answer section; the server's own address is in the header
    const ans = r.stdout.split(/\n\s*\n/).filter((b) => /^Name:/m.test(b)).join('\n');
    return [...ans.matchAll(/^Address:\s*(\S+)/gm)].map((m) => m[1]!).sort();
  };

  const startDns = async () => {
    dnsCnames = cnameKey();
    const cnames = [...records].filter(([, r]) => r.CNAME).map(([n, r]) => `--cname=${n},${r.CNAME}`);
    const child = spawnDaemon(inetArgv([
      'dnsmasq', '--keep-in-foreground', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--pid-file=',
      `--addn-hosts=${dir}/dns/hosts`, '--local-ttl=5', '--neg-ttl=5',
      // everything under .test is ours: unknown names get NXDOMAIN, never a (missing) upstream
      '--local=/test/', '--bind-interfaces', `--listen-address=${ADDR.dns4}`, `--listen-address=${ADDR.dns6}`,
      '--user=root', '--group=root', `--log-facility=${dir}/dnsmasq.log`, '--log-queries', ...cnames,
    ]), path.join(dir, 'dnsmasq.out'));
    dnsPid = track(child, 'dnsmasq');
    for (let i = 0; ; i++) {
      // short timeout: a query sent before dnsmasq bound its socket would wait out nslookup's own (~2.5 s)
      if ((await resolve(SITES[0]!.name, 'A', 300)).length) return;
      if (!procAlive(dnsPid) || i > 100) throw new Error(`lab: dnsmasq not ready: ${fs.readFileSync(path.join(dir, 'dnsmasq.out'), 'utf8')}`);
      await sleep(50);
    }
  };

  let dockerPid = 0;
  // dockerd's env: the version's binaries first on PATH; the firewall backend only where asked for
  const dockerEnv: NodeJS.ProcessEnv = { ...process.env, PATH: flavor.root ? `${flavor.root}/usr/sbin:${flavor.root}/usr/bin:${ENV_PATH}` : ENV_PATH };
  delete dockerEnv.DOCKER_FIREWALL_BACKEND;
  if (flavor.firewallBackend === 'nftables') dockerEnv.DOCKER_FIREWALL_BACKEND = 'nftables';
  const startDockerd = async () => {
    const dockerd = spawnDaemon(hostArgv([
      'dockerd', '--host', 'unix:///run/docker.sock', '--pidfile', '/run/docker.pid',
      '--data-root', '/var/lib/docker', '--exec-root', '/run/docker',
      // relative: runc nests it under its own cgroup; lets teardown find and remove container cgroups
      '--cgroup-parent', `efw-${id}`,
      '--bip', ADDR.dockerBip, '--default-address-pool', `base=${ADDR.dockerPool},size=${ADDR.dockerPoolSize}`,
      '--shutdown-timeout', '1',
      ...(ipv6 ? ['--ipv6', '--fixed-cidr-v6', ADDR.dockerV6, ...flavor.ipv6Flags] : []),
    ]), `${dir}/dockerd.log`, 'log', dockerEnv);
    dockerPid = track(dockerd, 'dockerd');
    for (let i = 0; ; i++) {
      const r = await lab.docker(['version', '--format', '{{.Server.Version}}'], { timeoutMs: 5000 });
      if (r.exitCode === 0) {
        lab.dockerVersion = r.stdout.trim();
        break;
      }
      if (!procAlive(dockerPid) || i > 300) {
        throw new Error(`lab: dockerd not ready: ${r.stderr}\n${fs.readFileSync(`${dir}/dockerd.log`, 'utf8').slice(-3000)}`);
      }
      await sleep(100);
    }
  };

  const expectAnswers = async (name: string) => {
    let r = records.get(name);
    if (r?.CNAME) r = records.get(r.CNAME);
    const want = { A: [...(r?.A ?? [])].sort().join(), AAAA: [...(r?.AAAA ?? [])].sort().join() };
    for (let i = 0; i < 60; i++) {
      const [a, aaaa] = await Promise.all([resolve(name, 'A'), resolve(name, 'AAAA')]);
      if (a.join() === want.A && aaaa.join() === want.AAAA) return;
      await sleep(50);
    }
    throw new Error(`lab: DNS for ${name} did not change to ${JSON.stringify(want)}`);
  };

  const writeRecords = async (names: string[]) => {
    fs.writeFileSync(`${dir}/dns/hosts.tmp`, hostsFile(records));
    fs.renameSync(`${dir}/dns/hosts.tmp`, `${dir}/dns/hosts`);
    if (cnameKey() !== dnsCnames) {
      // dnsmasq reads --cname only at start: restart it (by pid)
      process.kill(dnsPid, 'SIGTERM');
      for (let i = 0; i < 100 && procAlive(dnsPid); i++) await sleep(20);
      await startDns();
    } else {
      process.kill(dnsPid, 'SIGHUP'); // re-reads addn-hosts and clears its cache
    }
    for (const n of names) await expectAnswers(n);
  };

  const lab: Lab = {
    id,
    dir,
    hostNetns: '',
    inetNetns: '',
    dnsServer: ADDR.dns4,
    dnsServer6: ADDR.dns6,
    caCert: '',
    hasDocker: withDocker,
    ipv6,
    dockerLabel,
    dockerVersion: '',
    firewallBackend: flavor.firewallBackend,
    dockerSocket: '',
    dockerApi: () => dockerClient({ socket: lab.dockerSocket }),
    host: (argv, o) => run(hostArgv(argv), o),
    inet: (argv, o) => run(inetArgv(argv), o),
    hostArgv,
    docker: (args, o) => run(hostArgv(['docker', ...args]), o),
    async runContainer(o = {}) {
      const name = o.name ?? `c-${crypto.randomBytes(3).toString('hex')}`;
      const r = await lab.docker(['run', '-d', '--name', name, ...(o.network ? ['--network', o.network] : []), ...(o.args ?? []),
        o.image ?? BUSYBOX_IMAGE, ...(o.cmd ?? ['sleep', '86400'])]);
      if (r.exitCode !== 0) throw new Error(`lab: docker run ${name} failed: ${r.stderr}`);
      return name;
    },
    async setRecords(name, rec) {
      records.set(name, { A: [...(rec.A ?? [])], AAAA: [...(rec.AAAA ?? [])], ...(rec.CNAME ? { CNAME: rec.CNAME } : {}) });
      await writeRecords([name]);
    },
    async resetRecords() {
      const names = new Set([...records.keys()]);
      records.clear();
      for (const [n, r] of defaultRecords()) records.set(n, r);
      await writeRecords([...names]);
    },
    resolve: (name, type) => resolve(name, type),
    async fetch(url, o = {}) {
      const t = String(o.timeoutSec ?? 3);
      const wget = ['wget', '-q', '-O', '-', ...(url.startsWith('https:') ? ['--no-check-certificate'] : []), url];
      const t0 = Date.now();
      const r = o.container
        ? await lab.docker(['exec', o.container, 'timeout', t, ...wget], { timeoutMs: 30_000 })
        : await lab.host(['timeout', t, 'busybox', ...wget], { timeoutMs: 30_000 });
      return { ...r, ok: r.exitCode === 0, body: r.exitCode === 0 ? r.stdout : '', ms: Date.now() - t0 };
    },
    async setDnsUp(up) {
      if (!up) {
        process.kill(dnsPid, 'SIGTERM');
        for (let i = 0; i < 100 && procAlive(dnsPid); i++) await sleep(20);
      } else if (!procAlive(dnsPid)) await startDns();
    },
    async restartDocker() {
      if (!withDocker) throw new Error('lab: started without docker');
      process.kill(dockerPid, 'SIGTERM');
      for (let i = 0; i < 300 && procAlive(dockerPid); i++) await sleep(50);
      if (procAlive(dockerPid)) throw new Error('lab: dockerd did not stop');
      await startDockerd();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      teardownSync(st);
    },
  };

  const t0 = Date.now();
  try {
    // cached artefacts first (cold: a few seconds of openssl)
    const tls = await ensureTls();
    lab.caCert = tls.ca;
    const busyboxTar = withDocker ? ensureBusyboxTarball(tls.ca) : undefined;
    busyboxTar?.catch(() => {}); // awaited below

    phase(t0, 'tls');
    // Namespaces are held by processes, not named with `ip netns add` (whose /run/netns mount is
    // machine-wide state shared with anything else using it): they vanish with their last process.
    await Promise.all([startHolder(st, 'inet', ipv6), startHolder(st, 'host', ipv6, tls.ca)]);
    lab.inetNetns = `/proc/${st.inet!.pid}/ns/net`;
    lab.hostNetns = `/proc/${st.holder!.pid}/ns/net`;
    // /run is a tmpfs of the lab's mount namespace; the holder's root shows it to us
    lab.dockerSocket = `/proc/${st.holder!.pid}/root/run/docker.sock`;
    // sysctl inside a namespace touches only it: every key written here is per-netns (net.ipv6.conf.*).
    // No DAD: else new addresses stay "tentative" ~2 s and servers cannot bind them. Forwarding is left to dockerd,
    // as on a real host (it then also sets FORWARD's policy to DROP).
    const dad = ['net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0'];
    await must(inetArgv(['sysctl', '-q', '-w', ...dad]));
    await must(hostArgv(['sysctl', '-q', '-w', ...dad,
      ...(ipv6 ? [] : ['net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'])]));
    const inetBatch = [
      'link set lo up',
      // created inside the inet namespace with its peer moved straight into the host's: the machine never sees it
      `link add up0 type veth peer name eth0 netns ${st.holder!.pid}`,
      `addr add ${ADDR.inetUplink4}/${ADDR.uplink4Len} dev up0`,
      `addr add ${ADDR.inetUplink6}/${ADDR.uplink6Len} dev up0 nodad`,
      'link set up0 up',
      `addr add ${ADDR.dns4}/32 dev lo`,
      `addr add ${ADDR.dns6}/128 dev lo nodad`,
      ...SITES.flatMap((s) => [`addr add ${s.v4}/32 dev lo`, ...(s.v6 ? [`addr add ${s.v6}/128 dev lo nodad`] : [])]),
      // routes back to the Docker host's container networks (for traffic Docker does not NAT)
      `route add ${ADDR.dockerBip.replace(/\.65\//, '.64/')} via ${ADDR.hostUplink4}`,
      `route add ${ADDR.dockerPool} via ${ADDR.hostUplink4}`,
      `route add ${ADDR.dockerV6Routed} via ${ADDR.hostUplink6}`,
    ];
    await must(inetArgv(['ip', '-batch', '-']), { input: inetBatch.join('\n') + '\n' });
    const hostBatch = [
      'link set lo up',
      `addr add ${ADDR.hostUplink4}/${ADDR.uplink4Len} dev eth0`,
      ...(ipv6 ? [`addr add ${ADDR.hostUplink6}/${ADDR.uplink6Len} dev eth0 nodad`] : []),
      'link set eth0 up',
      `route add default via ${ADDR.inetUplink4}`,
      ...(ipv6 ? [`route add ::/0 via ${ADDR.inetUplink6}`] : []),
    ];
    await must(hostArgv(['ip', '-batch', '-']), { input: hostBatch.join('\n') + '\n' });

    phase(t0, 'netns');
    // fake internet: DNS + web, and the host's private mount namespace, in parallel
    fs.mkdirSync(`${dir}/dns`);
    fs.writeFileSync(`${dir}/dns/hosts`, hostsFile(records));
    const dnsReady = startDns();
    fs.writeFileSync(`${dir}/web.json`, JSON.stringify({ sites: SITES, httpPorts: HTTP_PORTS, tlsPorts: TLS_PORTS, cert: tls.cert, key: tls.key }));
    const web = spawnDaemon(inetArgv([process.execPath, path.join(HERE, 'fake-internet.mjs'), `${dir}/web.json`]), `${dir}/web.log`, 'pipe');
    track(web, 'fake-internet');
    const webReady = waitForLine(web, /^ready$/m, 15_000, 'fake-internet', `${dir}/web.log`);
    await Promise.all([dnsReady.then(() => phase(t0, 'dns')), webReady.then(() => phase(t0, 'web'))]);

    phase(t0, 'dns+web');
    if (withDocker) {
      await startDockerd();
      phase(t0, 'dockerd');
      // the version we meant to run, with the backend we meant (the API reports it from Docker 28)
      const want = dockerLabel.replace(/-nft$/, '');
      if (!lab.dockerVersion.startsWith(`${want}.`)) {
        const found = flavor.root ? fs.readFileSync(path.join(flavor.root, 'VERSIONS'), 'utf8').trim().replace(/\n/g, ', ') : '';
        console.warn(`lab: EFW_DOCKER=${dockerLabel} runs dockerd ${lab.dockerVersion}${found ? ` (fetched: ${found})` : ''}`);
      }
      const engine = await lab.dockerApi().engine();
      if (engine.firewallBackend !== null && engine.firewallBackend !== flavor.firewallBackend) {
        throw new Error(`lab: dockerd ${engine.version} reports firewall backend ${engine.firewallDriver}, expected ${flavor.firewallBackend}`);
      }
      await dockerImport(lab, (await busyboxTar)!, BUSYBOX_IMAGE, ['CMD ["sh"]']);
    }
    phase(t0, 'ready');
    return lab;
  } catch (e) {
    stopped = true;
    teardownSync(st);
    throw e;
  }
}

/**
 * A `sleep` holding the lab's namespaces open; host()/inet() nsenter its pid.
 * inet: a new network namespace. host: a new network namespace and a private mount namespace
 * where writes never reach the machine:
 *   /run            tmpfs (ufw.lock, xtables.lock, docker.sock, containerd: dockerd starts its own)
 *   /etc /var/lib /var/log /var/spool /usr/local
 *                   overlays (reads see the machine's files, writes land in <lab dir>/overlay): covers
 *                   /etc/ufw, /etc/default, /etc/docker, cron/systemd units egressfw may install, ...
 *   /etc/egressfw /var/lib/egressfw /etc/docker   emptied; /etc/ufw/ufw.conf ENABLED=no (installed, disabled)
 *   /etc/resolv.conf  the lab DNS server;  /etc/ssl/certs/ca-certificates.crt  + lab CA
 *   /var/lib/docker   bind of <lab dir>/docker (overlay2 cannot stack on an overlay)
 */
async function startHolder(st: LabState, which: 'inet' | 'host', ipv6: boolean, ca = ''): Promise<void> {
  const dir = st.dir;
  const hostScript = `set -eu
T="$EFW_LAB_DIR"
mount -t tmpfs -o mode=0755 efw-run /run
for d in /etc /var/lib /var/log /var/spool /usr/local; do
  [ -d "$d" ] || continue
  n=$(echo "$d" | tr / _)
  mkdir -p "$T/overlay/$n/upper" "$T/overlay/$n/work"
  mount -t overlay efw-overlay -o "lowerdir=$d,upperdir=$T/overlay/$n/upper,workdir=$T/overlay/$n/work" "$d"
done
rm -rf /etc/egressfw /var/lib/egressfw /etc/docker
mkdir -p /etc/egressfw /var/lib/egressfw /etc/docker /var/lib/docker "$T/docker"
mount --bind "$T/docker" /var/lib/docker
rm -f /etc/resolv.conf
printf '%s' "$EFW_RESOLV" > /etc/resolv.conf
sed -i 's/^ENABLED=.*/ENABLED=no/' /etc/ufw/ufw.conf
cat "$EFW_CA" >> /etc/ssl/certs/ca-certificates.crt
`;
  const script = `${which === 'host' ? hostScript : ''}echo "ready $$"\nexec sleep infinity\n`;
  const flags = which === 'host' ? ['--net', '--mount', '--propagation', 'private'] : ['--net'];
  const log = `${dir}/holder-${which}.log`;
  const logFd = fs.openSync(log, 'a');
  const child = spawn('unshare', [...flags, '--', 'sh', '-c', script], {
    detached: true,
    stdio: ['ignore', 'pipe', logFd],
    env: { PATH: ENV_PATH, EFW_LAB_DIR: dir, EFW_CA: ca, EFW_RESOLV: `nameserver ${ADDR.dns4}\n${ipv6 ? `nameserver ${ADDR.dns6}\n` : ''}` },
  });
  fs.closeSync(logFd);
  child.on('error', () => {});
  child.unref();
  if (!child.pid) throw new Error(`lab: could not start the ${which} namespace holder`);
  const rec = { pid: child.pid, start: procStart(child.pid) ?? '' };
  if (which === 'host') st.holder = rec;
  else st.inet = rec;
  saveState(st);
  const m = await waitForLine(child, /^ready (\d+)$/m, 15_000, `${which} namespace holder`, log);
  // unshare execs (no fork): the shell's pid must be the one we spawned.
  if (Number(m[1]) !== child.pid) throw new Error(`lab: ${which} holder pid mismatch (${m[1]} vs ${child.pid})`);
  // Safety: host()/inet() must never run in the machine's own network (or, for host, mount) namespace.
  if (nsOf(child.pid, 'net') === nsOf('self', 'net') || (which === 'host' && nsOf(child.pid, 'mnt') === nsOf('self', 'mnt'))) {
    throw new Error(`lab: ${which} holder is not in private namespaces`);
  }
}

/** ids of labs of other processes (another test run on the same machine; or stale, until the next startLab) */
function foreignLabIds(): string[] {
  const ids: string[] = [];
  for (const dir of otherLabDirs(undefined)) {
    try {
      const st = JSON.parse(fs.readFileSync(path.join(dir, 'lab.json'), 'utf8')) as LabState;
      if (st.ownerPid !== process.pid) ids.push(st.id);
    } catch {
      ids.push(path.basename(dir).replace('efw-lab-', '')); // being created
    }
  }
  return ids;
}

/**
 * The machine's own network state (read only), to assert a lab left nothing behind.
 * Counters, lifetimes and timestamps are stripped, and so are traces of labs that other
 * processes run at the same time (their cgroups).
 */
export async function snapshotMachineNetwork(): Promise<string> {
  const cmds: string[][] = [
    ['ip', '-o', 'link'],
    ['ip', '-o', 'addr'],
    ['ip', 'route'],
    ['ip', '-6', 'route'],
    ['ip', 'netns', 'list'],
    ['iptables-save'],
    ['ip6tables-save'],
    ['ipset', 'list', '-n'],
    ['sysctl', 'net.ipv4.ip_forward', 'net.ipv6.conf.all.forwarding', 'net.ipv6.conf.all.accept_dad', 'net.ipv6.conf.default.accept_dad'],
    // mounts where a lab's private ones could leak (other mounts of the machine may come and go)
    ['sh', '-c', "findmnt -rn -o TARGET,FSTYPE | grep -E '^/(run|etc|var|usr/local)' || true"],
    ['sh', '-c', 'cat /etc/ufw/*.rules /etc/ufw/ufw.conf /etc/default/ufw /etc/resolv.conf /etc/ssl/certs/ca-certificates.crt | sha256sum; ls -a /etc/ufw /etc/docker /etc/egressfw /var/lib/egressfw 2>&1'],
    ['find', '/sys/fs/cgroup', '-maxdepth', '4', '-name', 'efw-*'],
  ];
  const outs = await Promise.all(cmds.map((c) => run(c, { timeoutMs: 30_000 })));
  const foreign = foreignLabIds();
  const keep = (line: string) => !foreign.some((id) => line.includes(`efw-${id}`));
  return outs
    .map((r, i) => {
      const text = (r.stdout + r.stderr)
        .split('\n')
        .filter(keep)
        .join('\n')
        .replace(/^#.*$/gm, '') // iptables-save timestamps
        .replace(/\[\d+:\d+\]/g, '[0:0]') // counters
        .replace(/(valid_lft|preferred_lft) \S+/g, '$1 -')
        .replace(/expires \S+/g, 'expires -');
      return `$ ${cmds[i]!.join(' ')} (exit ${r.exitCode})\n${text}`;
    })
    .join('\n');
}
