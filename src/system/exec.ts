import { execa } from 'execa';
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import path from 'node:path';

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** 127 when the program is not installed */
  exitCode: number;
}

/**
 * The one door to processes. Always an argument array, never a shell string;
 * commands get their input on stdin. Tests inject fakes; the lab uses the real one.
 */
export type Exec = (argv: readonly string[], opts?: { input?: string }) => Promise<ExecResult>;

/**
 * Where egressfw looks for iptables, ipset, ufw, ...: a fixed list, never the
 * caller's PATH. It runs as root: a PATH with an empty entry (the current
 * directory) or a user-writable dir first would otherwise choose what runs.
 */
export const SYSTEM_DIRS = ['/usr/sbin', '/usr/bin', '/sbin', '/bin'] as const;
export const SYSTEM_PATH = SYSTEM_DIRS.join(':');
/** All a child gets: messages in a parseable language and the system PATH (ufw runs iptables through it). */
export const CHILD_ENV: Readonly<Record<string, string>> = Object.freeze({ LC_ALL: 'C', PATH: SYSTEM_PATH });

/** Absolute path of `cmd` in the system dirs (an executable regular file), or null. Bare names only. */
export async function resolveTool(cmd: string): Promise<string | null> {
  if (!cmd || cmd.includes('/') || cmd === '.' || cmd === '..') return null;
  for (const dir of SYSTEM_DIRS) {
    const file = path.join(dir, cmd);
    try {
      if (!(await stat(file)).isFile()) continue;
      await access(file, constants.X_OK);
      return file;
    } catch {
      /* keep looking */
    }
  }
  return null;
}

export const realExec: Exec = async (argv, opts = {}) => {
  const [cmd, ...args] = argv;
  if (!cmd) throw new Error('exec: empty argv');
  const file = await resolveTool(cmd);
  if (!file) return { stdout: '', stderr: `${cmd}: not installed (looked in ${SYSTEM_PATH})`, exitCode: 127 };
  const r = await execa(file, args, {
    input: opts.input ?? '',
    reject: false,
    stripFinalNewline: false,
    // the caller's environment (PATH, LD_PRELOAD, PYTHONPATH for ufw, ...) stays out
    env: { ...CHILD_ENV },
    extendEnv: false,
    timeout: 120_000,
  });
  const notFound = (r as { code?: string }).code === 'ENOENT';
  return { stdout: r.stdout ?? '', stderr: notFound ? `${cmd}: not installed` : (r.stderr ?? ''), exitCode: notFound ? 127 : (r.exitCode ?? 1) };
};

/** Is `cmd` installed in the system dirs (no spawn)? */
export async function onPath(cmd: string): Promise<boolean> {
  return (await resolveTool(cmd)) !== null;
}
