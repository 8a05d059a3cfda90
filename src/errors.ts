/**
 * Typed errors. src/cli.ts maps each kind to an exit code in one place;
 * the message always names the fix.
 */
export class EgressfwError extends Error {
  readonly exitCode: number = 1;
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** Bad config file: every problem listed with its path. Exit 2. */
export class ConfigError extends EgressfwError {
  override readonly exitCode = 2;
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`${file}: invalid config (nothing was changed):\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

/** Bad command line. Exit 2. */
export class UsageError extends EgressfwError {
  override readonly exitCode = 2;
}

/** A system precondition is not met (not root, tool missing, lock held...). Exit 1. */
export class PreconditionError extends EgressfwError {}

/** A command we ran failed. Exit 1. */
export class CommandError extends EgressfwError {
  constructor(
    readonly argv: readonly string[],
    readonly exitStatus: number | undefined,
    readonly stderr: string,
    hint = '',
  ) {
    super(`\`${argv.join(' ')}\` failed${exitStatus === undefined ? '' : ` (exit ${exitStatus})`}: ${stderr.trim() || 'no output'}${hint ? `\n${hint}` : ''}`);
  }
}

/** Stopped by SIGINT/SIGTERM (what was applied is rolled back first). Exit 128 + the signal number, as shells report it. */
export class InterruptedError extends EgressfwError {
  override readonly exitCode: number;
  constructor(signal: 'SIGINT' | 'SIGTERM', message: string) {
    super(message);
    this.exitCode = signal === 'SIGINT' ? 130 : 143;
  }
}

const FILE_FIX: Record<string, string> = {
  EACCES: 'permission denied: run egressfw with sudo, or check the owner and mode of the file and its directory',
  EPERM: 'operation not permitted: run egressfw with sudo, or check the file\'s attributes (chattr)',
  EROFS: 'the file system is read-only: remount it read-write, or point egressfw at a writable place (--state-dir)',
  ENOSPC: 'no space left on the device: free some space and retry',
  EDQUOT: 'disk quota exceeded: free some space and retry',
  ELOOP: 'a symlink is in the way: egressfw never follows links there; remove it',
  ENOTDIR: 'a component of the path is not a directory: fix the path',
  EISDIR: 'it is a directory: remove it or use another path',
  EIO: 'I/O error: check the disk (dmesg)',
};

/** A file egressfw must read or write and cannot, for a reason the user can fix (permissions, space, read-only). Exit 1. */
export class FileError extends EgressfwError {
  readonly code: string;
  constructor(
    readonly action: 'read' | 'write',
    readonly file: string,
    cause: unknown,
  ) {
    const code = (cause as NodeJS.ErrnoException | undefined)?.code ?? 'unknown';
    super(`cannot ${action} ${file}: ${FILE_FIX[code] ?? `${code}: ${(cause as Error | undefined)?.message ?? String(cause)}`}`);
    this.code = code;
  }
}

/** An errno error from the file system (not one of egressfw's own typed errors). */
export const isErrno = (e: unknown): e is NodeJS.ErrnoException => e instanceof Error && typeof (e as NodeJS.ErrnoException).code === 'string' && !(e instanceof EgressfwError);
