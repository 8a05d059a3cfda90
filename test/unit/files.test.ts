import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { runProxy, type ProxyDeps } from '../../src/commands/proxy.js';
import { GENERATED_MARKER } from '../../src/proxy/render.js';
import { backupOnce, confinedFiles, readText, writeFileAtomic } from '../../src/system/files.js';

// Files written as root: symlinks planted ahead (by anyone who can write in the directory)
// must never make egressfw write, chmod or delete anything elsewhere.
const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});
let root: string;
let outside: string;
let secret: string;
beforeEach(() => {
  root = mkdtempSync(path.join(os.tmpdir(), 'efw-files-'));
  roots.push(root);
  outside = path.join(root, 'outside');
  mkdirSync(outside);
  secret = path.join(outside, 'secret');
  writeFileSync(secret, 'secret\n', { mode: 0o600 });
  chmodSync(secret, 0o600);
});
const mode = (f: string) => statSync(f).mode & 0o7777;
const untouched = () => {
  expect(readFileSync(secret, 'utf8')).toBe('secret\n');
  expect(mode(secret)).toBe(0o600);
};

describe('writeFileAtomic', () => {
  it('a symlink planted at the temp name of an older egressfw (<file>.egressfw-tmp-<pid>) is not followed', async () => {
    const dir = path.join(root, 'w');
    mkdirSync(dir);
    const file = path.join(dir, 'before.rules');
    writeFileSync(file, 'old\n', { mode: 0o640 });
    chmodSync(file, 0o640);
    symlinkSync(secret, `${file}.egressfw-tmp-${process.pid}`);
    await writeFileAtomic(file, 'new\n');
    untouched();
    expect(readFileSync(file, 'utf8')).toBe('new\n');
    expect(mode(file)).toBe(0o640); // the old mode, set on the open file
  });

  it('refuses a target that is a symlink, and a directory that is one', async () => {
    const dir = path.join(root, 'w');
    mkdirSync(dir);
    symlinkSync(secret, path.join(dir, 'state.json'));
    await expect(writeFileAtomic(path.join(dir, 'state.json'), 'x')).rejects.toThrow(/symlink/);
    symlinkSync(outside, path.join(root, 'linkdir'));
    await expect(writeFileAtomic(path.join(root, 'linkdir', 'new.txt'), 'x')).rejects.toThrow(/symlink/);
    untouched();
    expect(readdirSync(outside)).toEqual(['secret']);
    expect(readdirSync(dir)).toEqual(['state.json']); // no temp file left behind
  });

  it('new files get the given mode; no temp files are left; temp names are not predictable', async () => {
    const dir = path.join(root, 'w');
    const file = path.join(dir, 'new.txt');
    await writeFileAtomic(file, 'a');
    expect(mode(file)).toBe(0o644);
    await writeFileAtomic(path.join(dir, 'private'), 'b', 0o600);
    expect(mode(path.join(dir, 'private'))).toBe(0o600);
    expect(readdirSync(dir).sort()).toEqual(['new.txt', 'private']);
  });
});

describe('backupOnce', () => {
  it('does not write through a symlink planted at the backup name, and keeps the first backup', async () => {
    const file = path.join(root, 'before.rules');
    writeFileSync(file, 'pristine\n', { mode: 0o640 });
    symlinkSync(secret, `${file}.egressfw-backup`);
    await backupOnce(file, `${file}.egressfw-backup`);
    untouched();
    const other = path.join(root, 'before6.rules');
    writeFileSync(other, 'pristine6\n', { mode: 0o640 });
    chmodSync(other, 0o640);
    await backupOnce(other, `${other}.egressfw-backup`);
    writeFileSync(other, 'changed\n');
    await backupOnce(other, `${other}.egressfw-backup`);
    expect(readFileSync(`${other}.egressfw-backup`, 'utf8')).toBe('pristine6\n');
    expect(mode(`${other}.egressfw-backup`)).toBe(0o640);
  });

  it('refuses to back up a file that is a symlink (it would copy whatever it points to)', async () => {
    const file = path.join(root, 'before.rules');
    symlinkSync(secret, file);
    await expect(backupOnce(file, `${file}.egressfw-backup`)).rejects.toThrow(/symlink/);
    expect(existsSync(`${file}.egressfw-backup`)).toBe(false);
  });
});

describe('readText', () => {
  it('refuses a FIFO instead of hanging on it', async () => {
    const fifo = path.join(root, 'fifo');
    const { execFileSync } = await import('node:child_process');
    execFileSync('mkfifo', [fifo]);
    await expect(readText(fifo)).rejects.toThrow(/not a regular file/);
    expect(await readText(path.join(root, 'missing'))).toBeNull();
  });
});

describe('proxy --out: writes and deletes stay inside the real out dir', () => {
  const CONFIG = 'allow:\n  - domain: api.example.com\n  - domain: other.example.com\ndns:\n  servers: [192.0.2.53]\nproxy:\n  services: [app]\n';
  function setup() {
    const project = path.join(root, 'project');
    mkdirSync(project);
    writeFileSync(path.join(project, 'compose.yml'), 'services:\n  app: { image: busybox }\n');
    const config = path.join(root, 'egressfw.yml');
    writeFileSync(config, CONFIG);
    return { project, config };
  }
  const deps = (cwd: string): ProxyDeps => ({ ...confinedFiles(path.resolve(cwd, 'egress-proxy')), cwd, out: () => {}, warn: () => {} });

  it('a symlinked nginx/ dir pointing elsewhere: refused, nothing written or deleted there', async () => {
    const { project, config } = setup();
    mkdirSync(path.join(project, 'egress-proxy'));
    symlinkSync(outside, path.join(project, 'egress-proxy', 'nginx'));
    // a file there that looks generated and is no longer in the render: today's code deleted it
    writeFileSync(path.join(outside, 'stale.conf'), `${GENERATED_MARKER}\n`);
    await expect(runProxy({ config, out: 'egress-proxy', force: true }, deps(project))).rejects.toThrow(/symlink/);
    expect(readdirSync(outside).sort()).toEqual(['secret', 'stale.conf']);
    untouched();
    // and nothing was written in the out dir either (all checks come before the first write)
    expect(readdirSync(path.join(project, 'egress-proxy'))).toEqual(['nginx']);
  });

  it('a generated file replaced by a symlink to a 0600 file: refused even with --force, the file keeps its text and mode', async () => {
    const { project, config } = setup();
    expect(await runProxy({ config, out: 'egress-proxy', force: false }, deps(project))).toBe(0);
    const conf = readdirSync(path.join(project, 'egress-proxy', 'nginx'))[0]!;
    rmSync(path.join(project, 'egress-proxy', 'nginx', conf));
    symlinkSync(secret, path.join(project, 'egress-proxy', 'nginx', conf));
    await expect(runProxy({ config, out: 'egress-proxy', force: true }, deps(project))).rejects.toThrow(/symlink/);
    untouched();
    expect(lstatSync(path.join(project, 'egress-proxy', 'nginx', conf)).isSymbolicLink()).toBe(true);
  });

  it('--out itself may be a symlink (the user chose it): files land in its target', async () => {
    const { project, config } = setup();
    const real = path.join(root, 'real-out');
    mkdirSync(real);
    symlinkSync(real, path.join(project, 'egress-proxy'));
    expect(await runProxy({ config, out: 'egress-proxy', force: false }, deps(project))).toBe(0);
    expect(readdirSync(real).sort()).toEqual(['compose.egress.yml', 'nginx']);
  });
});
