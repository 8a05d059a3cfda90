import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import type { SyncDeps } from '../../src/commands/sync.js';
import type { QueryFn } from '../../src/resolve/query.js';
import { setAsideDamaged } from '../../src/system/state.js';
import path from 'node:path';
import type { Family } from '../../src/net/ip.js';
import { UFW_FILE } from '../../src/plan/kernel-names.js';
import type { Exec, ExecResult } from '../../src/system/exec.js';
import { backupOnce, readText, writeFileAtomic } from '../../src/system/files.js';
import type { FakeKernel } from './fake-kernel.js';

const ok = (stdout = ''): ExecResult => ({ stdout, stderr: '', exitCode: 0 });
const fail = (stderr: string): ExecResult => ({ stdout: '', stderr, exitCode: 1 });
const POLICY: Record<string, string> = { allow: 'ACCEPT', deny: 'DROP', reject: 'REJECT' };

/**
 * An Exec that runs egressfw's commands against a FakeKernel, in argv order;
 * `before` runs first for every command (block it, fail it, count it).
 */
export function kernelExec(k: FakeKernel, before?: (argv: readonly string[]) => Promise<ExecResult | void>): { exec: Exec; calls: string[] } {
  const calls: string[] = [];
  const exec: Exec = async (argv, opts = {}) => {
    calls.push(argv.join(' '));
    const injected = await before?.(argv);
    if (injected) return injected;
    const input = opts.input ?? '';
    try {
      const [cmd, ...args] = argv;
      if (cmd === 'iptables' && args[0] === '-V') return ok('iptables v1.8.9 (nf_tables)\n');
      if (cmd === 'ipset' && args[0] === 'restore') k.ipsetRestore(input);
      else if (cmd === 'ipset' && args[0] === 'destroy') {
        if (!k.sets.has(args[1]!)) return fail(`ipset v7.17: The set with the given name does not exist`);
        k.ipsetRestore(`destroy ${args[1]}`);
      } else if (cmd === 'iptables-restore' || cmd === 'ip6tables-restore') k.iptablesRestore((cmd === 'iptables-restore' ? 4 : 6) as Family, input);
      else if (cmd === 'nft' && args.join(' ') === '-f -') k.nftScript(input);
      else if (cmd === 'nft' && args[0] === '-j' && args[1] === '-f') k.nftJson(readFileSync(args[2]!, 'utf8'));
      else if (cmd === 'nft' && args.join(' ') === `-j list table inet egressfw`) {
        if (!k.nft) return fail('Error: No such file or directory; did you mean table');
        return ok(JSON.stringify({ nftables: k.observeNft()!.raw }));
      } else if (cmd === 'ufw' && args[0] === 'default') {
        k.ufw.outputPolicy = POLICY[args[1]!]!;
        k.ufwReload();
      } else if (cmd === 'ufw' && args.join(' ') === '--force enable') {
        k.ufw.enabled = true;
        k.ufwReload();
      } else if (cmd === 'ufw' && args.join(' ') === '--force disable') k.ufw.enabled = false;
      else if (cmd === 'ufw' && args[0] === 'reload') k.ufwReload();
      else if (cmd === 'conntrack' && args.join(' ') === '-L -o save') return ok(k.conntrack.map((l) => `${l}\n`).join(''));
      else if (cmd === 'conntrack' && args[0] === '-R' && args.length === 2) return ok(k.conntrackDelete(readFileSync(args[1]!, 'utf8')));
      else if (cmd === 'ip' && args.join(' ') === '-j -d addr show') return ok(JSON.stringify(k.ifaces));
      else return { stdout: '', stderr: `${cmd}: not in the fake`, exitCode: 127 };
      return ok();
    } catch (e) {
      return fail((e as Error).message);
    }
  };
  return { exec, calls };
}

/**
 * File deps for orchestrator tests: the ufw files live in the fake kernel; every other path must be
 * inside `dir` (a temp dir) and goes to the real implementation. Anything else is a test bug.
 */
export function fakeFiles(k: FakeKernel, dir: string) {
  const ufwFamily = (f: string): Family | null => (f === UFW_FILE[4] ? 4 : f === UFW_FILE[6] ? 6 : null);
  const inside = (f: string) => {
    if (path.relative(dir, f).startsWith('..')) throw new Error(`test: ${f} is outside ${dir}`);
    return f;
  };
  return {
    readText: async (f: string) => {
      const fam = ufwFamily(f);
      if (fam) return k.ufw.files[fam];
      if (f === '/proc/net/ip_tables_names') return null;
      return readText(inside(f));
    },
    writeFileAtomic: async (f: string, text: string) => {
      const fam = ufwFamily(f);
      if (fam) k.ufw.files[fam] = text;
      else await writeFileAtomic(inside(f), text);
    },
    backupOnce: async (f: string, backup: string) => {
      if (ufwFamily(f)) return;
      await backupOnce(inside(f), inside(backup));
    },
  };
}

/** A fresh temp dir per test (removed after the file): `const dirs = tempDirs('efw-x-')`, then `dirs.current()`. */
export function tempDirs(prefix: string, hooks: { beforeEach: (fn: () => void) => void; afterAll: (fn: () => void) => void }) {
  const roots: string[] = [];
  let dir = '';
  hooks.afterAll(() => {
    for (const r of roots) rmSync(r, { recursive: true, force: true });
  });
  hooks.beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), prefix));
    roots.push(dir);
  });
  return { current: () => dir };
}

/** Sync deps on the fake kernel: root, every tool present, no lock contention, a fixed clock. */
export function fakeSyncDeps(k: FakeKernel, dir: string, exec: Exec, query: QueryFn) {
  const out: string[] = [];
  const warn: string[] = [];
  const deps: SyncDeps = {
    query,
    exec,
    ...fakeFiles(k, dir),
    onPath: async () => true,
    observe: async () => ({ observed: k.observe(), missingTools: [] }),
    acquireLock: async () => async () => {},
    setAside: setAsideDamaged,
    now: () => 1_750_000_000,
    isRoot: true,
    out: (t) => out.push(t),
    warn: (t) => warn.push(t),
  };
  return { deps, out, warn };
}
