// What `npm run package` produces: the .deb (contents, control fields, units, maintainer scripts) and the npm
// package (contents, installs and runs with no dependencies). `npm test` runs `npm run package` first.
import { execa } from 'execa';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUNDLE, DEB, debianCopyright, DEPENDS, hasDpkgDeb, LICENSES, NPM_TGZ, PACKAGE_PATHS, RECOMMENDS } from '../../scripts/package.js';
import { PACKAGE_HEADER, renderBootService, renderService } from '../../src/schedule/units.js';
import { describeWhere } from '../lab/requirements.js';

const VERSION = (JSON.parse(fs.readFileSync('package.json', 'utf8')) as { version: string }).version;
const isRoot = process.getuid?.() === 0;
const dpkgDeb = await hasDpkgDeb();
for (const f of [BUNDLE, NPM_TGZ, ...(dpkgDeb ? [DEB] : [])]) if (!fs.existsSync(f)) throw new Error(`${f} is missing: run \`npm run package\` (npm test does)`);

let tmp: string;
let root: string; // the .deb unpacked
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'egressfw-pkg-'));
  root = path.join(tmp, 'root');
  if (!dpkgDeb) return;
  await execa('dpkg-deb', ['-x', DEB, root]);
  await execa('dpkg-deb', ['-e', DEB, path.join(tmp, 'DEBIAN')]);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const field = async (name: string) => (await execa('dpkg-deb', ['-f', DEB, name])).stdout.trim();

describeWhere(`the .deb (${path.basename(DEB)})`, dpkgDeb ? [] : ['dpkg-deb is not installed, so no .deb was built: `apt-get install dpkg`'], () => {
  it('is named and described as Debian expects, depends on the distribution\'s node and the firewall tools', async () => {
    expect(path.basename(DEB)).toBe(`egressfw_${VERSION}_all.deb`);
    expect(await field('Package')).toBe('egressfw');
    expect(await field('Version')).toBe(VERSION);
    expect(await field('Architecture')).toBe('all');
    expect(await field('Depends')).toBe('nodejs (>= 18), iptables, ipset, nftables, conntrack, iproute2');
    expect(DEPENDS).toBe(await field('Depends'));
    expect(await field('Recommends')).toBe(RECOMMENDS);
  });

  it('holds the CLI, the units (not enabled: no symlinks to them), the example config and docs, all root-owned', async () => {
    const listing = (await execa('dpkg-deb', ['-c', DEB])).stdout.split('\n');
    const files = listing.filter((l) => !l.startsWith('d')).map((l) => l.split(/\s+/).slice(5).join(' ').replace(/^\.\//, '')).sort();
    expect(files).toEqual([
      'lib/systemd/system/egressfw-boot.service',
      'lib/systemd/system/egressfw.service',
      'usr/bin/egressfw -> ../lib/egressfw/egressfw.mjs',
      'usr/lib/egressfw/egressfw.mjs',
      'usr/share/bash-completion/completions/egressfw',
      'usr/share/doc/egressfw/README.Debian',
      'usr/share/doc/egressfw/changelog.gz',
      'usr/share/doc/egressfw/copyright',
      'usr/share/doc/egressfw/egressfw.yml',
      'usr/share/doc/egressfw/examples/egressfw-alerts.yml',
      'usr/share/doc/egressfw/metrics.md',
      'usr/share/lintian/overrides/egressfw',
      'usr/share/man/man8/egressfw.8.gz',
    ]);
    for (const l of listing) expect(l.split(/\s+/)[1]).toBe('root/root');
    expect(listing.find((l) => l.endsWith('./usr/lib/egressfw/egressfw.mjs'))).toMatch(/^-rwxr-xr-x /);
    expect(fs.readFileSync(path.join(root, 'usr/share/doc/egressfw/egressfw.yml'), 'utf8')).toBe(fs.readFileSync('examples/egressfw.yml', 'utf8'));
    // md5sums lets `dpkg --verify egressfw` work
    const sums = fs.readFileSync(path.join(tmp, 'DEBIAN', 'md5sums'), 'utf8').trim().split('\n');
    expect(sums.map((l) => l.slice(34)).sort()).toEqual(files.filter((f) => !f.includes(' -> ')));
    const md5 = await execa('md5sum', sums.map((l) => l.slice(34)), { cwd: root });
    expect(md5.stdout.trim().split('\n').sort()).toEqual([...sums].sort());
  });

  it('its copyright file carries egressfw\'s own MIT licence (LICENSE), then the bundled packages\' licences', () => {
    const text = fs.readFileSync(path.join(root, 'usr/share/doc/egressfw/copyright'), 'utf8');
    const license = fs.readFileSync('LICENSE', 'utf8').trim();
    expect(license).toMatch(/^MIT License\n\nCopyright \(c\) egressfw contributors\n/);
    expect(text.startsWith(`egressfw ${VERSION} is licensed under the MIT licence:\n\n${license}\n`)).toBe(true);
    expect(text).toContain(debianCopyright(fs.readFileSync(LICENSES, 'utf8')));
  });

  it('lintian (Debian\'s package checker) finds no errors and no warnings; every override it applies has a reason', async () => {
    const lintian = await execa('lintian', ['--version'], { reject: false }).catch(() => null);
    if (!lintian || lintian.exitCode !== 0) throw new Error('lintian is not installed: `apt-get install lintian` (scripts/install-deps.sh does)');
    const r = await execa('lintian', ['--fail-on', 'error,warning', DEB], { reject: false });
    const tags = r.stdout.split('\n').filter((l) => /^[EW]: /.test(l));
    expect(tags).toEqual([]);
    expect(r.exitCode).toBe(0);
    // overridden tags (O:) are the ones the overrides file explains
    const overrides = fs.readFileSync(path.join(root, 'usr/share/lintian/overrides/egressfw'), 'utf8').split('\n');
    overrides.forEach((l, i) => {
      if (l.startsWith('egressfw: ')) expect(overrides[i - 1], l).toMatch(/^# /);
    });
  }, 120_000);

  it('installs a man page egressfw(8) that man renders without warnings, naming every command', async () => {
    const page = path.join(root, 'usr/share/man/man8/egressfw.8.gz');
    const r = await execa('man', ['--warnings', '-l', page], { reject: false, env: { MANWIDTH: '80', MAN_KEEP_FORMATTING: '' } });
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    for (const c of ['plan', 'sync', 'daemon', 'status', 'install', 'report', 'suggest', 'proxy', 'export', 'uninstall']) expect(r.stdout).toMatch(new RegExp(`^ {7}(\\w+, )?${c}\\b`, 'm'));
  });

  it('bash completion (generated from the CLI) offers every command and, per command, every option the CLI has', async () => {
    const script = path.join(root, 'usr/share/bash-completion/completions/egressfw');
    const complete = async (words: string[]) => {
      const line = ['egressfw', ...words];
      const r = await execa('bash', ['-c', `source "$0"; COMP_WORDS=(${line.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${line.length - 1}; _egressfw; printf '%s\\n' "\${COMPREPLY[@]}"`, script]);
      return r.stdout.split('\n').filter(Boolean).sort();
    };
    const top = (await execa(process.execPath, [BUNDLE, '--help'])).stdout;
    const commands = [...top.slice(top.indexOf('Commands:')).matchAll(/^ {2}([a-z][a-z0-9-]*)\b/gm)].map((m) => m[1]!).filter((c) => c !== 'help');
    expect(commands).toEqual(expect.arrayContaining(['daemon', 'install', 'plan', 'proxy', 'report', 'status', 'suggest', 'sync', 'uninstall']));
    expect(await complete([''])).toEqual(expect.arrayContaining(commands));
    expect(await complete(['st'])).toEqual(['status']);
    for (const c of commands) {
      const help = (await execa(process.execPath, [BUNDLE, c, '--help'])).stdout;
      const options = [...help.matchAll(/(?:^|[ ,])(--[a-z][a-z-]*)/gm)].map((m) => m[1]!);
      expect(await complete([c, '--']), c).toEqual([...new Set(options)].sort());
    }
  });

  it('/usr/bin/egressfw is the bundle (an .mjs: ES module on every Node), started by the distribution\'s /usr/bin/node', () => {
    expect(fs.readlinkSync(path.join(root, 'usr/bin/egressfw'))).toBe('../lib/egressfw/egressfw.mjs');
    const cli = fs.readFileSync(path.join(root, 'usr/bin/egressfw'), 'utf8');
    const bundle = fs.readFileSync(BUNDLE, 'utf8');
    expect(cli.split('\n')[0]).toBe('#!/usr/bin/node');
    expect(bundle.split('\n')[0]).toBe('#!/usr/bin/env node');
    expect(cli.slice(cli.indexOf('\n'))).toBe(bundle.slice(bundle.indexOf('\n')));
  });

  it('ships the units that point at /usr/bin/egressfw, the default config and state', () => {
    const service = fs.readFileSync(path.join(root, 'lib/systemd/system/egressfw.service'), 'utf8');
    const boot = fs.readFileSync(path.join(root, 'lib/systemd/system/egressfw-boot.service'), 'utf8');
    expect(service).toBe(renderService(PACKAGE_PATHS, PACKAGE_HEADER));
    expect(boot).toBe(renderBootService(PACKAGE_PATHS, PACKAGE_HEADER));
    expect(service).toMatch(/^ExecStart=\/usr\/bin\/egressfw daemon --config \/etc\/egressfw\/egressfw\.yml --state-dir \/var\/lib\/egressfw$/m);
    expect(boot).toMatch(/^ExecStart=\/usr\/bin\/egressfw sync --offline --quiet --config \/etc\/egressfw\/egressfw\.yml --state-dir \/var\/lib\/egressfw$/m);
    expect(service.split('\n')[0]).toBe(PACKAGE_HEADER);
  });

  it('maintainer scripts call nothing but systemctl: never a firewall tool, never egressfw itself', () => {
    for (const s of ['postinst', 'prerm', 'postrm']) {
      const text = fs.readFileSync(path.join(tmp, 'DEBIAN', s), 'utf8');
      expect(text.split('\n')[0]).toBe('#!/bin/sh');
      const code = text.split('\n').filter((l) => !/^\s*(#|echo )/.test(l)).join('\n');
      expect(code).not.toMatch(/\b(iptables|ip6tables|ipset|nft|ufw|egressfw\s+(sync|uninstall|daemon|install))\b/);
      for (const m of code.matchAll(/\bsystemctl\b[^\n;|&]*/g)) expect(m[0]).not.toMatch(/stop egressfw-boot|--now/);
    }
  });

  // Run for real in a private mount namespace, with systemd "running" (/run/systemd/system) and a fake systemctl that logs.
  describeWhere('maintainer scripts, run', isRoot ? [] : ['not root: they run in a private mount namespace; run the tests with sudo'], () => {
    it('install and upgrade reload units; remove stops only the daemon (stopping egressfw-boot would stop Docker) and disables both', async () => {
      const bin = path.join(tmp, 'fakebin');
      fs.mkdirSync(bin, { recursive: true });
      const log = path.join(tmp, 'systemctl.log');
      fs.writeFileSync(path.join(bin, 'systemctl'), `#!/bin/sh\necho "$*" >> ${log}\n[ "$1" = is-active ] && exit 0\nexit 0\n`, { mode: 0o755 });
      const run = async (script: string, ...args: string[]) => {
        fs.writeFileSync(log, '');
        const r = await execa('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c',
          'mount -t tmpfs efw-run /run && mkdir -p /run/systemd/system && exec "$@"', 'sh', path.join(tmp, 'DEBIAN', script), ...args],
        { env: { PATH: `${bin}:/usr/bin:/bin` }, reject: false });
        expect(r.exitCode).toBe(0);
        return fs.readFileSync(log, 'utf8').trim().split('\n').filter(Boolean);
      };
      expect(await run('postinst', 'configure')).toEqual(['--system daemon-reload']);
      expect(await run('postinst', 'configure', '0.0.9')).toEqual(['--system daemon-reload', 'is-active --quiet egressfw.service']);
      expect(await run('prerm', 'upgrade', VERSION)).toEqual([]);
      expect(await run('prerm', 'remove')).toEqual(['stop egressfw.service', 'disable egressfw.service egressfw-boot.service']);
      expect(await run('postrm', 'remove')).toEqual(['--system daemon-reload']);
      expect(await run('postrm', 'purge')).toEqual(['--system daemon-reload']);
    });
  });

  it('`install --systemd` from the packaged CLI writes units that start /usr/bin/egressfw itself, not node + a script', async () => {
    const cli = path.join(root, 'usr/bin/egressfw');
    const r = await execa(process.execPath, [cli, 'install', '--systemd', '--dry-run', '--config', path.resolve('examples/egressfw.yml')], { reject: false });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^ExecStart=${cli} daemon --config `, 'm'));
    const cron = await execa(process.execPath, [cli, 'install', '--cron', '--dry-run', '--config', path.resolve('examples/egressfw.yml')], { reject: false });
    expect(cron.stdout).toContain(`root flock -n /run/egressfw.cron.lock ${cli} sync --quiet`);
  });
});

describe('a clone', () => {
  it('`npm run build` makes the file package.json\'s bin names; `npm install -g` of the clone then gives a working egressfw', async () => {
    // a copy of the sources (not dist/) with this checkout's node_modules: what a fresh clone has after `npm ci`
    const clone = path.join(tmp, 'clone');
    fs.mkdirSync(clone);
    for (const f of ['package.json', 'package-lock.json', 'tsconfig.json', 'README.md', 'LICENSE', 'src', 'scripts', 'examples']) fs.cpSync(f, path.join(clone, f), { recursive: true });
    fs.symlinkSync(fs.realpathSync('node_modules'), path.join(clone, 'node_modules'));
    const b = await execa('npm', ['run', 'build'], { cwd: clone, reject: false });
    expect(b.exitCode, b.stderr).toBe(0);
    const pj = JSON.parse(fs.readFileSync(path.join(clone, 'package.json'), 'utf8')) as { bin: Record<string, string> };
    const binFile = path.join(clone, pj.bin.egressfw!);
    expect(fs.statSync(binFile).mode & 0o111).toBe(0o111);
    const prefix = path.join(tmp, 'clone-prefix');
    const i = await execa('npm', ['install', '-g', '--offline', '--no-audit', '--no-fund', '--prefix', prefix, clone], { reject: false });
    expect(i.exitCode, i.stderr).toBe(0);
    const bin = path.join(prefix, 'bin', 'egressfw');
    expect(fs.realpathSync(bin)).toBe(fs.realpathSync(binFile));
    expect((await execa(bin, ['--version'])).stdout.trim()).toBe(VERSION);
  }, 120_000);
});

describe(`the npm package (${path.basename(NPM_TGZ)})`, () => {
  it('holds the bundle, its licences, LICENSE, the example config and README; no dependencies; Node 18 or later', async () => {
    const list = (await execa('tar', ['-tzf', NPM_TGZ])).stdout.split('\n').sort();
    expect(list).toEqual(['package/LICENSE', 'package/README.md', 'package/dist/pkg/THIRD-PARTY-LICENSES.txt', 'package/dist/pkg/egressfw.mjs', 'package/examples/egressfw.yml', 'package/package.json']);
    const pj = JSON.parse((await execa('tar', ['-xzOf', NPM_TGZ, 'package/package.json'])).stdout) as Record<string, unknown>;
    expect((await execa('tar', ['-xzOf', NPM_TGZ, 'package/LICENSE'])).stdout).toBe(fs.readFileSync('LICENSE', 'utf8').trimEnd());
    expect(pj.dependencies).toBeUndefined();
    expect(pj.bin).toEqual({ egressfw: 'dist/pkg/egressfw.mjs' });
    expect(pj.engines).toEqual({ node: '>=18' });
  });

  it('`npm install -g` of it needs no registry; the installed egressfw runs, and its units start that path with this node', async () => {
    const prefix = path.join(tmp, 'npm-prefix');
    const i = await execa('npm', ['install', '-g', '--offline', '--no-audit', '--no-fund', '--prefix', prefix, NPM_TGZ], { reject: false });
    expect(i.exitCode, i.stderr).toBe(0);
    const bin = path.join(prefix, 'bin', 'egressfw');
    expect((await execa(bin, ['--version'])).stdout.trim()).toBe(VERSION);
    const u = await execa(bin, ['install', '--systemd', '--dry-run', '--config', path.resolve('examples/egressfw.yml')], { reject: false });
    const real = fs.realpathSync(bin);
    expect(real).toBe(path.join(prefix, 'lib/node_modules/egressfw/dist/pkg/egressfw.mjs'));
    // the stable path npm links (upgrades replace what it points to), started with this node
    expect(u.stdout).toMatch(new RegExp(`^ExecStart=${process.execPath} ${bin} daemon `, 'm'));
  });
});
