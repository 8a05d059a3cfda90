/**
 * The Node versions the bundle must run on, fetched into the lab cache without installing anything:
 *
 *   node 18  Debian 12's own nodejs + libnode108 and the libraries it links, from Debian's archive
 *            (`apt-get download` with a private sources list and lists dir, `dpkg -x`). Debian's node
 *            loads some builtins from /usr/share/nodejs, so it runs in a private mount namespace with
 *            the unpacked /usr/share laid over the machine's (root only).
 *   node 20  this machine's node (whatever `process.execPath` is).
 *   node 22  the official Linux build that the npm package `node@22` installs (its install script
 *            fetches `node-linux-<arch>` from the npm registry); fetched with `npm pack`, unpacked.
 *
 * Cached under CACHE_DIR/node (EFW_LAB_CACHE, default /var/tmp/efw-lab-cache); a first fetch takes
 * a minute at most, later runs only check a marker file.
 */
import { execa } from 'execa';
import fs from 'node:fs';
import path from 'node:path';
import { machineDebianMirrors } from '../../scripts/apt-sources.js';

export const CACHE_DIR = process.env.EFW_LAB_CACHE ?? '/var/tmp/efw-lab-cache';
const NODE_CACHE = path.join(CACHE_DIR, 'node');

/** Debian 12's archive on the mirror this machine's apt uses (signed by the keyring every Debian system has). */
function debian12Sources(): string {
  const m = machineDebianMirrors();
  return [`${m.archive} bookworm`, `${m.archive} bookworm-updates`, `${m.security} bookworm-security`]
    .map((s) => `deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${s} main`)
    .join('\n');
}
/** nodejs 18 and what libnode108 needs beyond the base system (libc, libstdc++, zlib). */
const DEBIAN12_PACKAGES = ['nodejs', 'libnode108', 'libc-ares2', 'libuv1', 'libbrotli1', 'libicu72', 'libnghttp2-14', 'libssl3', 'node-acorn', 'node-cjs-module-lexer', 'node-undici'];
/** The version `npm install node@22` installs today (node@22.23.3 pulls node-linux-<arch>@22.23.3). */
export const NODE22_VERSION = '22.23.3';

export interface NodeRuntime {
  /** e.g. "node 18 (Debian 12)" */
  name: string;
  /** `process.version` as the runtime reports it */
  version: string;
  /** argv before the script: [node] or a wrapper that ends in exec node */
  argv: string[];
}

const TRIPLET = process.arch === 'arm64' ? 'aarch64-linux-gnu' : 'x86_64-linux-gnu';

async function must(file: string, args: string[], opts: { cwd?: string; timeout?: number } = {}): Promise<string> {
  const r = await execa(file, args, { reject: false, timeout: opts.timeout ?? 300_000, ...(opts.cwd ? { cwd: opts.cwd } : {}) });
  if (r.exitCode !== 0) throw new Error(`\`${[file, ...args].join(' ')}\` exited ${r.exitCode}: ${(r.stderr || r.stdout).slice(-2000)}`);
  return r.stdout;
}

/** Build into a temp dir next to `dir`, then rename: concurrent test files never see half a cache. */
async function cached(dir: string, fill: (tmp: string) => Promise<void>): Promise<string> {
  if (fs.existsSync(path.join(dir, '.complete'))) return dir;
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  const tmp = fs.mkdtempSync(`${dir}.tmp-`);
  try {
    await fill(tmp);
    fs.writeFileSync(path.join(tmp, '.complete'), new Date().toISOString());
    try {
      fs.renameSync(tmp, dir);
    } catch {
      /* another process won the race: use its copy */
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return dir;
}

/** Debian 12's node 18 unpacked (root: usr/bin/node, usr/lib/<triplet>, usr/share/nodejs). */
export async function debianNode18Root(): Promise<string> {
  return cached(path.join(NODE_CACHE, 'debian12-node18'), async (tmp) => {
    const apt = path.join(tmp, 'apt');
    for (const d of ['lists/partial', 'cache/archives/partial', 'debs']) fs.mkdirSync(path.join(apt, d), { recursive: true });
    fs.writeFileSync(path.join(apt, 'sources.list'), `${debian12Sources()}\n`);
    // The machine's own apt setup (sources, lists, cache) is never read or written.
    const opts = ['-o', `Dir::Etc::sourcelist=${apt}/sources.list`, '-o', 'Dir::Etc::sourceparts=/dev/null', '-o', `Dir::State::Lists=${apt}/lists`, '-o', `Dir::Cache=${apt}/cache`];
    await must('apt-get', [...opts, '-qq', 'update']);
    const pins: string[] = [];
    for (const p of DEBIAN12_PACKAGES) {
      // Highest version Debian 12 has (for nodejs/libnode108: the 18.x line), whatever the machine has installed.
      const versions = (await must('apt-cache', [...opts, 'madison', p])).split('\n').map((l) => l.split('|')[1]?.trim()).filter((v): v is string => !!v);
      const v = p === 'nodejs' || p === 'libnode108' ? versions.find((x) => x.startsWith('18.')) : versions[0];
      if (!v) throw new Error(`Debian 12's archive has no ${p}${p === 'nodejs' ? ' 18.x' : ''}`);
      pins.push(`${p}=${v}`);
    }
    await must('apt-get', [...opts, '-qq', 'download', ...pins], { cwd: path.join(apt, 'debs') });
    const root = path.join(tmp, 'root');
    for (const deb of fs.readdirSync(path.join(apt, 'debs'))) await must('dpkg', ['-x', path.join(apt, 'debs', deb), root]);
    fs.writeFileSync(path.join(tmp, 'packages.txt'), `${pins.join('\n')}\n`);
    fs.rmSync(apt, { recursive: true, force: true });
  }).then((dir) => path.join(dir, 'root'));
}

/** argv that runs Debian 12's node 18 from `root` as if installed: its /usr/share laid over the machine's (root only). */
export function debianNode18Argv(root: string): string[] {
  const script = `mount -t overlay -o "lowerdir=$0/usr/share:/usr/share" efw-node18 /usr/share && LD_LIBRARY_PATH="$0/usr/lib/${TRIPLET}" exec "$0/usr/bin/node" "$@"`;
  return ['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', script, root];
}

/** The official node 22 binary, as the npm package node@22 would install it. */
export async function npmNode22(): Promise<string> {
  const pkg = `node-${process.platform}-${process.arch}`;
  const dir = await cached(path.join(NODE_CACHE, `npm-${pkg}-${NODE22_VERSION}`), async (tmp) => {
    const out = await must('npm', ['pack', '--json', `${pkg}@${NODE22_VERSION}`, '--pack-destination', tmp]);
    const [info] = JSON.parse(out) as { filename: string }[];
    await must('tar', ['-xzf', path.join(tmp, info!.filename), '-C', tmp]);
    fs.rmSync(path.join(tmp, info!.filename));
    // only the binary is needed (not the bundled npm, headers, docs)
    for (const e of fs.readdirSync(path.join(tmp, 'package'))) if (e !== 'bin') fs.rmSync(path.join(tmp, 'package', e), { recursive: true, force: true });
  });
  return path.join(dir, 'package', 'bin', 'node');
}

async function versionOf(argv: string[]): Promise<string> {
  const [file, ...args] = argv;
  return (await must(file!, [...args, '-p', 'process.version'])).trim();
}

/**
 * Node 18 (Debian 12; only as root, see above), this machine's node, node 22 (npm): each fetched if
 * needed, with the version it reports.
 */
export async function nodeRuntimes(): Promise<NodeRuntime[]> {
  const root = process.getuid?.() === 0;
  const [root18, node22] = await Promise.all([root ? debianNode18Root() : undefined, npmNode22()]);
  const list = [
    ...(root18 ? [{ name: 'node 18 (Debian 12)', argv: debianNode18Argv(root18) }] : []),
    { name: 'node (this machine)', argv: [process.execPath] },
    { name: `node 22 (npm node@${NODE22_VERSION})`, argv: [node22] },
  ];
  return Promise.all(list.map(async (r) => ({ ...r, version: await versionOf(r.argv) })));
}

/**
 * A tool from one of Debian 12's packages, unpacked (never installed): e.g. promtool from
 * `prometheus`, whose postinst would start a Prometheus server. Returns the binary's path.
 */
export async function debian12Tool(pkg: string, bin: string): Promise<string> {
  const dir = await cached(path.join(CACHE_DIR, `debian12-${pkg}`), async (tmp) => {
    const apt = path.join(tmp, 'apt');
    for (const d of ['lists/partial', 'cache/archives/partial', 'debs']) fs.mkdirSync(path.join(apt, d), { recursive: true });
    fs.writeFileSync(path.join(apt, 'sources.list'), `${debian12Sources()}\n`);
    const opts = ['-o', `Dir::Etc::sourcelist=${apt}/sources.list`, '-o', 'Dir::Etc::sourceparts=/dev/null', '-o', `Dir::State::Lists=${apt}/lists`, '-o', `Dir::Cache=${apt}/cache`];
    await must('apt-get', [...opts, '-qq', 'update']);
    await must('apt-get', [...opts, '-qq', 'download', pkg], { cwd: path.join(apt, 'debs') });
    for (const deb of fs.readdirSync(path.join(apt, 'debs'))) await must('dpkg', ['-x', path.join(apt, 'debs', deb), path.join(tmp, 'root')]);
    fs.rmSync(apt, { recursive: true, force: true });
  });
  return path.join(dir, 'root', bin);
}
