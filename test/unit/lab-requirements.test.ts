import { execa } from 'execa';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { inCi, labBlockers } from '../lab/requirements.js';

// CI must not go green by skipping the real-kernel lab suites.
const vitest = path.resolve('node_modules/vitest/vitest.mjs');
const probe = (env: Record<string, string>) =>
  execa(process.execPath, [vitest, 'run', '--config', 'test/unit/fixtures/lab-requirements/vitest.config.ts'], { reject: false, env: { ...env, FORCE_COLOR: '0', NO_COLOR: '1' } });

describe('lab suites that cannot run', () => {
  it('under CI=true, a lab suite that cannot run (not root) fails the run, naming why', async () => {
    const r = await probe({ CI: 'true', EFW_LAB_PRETEND_UID: '1000' });
    expect(r.exitCode).toBe(1);
    expect(r.stdout + r.stderr).toMatch(/lab suite "probe lab suite" cannot run: not root/);
  }, 60_000);

  it('outside CI it is skipped with the reason printed', async () => {
    const r = await probe({ CI: '', EFW_LAB_PRETEND_UID: '1000' });
    expect(r.exitCode).toBe(0);
    expect(r.stdout + r.stderr).toMatch(/skipped: not root/);
    expect(r.stdout).toMatch(/1 skipped/);
  }, 60_000);

  it('every lab suite goes through labDescribe (none skips itself)', () => {
    const files = readdirSync('test/lab').filter((f) => f.endsWith('.test.ts'));
    expect(files.length).toBeGreaterThanOrEqual(4);
    for (const f of files) {
      const text = readFileSync(path.join('test/lab', f), 'utf8');
      expect(text, f).toMatch(/^labDescribe\(/m);
      expect(text, f).not.toMatch(/describe\.(skip|skipIf|runIf)\b|\bit\.(skip|skipIf)\b/);
    }
  });

  it('names the missing tools with their packages and the install script', () => {
    const has = (t: string) => !['ipset', 'docker-compose'].includes(t);
    expect(labBlockers({ docker: true, compose: true }, { uid: 0, has })).toEqual([
      'missing: ipset, docker-compose (packages ipset, docker-compose): run `sudo bash scripts/install-deps.sh`',
    ]);
    expect(labBlockers({}, { uid: 0, has: () => true })).toEqual([]);
    expect(labBlockers({}, { uid: 1000, has: () => true })[0]).toMatch(/^not root/);
    expect([inCi({ CI: 'true' }), inCi({ CI: '1' }), inCi({ CI: 'false' }), inCi({ CI: '' }), inCi({})]).toEqual([true, true, false, false, false]);
  });
});
