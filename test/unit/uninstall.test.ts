import { execa } from 'execa';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { runUninstall } from '../../src/commands/uninstall.js';
import { buildDesired, ufwBlock } from '../../src/plan/desired.js';
import { diff } from '../../src/plan/diff.js';
import { parseConfig } from '../../src/config/load.js';
import { removeStateFiles, setAsideDamaged } from '../../src/system/state.js';
import { fixture } from '../support/files.js';
import { FakeKernel } from '../support/fake-kernel.js';
import { fakeFiles, kernelExec } from '../support/fake-exec.js';

// uninstall removes what egressfw wrote and nothing else: `--state-dir /var/lib` must not delete /var/lib.
const NOW = 1_750_000_000;
const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'efw-uninstall-'));
  roots.push(dir);
});

function deps(k: FakeKernel) {
  const out: string[] = [];
  const files = fakeFiles(k, dir);
  const d = {
    query: async () => {
      throw new Error('no DNS in uninstall');
    },
    exec: kernelExec(k).exec,
    ...files,
    onPath: async () => true,
    observe: async () => ({ observed: k.observe(), missingTools: [] }),
    acquireLock: async () => async () => {},
    setAside: setAsideDamaged,
    removeStateFiles,
    removeFile: async () => {},
    now: () => NOW,
    isRoot: true,
    out: (t: string) => out.push(t),
    warn: (t: string) => out.push(t),
  };
  const install = { exec: d.exec, readText: async () => null, writeFileAtomic: async () => {}, isRoot: true, systemdRunning: async () => false, removeFile: async () => {}, node: '', cli: '', out: d.out };
  return { d, install, out };
}

/** a kernel where egressfw is installed, ufw outgoing was ACCEPT before it */
function installed(): FakeKernel {
  const k = new FakeKernel();
  k.ufw.files = { 4: fixture('before.rules'), 6: fixture('before6.rules') };
  const config = parseConfig('allow: [{ domain: api.example.com }]\ndns: { servers: [198.51.100.53] }', 'x');
  k.apply(diff(buildDesired(config, [{ name: 'api.example.com', status: 'ok', detail: '', ips: [{ ip: '203.0.113.1', family: 4, source: 'answer', until: 0 }] }], [{ host: '198.51.100.53', port: 53 }]), k.observe()));
  expect(k.ufw.files[4]).toContain(ufwBlock(4, [{ host: '198.51.100.53', port: 53 }]));
  return k;
}
const STATE = JSON.stringify({ version: 1, domains: {}, lastSync: { at: NOW - 5, ok: true, message: 'x' }, original: { ufwOutputPolicy: 'ACCEPT', ufwEnabled: true } });

describe('uninstall: the state dir', () => {
  it('a dir holding other files (like --state-dir /var/lib): only egressfw\'s files go, the rest stays and is named', async () => {
    const stateDir = path.join(dir, 'lib');
    mkdirSync(path.join(stateDir, 'dpkg'), { recursive: true });
    writeFileSync(path.join(stateDir, 'dpkg', 'status'), 'keep');
    writeFileSync(path.join(stateDir, 'notes.txt'), 'keep');
    writeFileSync(path.join(stateDir, 'state.json'), STATE);
    writeFileSync(path.join(stateDir, 'state.json.damaged-20250101T000000Z'), '{');
    writeFileSync(path.join(stateDir, '.state.json.egressfw-tmp-0123456789abcdef'), '');
    const k = installed();
    const { d, install, out } = deps(k);
    expect(await runUninstall({ stateDir, dryRun: false }, d, install)).toBe(0);
    expect(readdirSync(stateDir).sort()).toEqual(['dpkg', 'notes.txt']);
    expect(existsSync(path.join(stateDir, 'dpkg', 'status'))).toBe(true);
    expect(out.join('')).toMatch(/left .*lib.* in place: it holds files egressfw did not write: dpkg, notes\.txt/);
    expect(k.ufw.outputPolicy).toBe('ACCEPT');
    expect(k.ufw.files[4]).toBe(fixture('before.rules'));
  });

  it('nothing of egressfw there at all: says so and deletes nothing', async () => {
    const stateDir = path.join(dir, 'lib');
    mkdirSync(stateDir);
    writeFileSync(path.join(stateDir, 'other'), 'keep');
    const { d, install, out } = deps(new FakeKernel());
    expect(await runUninstall({ stateDir, dryRun: false }, d, install)).toBe(0);
    expect(readdirSync(stateDir)).toEqual(['other']);
    expect(out.join('')).toMatch(/nothing of egressfw was installed/);
  });

  it('only egressfw\'s files: they and the directory go; dry run first changes nothing', async () => {
    const stateDir = path.join(dir, 'egressfw');
    mkdirSync(stateDir);
    writeFileSync(path.join(stateDir, 'state.json'), STATE);
    const k = installed();
    const { d, install, out } = deps(k);
    const kernelBefore = k.observe();
    expect(kernelBefore.nft).not.toBeNull(); // something to remove
    expect(await runUninstall({ stateDir, dryRun: true }, d, install)).toBe(0);
    expect(out.join('')).toMatch(new RegExp(`remove ${stateDir}/state\\.json`));
    expect(out.join('')).toMatch(/nft: delete table inet egressfw/);
    expect(readdirSync(stateDir)).toEqual(['state.json']);
    expect(k.observe()).toEqual(kernelBefore); // the dry run changed nothing in the kernel either
    expect(await runUninstall({ stateDir, dryRun: false }, d, install)).toBe(0);
    expect(existsSync(stateDir)).toBe(false);
    expect(k.observe()).not.toEqual(kernelBefore);
    expect(k.observe().nft).toBeNull();
  });

  it('a damaged state.json: the ufw policy is recovered from it (or from a copy set aside) and put back', async () => {
    const stateDir = path.join(dir, 'egressfw');
    mkdirSync(stateDir);
    writeFileSync(path.join(stateDir, 'state.json'), '{"version":1,"domains":{}}');
    writeFileSync(path.join(stateDir, 'state.json.damaged-20250101T000000Z'), '{"version":1,"original":{"ufwOutputPolicy":"ACCEPT","ufwEnabled":true},"domains":{"x": garbage');
    const k = installed();
    k.ufw.outputPolicy = 'REJECT';
    const { d, install } = deps(k);
    expect(await runUninstall({ stateDir, dryRun: false }, d, install)).toBe(0);
    expect(k.ufw.outputPolicy).toBe('ACCEPT');
  });
});

describe('uninstall (CLI)', () => {
  it('accepts --config like every other command', async () => {
    const cli = path.resolve('dist/cli.js');
    const asNobody = process.getuid?.() === 0 ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] : [];
    const argv = [...asNobody, process.execPath, cli, 'uninstall', '--config', '/nonexistent/egressfw.yml', '--state-dir', path.join(dir, 's'), '--dry-run'];
    const r = await execa(argv[0]!, argv.slice(1), { reject: false });
    expect(r.stderr).not.toMatch(/unknown option/);
    expect(r.exitCode).toBe(1); // not root: the usual message, not a usage error
    expect(r.stderr).toMatch(/needs root/);
  });
});
