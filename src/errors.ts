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
