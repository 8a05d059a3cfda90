import { execa } from 'execa';
import { access, constants } from 'node:fs/promises';
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

export const realExec: Exec = async (argv, opts = {}) => {
  const [file, ...args] = argv;
  if (!file) throw new Error('exec: empty argv');
  const r = await execa(file, args, {
    input: opts.input ?? '',
    reject: false,
    stripFinalNewline: false,
    env: { LC_ALL: 'C' },
    timeout: 120_000,
  });
  const notFound = (r as { code?: string }).code === 'ENOENT';
  return { stdout: r.stdout ?? '', stderr: notFound ? `${file}: not installed` : (r.stderr ?? ''), exitCode: notFound ? 127 : (r.exitCode ?? 1) };
};

/** Is `cmd` on PATH (no spawn)? */
export async function onPath(cmd: string, envPath = process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'): Promise<boolean> {
  for (const dir of envPath.split(':')) {
    if (!dir) continue;
    try {
      await access(path.join(dir, cmd), constants.X_OK);
      return true;
    } catch {
      /* keep looking */
    }
  }
  return false;
}
