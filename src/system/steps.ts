import { CommandError } from '../errors.js';
import type { Exec } from './exec.js';

/**
 * One side effect, described before it happens: commands that install or remove
 * egressfw (install, install --remove, uninstall) build a list of these, and
 * `executeSteps` is the one place that decides between printing them (dry run)
 * and doing them.
 */
export type Step =
  | { say: string; argv: string[]; input?: string; mayFail?: boolean }
  | { say: string; write: { file: string; text: string } }
  | { say: string; remove: string };

export interface StepDeps {
  exec: Exec;
  writeFileAtomic: (file: string, text: string) => Promise<void>;
  removeFile: (file: string) => Promise<void>;
}

/** What the steps do, for people: one line per line of each `say` (steps that only support another say nothing). */
export const describeSteps = (steps: Step[]): string[] => steps.flatMap((s) => s.say.split('\n')).filter(Boolean);

/**
 * Dry run: nothing happens, the caller prints describeSteps. Otherwise the steps run in order;
 * the first failure stops with the command named and `hint` (how to pick up from there).
 */
export async function executeSteps(steps: Step[], deps: StepDeps, opts: { dryRun: boolean; hint: string }): Promise<void> {
  if (opts.dryRun) return;
  for (const s of steps) {
    if ('argv' in s) {
      const r = await deps.exec(s.argv, s.input === undefined ? {} : { input: s.input });
      if (r.exitCode !== 0 && !s.mayFail) throw new CommandError(s.argv, r.exitCode, r.stderr, opts.hint);
    } else if ('write' in s) await deps.writeFileAtomic(s.write.file, s.write.text);
    else await deps.removeFile(s.remove);
  }
}
