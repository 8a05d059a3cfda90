// The sandbox of the systemd units (src/schedule/units.ts), rated by systemd itself, and what
// `install --remove` / `uninstall` do with units (fake systemctl).
import { execa } from 'execa';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { removeInstalledSteps, runInstall, type InstallDeps } from '../../src/commands/install.js';
import { describeSteps, executeSteps } from '../../src/system/steps.js';

/** install --remove's steps through the shared executor: what they said. */
async function removeInstalled(d: InstallDeps, dryRun: boolean): Promise<string[]> {
  const steps = await removeInstalledSteps(d);
  await executeSteps(steps, d, { dryRun, hint: '' });
  return describeSteps(steps);
}
import { describeWhere } from '../lab/requirements.js';
import { PACKAGE_HEADER, PACKAGE_UNIT_DIR, renderBootService, renderService, type InstallPaths } from '../../src/schedule/units.js';

const analyze = await execa('systemd-analyze', ['--version'], { reject: false }).catch(() => ({ exitCode: 127 }));
const hasAnalyze = analyze.exitCode === 0;
const dir = mkdtempSync(path.join(tmpdir(), 'egressfw-units-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `systemd-analyze security --offline=yes` of one unit file: its overall exposure (0 best, 10 worst). */
async function exposure(name: string, text: string): Promise<{ score: number; out: string }> {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  const r = await execa('systemd-analyze', ['security', '--offline=yes', '--no-pager', file], { reject: false });
  const m = /Overall exposure level for \S+: (\d+\.\d+)/.exec(r.stdout);
  if (!m) throw new Error(`systemd-analyze security gave no score (exit ${r.exitCode}): ${r.stderr}${r.stdout}`);
  return { score: Number(m[1]), out: r.stdout };
}

const variants: [string, InstallPaths][] = [
  ['the .deb', { cli: '/usr/bin/egressfw', config: '/etc/egressfw/egressfw.yml', stateDir: '/var/lib/egressfw' }],
  ['a source checkout', { node: '/usr/bin/node', cli: '/opt/egressfw/dist/cli.js', config: '/etc/egressfw/egressfw.yml', stateDir: '/var/lib/egressfw' }],
  ['node and config under /root', { node: '/root/.nvm/versions/node/v20.0.0/bin/node', cli: '/root/egressfw/dist/pkg/egressfw.mjs', config: '/root/egressfw.yml', stateDir: '/srv/egressfw' }],
];

describeWhere('systemd-analyze security --offline=yes rates the units at most 4.0 (was 9.6 UNSAFE)', hasAnalyze ? [] : ['systemd-analyze is not installed: `apt-get install systemd` (scripts/install-deps.sh does)'], () => {
  for (const [label, p] of variants) {
    it(`${label}: egressfw.service and egressfw-boot.service`, async () => {
      for (const [name, text] of [['egressfw.service', renderService(p)], ['egressfw-boot.service', renderBootService(p)]] as const) {
        const { score, out } = await exposure(name, text);
        expect(score, out).toBeLessThanOrEqual(4.0);
        // the parts that matter most are really in effect, as systemd reads them
        expect(out).toMatch(/✓ NoNewPrivileges=/);
        expect(out).toMatch(/✓ CapabilityBoundingSet=~CAP_SYS_ADMIN/);
        expect(out).toMatch(/✓ SystemCallFilter=~@mount/);
        expect(out).toMatch(/✓ RestrictAddressFamilies=~AF_PACKET/);
      }
    });
  }
  it('the unit without its sandbox scores worse than 9 (the analysis does see the difference)', async () => {
    const bare = renderService(variants[0]![1]).replace(/^(CapabilityBoundingSet|AmbientCapabilities|NoNewPrivileges|Protect\w+|ReadWritePaths|StateDirectory|Private\w+|Restrict\w+|LockPersonality|KeyringMode|UMask|SystemCall\w+)=.*\n/gm, '');
    expect((await exposure('bare.service', bare)).score).toBeGreaterThan(9);
  });
});

describe('unit sandbox follows the paths', () => {
  const p = variants[0]![1];
  it('default state under /var/lib: systemd creates it (StateDirectory=); elsewhere it must exist (ReadWritePaths=)', () => {
    expect(renderService(p)).toMatch(/^StateDirectory=egressfw$/m);
    expect(renderService({ ...p, stateDir: '/srv/egressfw' })).toMatch(/^ReadWritePaths=\/srv\/egressfw$/m);
  });
  it('homes hidden, unless egressfw or its config lives there (then read-only); private /tmp unless it lives there', () => {
    expect(renderService(p)).toMatch(/^ProtectHome=yes$/m);
    expect(renderService(variants[2]![1])).toMatch(/^ProtectHome=read-only$/m);
    expect(renderService(p)).toMatch(/^PrivateTmp=yes$/m);
    expect(renderService({ ...p, config: '/var/tmp/lab/egressfw.yml' })).toMatch(/^PrivateTmp=no$/m);
  });
  it('a self-starting CLI (the .deb) is started alone; otherwise node + script', () => {
    expect(renderService(p)).toMatch(/^ExecStart=\/usr\/bin\/egressfw daemon /m);
    expect(renderService(variants[1]![1])).toMatch(/^ExecStart=\/usr\/bin\/node \/opt\/egressfw\/dist\/cli\.js daemon /m);
  });
});

describe('install --remove / uninstall with the units the .deb ships', () => {
  function deps(files: Record<string, string>, systemd = true) {
    const calls: string[][] = [];
    const d: InstallDeps = {
      exec: async (argv) => (calls.push([...argv]), { stdout: '', stderr: '', exitCode: 0 }),
      readText: async (f) => files[f] ?? null,
      writeFileAtomic: async () => {},
      isRoot: true,
      systemdRunning: async () => systemd,
      cli: '/usr/bin/egressfw',
      out: () => {},
      removeFile: async () => {},
    };
    return { d, calls };
  }
  const shipped = {
    [path.join(PACKAGE_UNIT_DIR, 'egressfw.service')]: `${PACKAGE_HEADER}\n[Unit]\n`,
    [path.join(PACKAGE_UNIT_DIR, 'egressfw-boot.service')]: `${PACKAGE_HEADER}\n[Unit]\n`,
  };

  it('disables both, stops only the daemon (docker.service requires egressfw-boot: stopping it would stop Docker)', async () => {
    const { d, calls } = deps(shipped);
    const done = await removeInstalled(d, false);
    expect(calls).toEqual([['systemctl', 'disable', 'egressfw.service', 'egressfw-boot.service'], ['systemctl', 'stop', 'egressfw.service'], ['systemctl', 'daemon-reload']]);
    expect(done).toEqual(['disable egressfw.service and stop it (shipped by the package; its file stays)', 'disable egressfw-boot.service (shipped by the package; its file stays)']);
  });
  it('dry run and no systemd: nothing is called', async () => {
    const a = deps(shipped);
    expect(await removeInstalled(a.d, true)).toHaveLength(2);
    const b = deps(shipped, false);
    expect(await removeInstalled(b.d, false)).toEqual([]);
    expect([...a.calls, ...b.calls]).toEqual([]);
  });
  it('unit files not shipped by the package (no header) are left alone', async () => {
    const { d, calls } = deps({ [path.join(PACKAGE_UNIT_DIR, 'egressfw.service')]: '[Unit]\n' });
    expect(await removeInstalled(d, false)).toEqual([]);
    expect(calls).toEqual([]);
  });
  it('install --systemd refuses a state dir outside /var/lib that does not exist (the sandbox could not make it writable)', async () => {
    const { d } = deps({});
    await expect(runInstall({ config: 'examples/egressfw.yml', stateDir: '/nonexistent/egressfw', cron: false, systemd: true, remove: false, dryRun: false }, d)).rejects.toThrow(/does not exist; create it/);
  });
});

describe('install --cron and the DNS gate', () => {
  async function install(yaml: string, cron: boolean) {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(path.join(tmpdir(), 'efw-install-'));
    writeFileSync(path.join(dir, 'egressfw.yml'), yaml);
    const written = new Map<string, string>();
    const out: string[] = [];
    const d: InstallDeps = {
      exec: async () => ({ stdout: '', stderr: '', exitCode: 0 }),
      readText: async () => null,
      writeFileAtomic: async (f, t) => void written.set(f, t),
      isRoot: true,
      systemdRunning: async () => false,
      cli: '/usr/bin/egressfw',
      out: (t) => void out.push(t),
      removeFile: async () => {},
    };
    const run = runInstall({ config: path.join(dir, 'egressfw.yml'), stateDir: dir, cron, systemd: !cron, remove: false, dryRun: false }, d);
    return { run, written, out, dir };
  }

  it('refuses dns.gate.enabled: true (cron runs no gate: containers would have no DNS), writing nothing', async () => {
    const r = await install('dns: { gate: { enabled: true } }\n', true);
    await expect(r.run).rejects.toThrow(/cron runs no DNS gate \(containers would have no DNS at all\): use --systemd/);
    expect(r.written.size).toBe(0);
  });

  it('unset: installs, marks the scheduler as cron and says DNS stays open; --systemd marks it daemon', async () => {
    const c = await install('allow: [{ domain: api.example.com }]\n', true);
    expect(await c.run).toBe(0);
    expect(c.written.get(path.join(c.dir, 'scheduler'))).toBe('cron\n');
    expect(c.out.join('')).toMatch(/cron mode runs no DNS gate: DNS stays an open channel/);
    const s = await install('allow: [{ domain: api.example.com }]\n', false);
    expect(await s.run).toBe(0);
    expect(s.written.get(path.join(s.dir, 'scheduler'))).toBe('daemon\n');
  });
});
