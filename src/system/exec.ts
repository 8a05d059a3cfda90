import { execa } from 'execa';
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
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

/**
 * Absolute path of `cmd` in `dirs` (an executable regular file), or null. Bare
 * names only; the running node (process.execPath) is the one absolute path
 * allowed, for the daemon's gate child.
 */
export function toolPath(cmd: string, dirs: readonly string[] = SYSTEM_DIRS): string | null {
  if (cmd === process.execPath) return cmd;
  if (!cmd || cmd.includes('/') || cmd === '.' || cmd === '..') return null;
  for (const dir of dirs) {
    const file = path.join(dir, cmd);
    try {
      if (!statSync(file).isFile()) continue;
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      /* keep looking */
    }
  }
  return null;
}

export interface SpawnOptions {
  stdio?: StdioOptions;
  /** where to look for argv[0] (tests put a fake tool in a directory of their own); default SYSTEM_DIRS */
  dirs?: readonly string[];
  /** variables the child needs besides CHILD_ENV (DOCKER_HOST for the gate); never the caller's whole environment */
  env?: Readonly<Record<string, string>>;
}

/**
 * The door for long-lived children (the gate's `nft -i`, the gate itself, flock):
 * argv[0] found in the fixed tool directories, never through PATH, and the
 * clean environment (the caller's LD_PRELOAD, NODE_OPTIONS, PATH stay out).
 * Throws when the tool is not installed.
 */
export function spawnTool(argv: readonly string[], opts: SpawnOptions = {}): ChildProcess {
  const [cmd, ...args] = argv;
  const file = cmd === undefined ? null : toolPath(cmd, opts.dirs);
  if (!file) throw new Error(`${cmd ?? '(empty argv)'}: not installed (looked in ${(opts.dirs ?? SYSTEM_DIRS).join(':')})`);
  return spawn(file, args, { stdio: opts.stdio ?? 'pipe', env: { ...opts.env, ...CHILD_ENV } });
}

export const realExec: Exec = async (argv, opts = {}) => {
  const [cmd, ...args] = argv;
  if (!cmd) throw new Error('exec: empty argv');
  const file = toolPath(cmd);
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
  return toolPath(cmd) !== null;
}
