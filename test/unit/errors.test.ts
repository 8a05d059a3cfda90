import { execa } from 'execa';
import { chmodSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EgressfwError, FileError, PreconditionError } from '../../src/errors.js';
import { startGateServer } from '../../src/gate/server.js';
import { readText, writeFileAtomic } from '../../src/system/files.js';
import { setAsideDamaged } from '../../src/system/state.js';

// Every failure a user can cause reaches the top as a typed error naming the fix, never "unexpected error" and a
// stack; a file that exists but cannot be read is never taken for a missing one.
const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});
const tmp = () => {
  const d = mkdtempSync(path.join(os.tmpdir(), 'efw-errors-'));
  roots.push(d);
  return d;
};

describe('typed errors for what a user can fix', () => {
  it('readText: missing is null; a file that cannot be read is a FileError, not "missing"', async () => {
    const d = tmp();
    expect(await readText(path.join(d, 'none.json'))).toBeNull();
    expect(await readText(path.join(d, 'none', 'deeper.json'))).toBeNull();
    symlinkSync('loop-b', path.join(d, 'loop-a'));
    symlinkSync('loop-a', path.join(d, 'loop-b'));
    const e = await readText(path.join(d, 'loop-a')).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(FileError);
    expect((e as Error).message).toMatch(/^cannot read .*loop-a: a symlink is in the way/);
  });

  it('a state.json that is there but unreadable (not root) stops plan with exit 1 and the fix, instead of a first run', async () => {
    const d = tmp();
    chmodSync(d, 0o755);
    const config = path.join(d, 'egressfw.yml');
    writeFileSync(config, 'allow: []\ndns: {servers: [198.51.100.53]}\n', { mode: 0o644 });
    const stateDir = path.join(d, 'state');
    await writeFileAtomic(path.join(stateDir, 'state.json'), '{"version":1,"domains":{}}\n', 0o600);
    // plan as nobody (the test runs as root, which may read anything)
    const r = await execa('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, path.resolve('dist/cli.js'), 'plan', '--config', config, '--state-dir', stateDir], { reject: false });
    expect(r.stderr).not.toMatch(/unexpected error|\n\s+at /);
    expect(r.stderr).toContain(`cannot read ${path.join(stateDir, 'state.json')}: permission denied: run egressfw with sudo`);
    expect(r.exitCode).toBe(1);
  });

  it('a state write that fails is a FileError naming the file and the fix', async () => {
    const d = tmp();
    writeFileSync(path.join(d, 'not-a-dir'), 'x');
    const file = path.join(d, 'not-a-dir', 'state', 'state.json');
    const e = await writeFileAtomic(file, '{}\n').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(FileError);
    expect((e as Error).message).toBe(`cannot write ${file}: a component of the path is not a directory: fix the path`);
    // setting a damaged file aside: the same
    const aside = await setAsideDamaged(path.join(d, 'missing-state.json'), 1_750_000_000).catch((x: unknown) => x);
    expect(aside).toBeInstanceOf(EgressfwError);
  });

  it("the gate's port in use: a PreconditionError that says so and names dns.gate.port", async () => {
    const holder = net.createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
    const port = (holder.address() as net.AddressInfo).port;
    try {
      const e = await startGateServer({ listen: ['127.0.0.1'], port, handle: () => null, warn: () => {} }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(PreconditionError);
      expect((e as Error).message).toBe(`the DNS gate cannot listen: 127.0.0.1:${port}: EADDRINUSE; another program uses the port (\`ss -lunp\` shows which): stop it, or set dns.gate.port to a free port`);
    } finally {
      holder.close();
    }
  });
});
