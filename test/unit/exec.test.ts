import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { onPath, realExec, SYSTEM_PATH } from '../../src/system/exec.js';

// egressfw runs as root: the caller's PATH and environment must not choose which binaries run.
let dir: string;
const savedPath = process.env.PATH;
const savedCwd = process.cwd();

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'efw-exec-'));
  // A planted `env` and `ipset` in the current directory and in a PATH dir: each leaves a mark if run.
  for (const name of ['env', 'efw-planted-tool']) {
    const f = path.join(dir, name);
    writeFileSync(f, `#!/bin/sh\ntouch ${JSON.stringify(path.join(dir, `ran-${name}`))}\necho planted\n`);
    chmodSync(f, 0o755);
  }
});
afterEach(() => {
  process.env.PATH = savedPath;
  process.chdir(savedCwd);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('exec: fixed system PATH and a clean environment', () => {
  it('an empty PATH entry (= the current directory) does not run ./env from there', async () => {
    process.chdir(dir);
    process.env.PATH = `:${dir}:/usr/bin:/bin`;
    const r = await realExec(['env']);
    expect(existsSync(path.join(dir, 'ran-env'))).toBe(false);
    expect(r.stdout).not.toContain('planted');
    expect(r.exitCode).toBe(0);
  });

  it('children see only LC_ALL=C and the system PATH, nothing of the caller environment', async () => {
    process.env.EFW_SECRET_TEST = 'leak';
    try {
      const r = await realExec(['env']);
      expect(r.stdout.trim().split('\n').sort()).toEqual(['LC_ALL=C', `PATH=${SYSTEM_PATH}`]);
    } finally {
      delete process.env.EFW_SECRET_TEST;
    }
  });

  it('a tool that is not in the system dirs counts as not installed, wherever the caller PATH points', async () => {
    process.env.PATH = `${dir}:/usr/bin:/bin`;
    expect(await onPath('efw-planted-tool')).toBe(false);
    const r = await realExec(['efw-planted-tool']);
    expect(r.exitCode).toBe(127);
    expect(r.stderr).toMatch(/not installed/);
    expect(existsSync(path.join(dir, 'ran-efw-planted-tool'))).toBe(false);
    expect(await onPath('env')).toBe(true);
  });

  it('a relative or path-like program name is refused rather than looked up', async () => {
    process.chdir(dir);
    for (const argv0 of ['./env', 'sub/env', '../env']) {
      const r = await realExec([argv0]);
      expect(r.exitCode).toBe(127);
    }
    expect(existsSync(path.join(dir, 'ran-env'))).toBe(false);
  });
});
