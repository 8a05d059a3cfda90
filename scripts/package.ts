// `npm run package`: the CLI as one file, and a .deb around it.
//
//   dist/pkg/egressfw.mjs                 the whole CLI in one ES module (#!/usr/bin/env node); needs no node_modules
//   dist/pkg/THIRD-PARTY-LICENSES.txt     licences of the packages bundled into it (the .deb's copyright: LICENSE, then these)
//   dist/egressfw_<version>_all.deb       /usr/lib/egressfw/egressfw.mjs (the same file, #!/usr/bin/node) and
//                                         /usr/bin/egressfw linking to it, units, example config
//   dist/egressfw-<version>.tgz           the npm package (`npm install -g` it): the bundle, no dependencies
//
//   tsx scripts/package.ts [--bundle-only]
//
// Runs on any machine with dpkg-deb (Debian/Ubuntu: the dpkg package, always installed). Writes only under dist/.
import { build } from 'esbuild';
import { execa } from 'execa';
import crypto from 'node:crypto';
import zlib from 'node:zlib';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PACKAGE_CLI, PACKAGE_HEADER, renderBootService, renderService, type InstallPaths } from '../src/schedule/units.js';
import { DEFAULT_CONFIG_PATH, DEFAULT_STATE_DIR, VERSION } from '../src/defaults.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PKG = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string; description: string; license: string };
export const BUNDLE = path.join(ROOT, 'dist', 'pkg', 'egressfw.mjs');
export const LICENSES = path.join(ROOT, 'dist', 'pkg', 'THIRD-PARTY-LICENSES.txt');
export const DEB = path.join(ROOT, 'dist', `egressfw_${PKG.version}_all.deb`);
export const NPM_TGZ = path.join(ROOT, 'dist', `egressfw-${PKG.version}.tgz`);

/** What the .deb depends on: Debian 12's own Node (18) is enough; the firewall tools egressfw drives (conntrack and ip: cutting refused flows after a sync). */
export const DEPENDS = 'nodejs (>= 18), iptables, ipset, nftables, conntrack, iproute2';
export const RECOMMENDS = 'ufw';

// Node 18 loads ES modules with top-level await; a CommonJS dependency that calls require() on a
// builtin needs a real require inside the bundle.
const BANNER = "import { createRequire as __egressfwRequire } from 'node:module';\nconst require = __egressfwRequire(import.meta.url);";

/** Bundle src/cli.ts into dist/pkg/egressfw.mjs; returns the bundled packages (for their licences). */
async function bundle(): Promise<string[]> {
  fs.mkdirSync(path.dirname(BUNDLE), { recursive: true });
  const r = await build({
    entryPoints: [path.join(ROOT, 'src', 'cli.ts')],
    outfile: BUNDLE,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node18',
    // smaller file, faster start; names kept so errors still say what they are
    minify: true,
    keepNames: true,
    legalComments: 'none', // the licences go to THIRD-PARTY-LICENSES.txt instead
    banner: { js: BANNER },
    metafile: true,
    logLevel: 'warning',
  });
  // src/cli.ts starts with its own #!/usr/bin/env node line, which esbuild keeps first.
  const text = fs.readFileSync(BUNDLE, 'utf8');
  if (!text.startsWith('#!/usr/bin/env node\n')) throw new Error(`${BUNDLE} does not start with #!/usr/bin/env node`);
  fs.chmodSync(BUNDLE, 0o755);
  const dirs = new Set<string>();
  for (const input of Object.keys(r.metafile.inputs)) {
    const m = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (m) dirs.add(path.resolve(ROOT, m[1]!));
  }
  return [...dirs].sort();
}

function licences(dirs: string[]): string {
  const parts = dirs.map((dir) => {
    const pj = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name: string; version: string; license?: string };
    const file = fs.readdirSync(dir).find((f) => /^(licen[cs]e|copying)(\.(md|txt))?$/i.test(f));
    const text = file ? fs.readFileSync(path.join(dir, file), 'utf8').trim() : `(no licence file in the package; package.json says ${pj.license ?? 'nothing'})`;
    return `${pj.name} ${pj.version} (${pj.license ?? 'unknown'})\n\n${text}\n`;
  });
  return `egressfw ${PKG.version} (${PKG.license}) bundles these packages:\n\n${parts.join(`\n${'-'.repeat(72)}\n\n`)}`;
}

/** The .deb's copyright file: egressfw's own licence (LICENSE), then those of the packages bundled into it. */
export function debCopyright(thirdParty: string): string {
  const own = fs.readFileSync(path.join(ROOT, 'LICENSE'), 'utf8').trim();
  return `egressfw ${PKG.version} is licensed under the ${PKG.license} licence:\n\n${own}\n\n${'='.repeat(72)}\n\n${thirdParty}`;
}

async function checkBundle(): Promise<void> {
  const r = await execa(process.execPath, [BUNDLE, '--version'], { reject: false });
  if (r.exitCode !== 0 || r.stdout.trim() !== PKG.version) {
    throw new Error(`the bundle says version "${r.stdout.trim()}" (exit ${r.exitCode}), package.json ${PKG.version}: keep VERSION in src/defaults.ts (${VERSION}) and package.json in step`);
  }
}

// ---------------------------------------------------------------------------- .deb

export const hasDpkgDeb = async () => (await execa('dpkg-deb', ['--version'], { reject: false }).catch(() => ({ exitCode: 127 }))).exitCode === 0;

/** Where the package's units point: the installed CLI (it starts itself with /usr/bin/node), the default config and state. */
export const PACKAGE_PATHS: InstallPaths = { cli: PACKAGE_CLI, config: DEFAULT_CONFIG_PATH, stateDir: DEFAULT_STATE_DIR };

/** The bundle in the package; /usr/bin/egressfw links to it (the .mjs name makes every Node load it as an ES module). */
export const PACKAGE_BUNDLE = '/usr/lib/egressfw/egressfw.mjs';

type DebEntry = { mode: number; content: string | Buffer } | { link: string };

/** Files of the package root, path (relative, no leading slash) -> file or symlink. */
/** Debian's gzip for docs and man pages: maximum compression, no name or time in the header (reproducible). */
const gz = (text: string | Buffer) => zlib.gzipSync(text, { level: 9 });

/** Maintainer field: the packager's own, or the project's. */
export const MAINTAINER = process.env.DEB_MAINTAINER ?? 'egressfw developers <egressfw@users.noreply.github.com>';

/** A native package's changelog (Debian format): one entry for this version, dated by the build's fixed time. */
function changelog(epoch: number): string {
  const date = new Date(epoch * 1000).toUTCString().replace(/GMT$/, '+0000');
  return `egressfw (${PKG.version}) unstable; urgency=medium\n\n  * egressfw ${PKG.version}: see /usr/share/doc/egressfw/README.Debian and the\n    project's release notes.\n\n -- ${MAINTAINER}  ${date}\n`;
}

/**
 * Debian's copyright file refers to /usr/share/common-licenses for licences Debian ships
 * (lintian: copyright-file-contains-full-apache-2-license); the bundle's own file keeps the texts.
 */
export function debianCopyright(licenceText: string): string {
  return licenceText.replace(/^([^\n]+ \(Apache-2\.0\))\n\n[\s\S]*?(?=\n-{72}\n|$)/gm, '$1\n\nOn Debian systems the complete text of the Apache License, Version 2.0, is in\n/usr/share/common-licenses/Apache-2.0.\n');
}

/** lintian overrides, each with its reason (lintian prints the comment when it applies one). */
const LINTIAN_OVERRIDES = `# egressfw.service is wanted by docker.service on purpose: the daemon starts, and re-asserts its
# rules, whenever Docker starts (Docker may have moved rules while it was down).
egressfw: systemd-service-file-refers-to-unusual-wantedby-target docker.service [lib/systemd/system/egressfw.service]
# prerm stops the daemon and disables the units the operator enabled with systemctl (the package never enables them), so
# deb-systemd-helper, which undoes only what it enabled itself, has nothing to undo.
egressfw: maintainer-script-calls-systemctl [prerm:*]
`;

/** Commands and, per command, options, as the bundle's own --help lists them (hidden commands are not listed). */
async function cliOptions(): Promise<Map<string, string[]>> {
  const help = async (args: string[]) => (await execa(process.execPath, [BUNDLE, ...args, '--help'])).stdout;
  const top = await help([]);
  const commands = [...top.slice(top.indexOf('Commands:')).matchAll(/^ {2}([a-z][a-z0-9-]*)\b/gm)].map((m) => m[1]!).filter((c) => c !== 'help');
  const out = new Map<string, string[]>();
  for (const c of commands) out.set(c, [...new Set([...(await help([c])).matchAll(/(?:^|[ ,])(--[a-z][a-z0-9-]*)/gm)].map((m) => m[1]!))]);
  return out;
}

/**
 * bash completion, generated from the CLI itself (so it lists exactly its commands and options);
 * values: files for --config/--compose, directories for --state-dir/--out, the choices of --mode/--to.
 */
export function renderCompletion(options: Map<string, string[]>): string {
  const cases = [...options].map(([c, o]) => `    ${c}) opts='${o.join(' ')}' ;;`).join('\n');
  return `# bash completion for egressfw (generated by scripts/package.ts from \`egressfw COMMAND --help\`)
_egressfw() {
  local cur prev cmd i opts
  cur=\${COMP_WORDS[COMP_CWORD]}
  prev=\${COMP_WORDS[COMP_CWORD-1]}
  cmd=
  for ((i = 1; i < COMP_CWORD; i++)); do
    case \${COMP_WORDS[i]} in -*) ;; *) cmd=\${COMP_WORDS[i]}; break ;; esac
  done
  case $prev in
    -c|--config|--compose) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --state-dir|-o|--out) COMPREPLY=($(compgen -d -- "$cur")); return ;;
    --mode) COMPREPLY=($(compgen -W 'per-domain sni' -- "$cur")); return ;;
    --to) COMPREPLY=($(compgen -W 'cilium antrea' -- "$cur")); return ;;
    --since) COMPREPLY=($(compgen -W '30m 1h 24h 7d' -- "$cur")); return ;;
  esac
  if [ -z "$cmd" ]; then
    COMPREPLY=($(compgen -W '${[...options.keys()].join(' ')} help --help --version' -- "$cur"))
    return
  fi
  case $cmd in
${cases}
    *) opts='' ;;
  esac
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -F _egressfw egressfw
`;
}

function debFiles(bundleText: string, copyright: string, epoch: number, completion: string): Map<string, DebEntry> {
  const doc = 'usr/share/doc/egressfw';
  const deb = (f: string) => fs.readFileSync(path.join(ROOT, 'scripts', 'deb', f), 'utf8');
  const file = (f: string) => fs.readFileSync(path.join(ROOT, f));
  return new Map<string, DebEntry>([
    // the page's header names this version, whatever docs/egressfw.8 was last edited for
    ['usr/share/man/man8/egressfw.8.gz', { mode: 0o644, content: gz(file('docs/egressfw.8').toString().replace(/^(\.TH EGRESSFW 8 "[^"]*" )"egressfw [^"]*"/m, `$1"egressfw ${PKG.version}"`)) }],
    ['usr/share/bash-completion/completions/egressfw', { mode: 0o644, content: completion }],
    ['usr/share/lintian/overrides/egressfw', { mode: 0o644, content: LINTIAN_OVERRIDES }],
    [`${doc}/changelog.gz`, { mode: 0o644, content: gz(changelog(epoch)) }],
    [`${doc}/metrics.md`, { mode: 0o644, content: file('docs/metrics.md') }],
    [`${doc}/examples/egressfw-alerts.yml`, { mode: 0o644, content: file('examples/prometheus/egressfw-alerts.yml') }],
    // Debian's node is /usr/bin/node; so is NodeSource's. The same bundle, only the first line differs.
    [PACKAGE_BUNDLE.slice(1), { mode: 0o755, content: bundleText.replace(/^#!\/usr\/bin\/env node\n/, '#!/usr/bin/node\n') }],
    [PACKAGE_CLI.slice(1), { link: path.relative(path.dirname(PACKAGE_CLI), PACKAGE_BUNDLE) }],
    ['lib/systemd/system/egressfw.service', { mode: 0o644, content: renderService(PACKAGE_PATHS, PACKAGE_HEADER) }],
    ['lib/systemd/system/egressfw-boot.service', { mode: 0o644, content: renderBootService(PACKAGE_PATHS, PACKAGE_HEADER) }],
    [`${doc}/egressfw.yml`, { mode: 0o644, content: fs.readFileSync(path.join(ROOT, 'examples', 'egressfw.yml')) }],
    [`${doc}/README.Debian`, { mode: 0o644, content: deb('README.Debian') }],
    [`${doc}/copyright`, { mode: 0o644, content: copyright }],
  ]);
}

function control(installedKiB: number): string {
  return `Package: egressfw
Version: ${PKG.version}
Architecture: all
Maintainer: ${MAINTAINER}
Depends: ${DEPENDS}
Recommends: ${RECOMMENDS}
Section: net
Priority: optional
Installed-Size: ${installedKiB}
Description: keep a Docker host's outbound traffic to an allowlist of domain names
 egressfw resolves an allowlist of domain names again and again and keeps the
 kernel's firewall (ipset, iptables, nftables, ufw) to exactly those
 destinations, for the host itself and for every container.
 .
 The systemd units are installed but not enabled, and installing or removing
 the package never changes the firewall: see
 /usr/share/doc/egressfw/README.Debian.
`;
}

async function buildDeb(bundleText: string, copyright: string): Promise<void> {
  // Reproducible: every file gets the last commit's time (or SOURCE_DATE_EPOCH), root owner (--root-owner-group).
  const epoch = Number(process.env.SOURCE_DATE_EPOCH ?? (await execa('git', ['log', '-1', '--format=%ct'], { cwd: ROOT, reject: false })).stdout) || 0;
  const stage = fs.mkdtempSync(path.join(ROOT, 'dist', '.deb-root-'));
  try {
    const files = debFiles(bundleText, debianCopyright(copyright), epoch, renderCompletion(await cliOptions()));
    let bytes = 0;
    const sums: string[] = [];
    for (const [rel, e] of files) {
      const p = path.join(stage, rel);
      fs.mkdirSync(path.dirname(p), { recursive: true, mode: 0o755 });
      if ('link' in e) {
        fs.symlinkSync(e.link, p);
        continue;
      }
      fs.writeFileSync(p, e.content, { mode: e.mode });
      fs.chmodSync(p, e.mode);
      bytes += Buffer.byteLength(e.content);
      sums.push(`${crypto.createHash('md5').update(e.content).digest('hex')}  ${rel}`);
    }
    const debian = path.join(stage, 'DEBIAN');
    fs.mkdirSync(debian, { mode: 0o755 });
    fs.writeFileSync(path.join(debian, 'control'), control(Math.ceil(bytes / 1024)), { mode: 0o644 });
    fs.writeFileSync(path.join(debian, 'md5sums'), `${sums.sort((a, b) => a.slice(34).localeCompare(b.slice(34))).join('\n')}\n`, { mode: 0o644 });
    for (const s of ['postinst', 'prerm', 'postrm']) {
      fs.copyFileSync(path.join(ROOT, 'scripts', 'deb', s), path.join(debian, s));
      fs.chmodSync(path.join(debian, s), 0o755);
    }
    // directories too: mode 0755 and the fixed time (dpkg-deb keeps what it finds)
    const walk = (dir: string) => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) {
          fs.chmodSync(p, 0o755);
          walk(p);
        }
        if (e.isSymbolicLink()) fs.lutimesSync(p, epoch, epoch);
        else fs.utimesSync(p, epoch, epoch);
      }
    };
    fs.chmodSync(stage, 0o755);
    walk(stage);
    fs.rmSync(DEB, { force: true });
    await execa('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', stage, DEB], { env: { SOURCE_DATE_EPOCH: String(epoch) } });
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------- npm

async function buildNpm(): Promise<void> {
  // package.json "files" lists exactly what goes in: the bundle, its licences, LICENSE, the example config, README.
  const r = await execa('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', path.dirname(NPM_TGZ)], { cwd: ROOT });
  const [info] = JSON.parse(r.stdout) as { filename: string; files: { path: string }[] }[];
  const produced = path.join(path.dirname(NPM_TGZ), info!.filename);
  if (produced !== NPM_TGZ) fs.renameSync(produced, NPM_TGZ);
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const dirs = await bundle();
  const thirdParty = licences(dirs);
  fs.writeFileSync(LICENSES, thirdParty);
  const copyright = debCopyright(thirdParty);
  await checkBundle();
  const bundleText = fs.readFileSync(BUNDLE, 'utf8');
  const out = [`${path.relative(process.cwd(), BUNDLE)} (${(bundleText.length / 1024).toFixed(0)} KiB, ${dirs.length} packages bundled)`];
  if (!process.argv.includes('--bundle-only')) {
    if (await hasDpkgDeb()) {
      await buildDeb(bundleText, copyright);
      out.push(path.relative(process.cwd(), DEB));
    } else {
      fs.rmSync(DEB, { force: true });
      process.stderr.write('package: dpkg-deb not found (it comes with dpkg, on every Debian/Ubuntu): no .deb built\n');
    }
    await buildNpm();
    out.push(path.relative(process.cwd(), NPM_TGZ));
  }
  process.stdout.write(`package: ${out.join(', ')} in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e: Error) => {
    process.stderr.write(`package: ${e.message}\n`);
    process.exitCode = 1;
  });
}
