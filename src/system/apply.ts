import { CommandError, EgressfwError } from '../errors.js';
import type { Family } from '../net/ip.js';
import type { Plan } from '../plan/diff.js';
import { TMP_SET } from '../plan/kernel-names.js';
import type { Observed } from '../plan/observed.js';
import { restoreBatch } from '../plan/nft.js';
import { renderIpset, renderIptables, renderNft } from '../plan/render.js';
import { rollbackIpset, rollbackIptables, rollbackUfw } from '../plan/rollback.js';
import type { Exec } from './exec.js';
import { withPrivateFile } from './files.js';

/** nft reads JSON only from a file it opens by name: a private temp file. */
const nftJsonFile = (exec: Exec, json: string): Promise<void> => withPrivateFile('restore.json', json, (file) => run(exec, ['nft', '-j', '-f', file]).then(() => {}));

export interface ApplyDeps {
  exec: Exec;
  writeFileAtomic: (file: string, text: string) => Promise<void>;
  backupOnce: (file: string, backup: string) => Promise<void>;
  /** aborted (SIGINT/SIGTERM): the next step fails instead of starting, and the normal rollback runs */
  signal?: AbortSignal;
}

export class ApplyError extends EgressfwError {}

const RESTORE = { 4: 'iptables-restore', 6: 'ip6tables-restore' } as const;

async function run(exec: Exec, argv: string[], input?: string): Promise<void> {
  const r = await exec(argv, input === undefined ? {} : { input });
  if (r.exitCode !== 0) throw new CommandError(argv, r.exitCode, r.stderr);
}

interface Step {
  name: string;
  run: () => Promise<void>;
  /** undo, also safe after a partial run of this step */
  undo: () => Promise<void>;
  /** does a failure of this step itself leave partial changes? (iptables-restore is all or nothing) */
  partial: boolean;
}

/**
 * The only code that writes to the kernel and the ufw files. Steps run in
 * order (sets, nft, ufw, iptables, ip6tables); if one fails, the ones before it
 * (and any partial work of the failing one) are undone in reverse order, so
 * the previous rules stay in force, and the error names the failed step.
 */
export async function applyPlan(plan: Plan, before: Observed, deps: ApplyDeps): Promise<void> {
  const { exec } = deps;
  const steps: Step[] = [];

  const ipset = renderIpset(plan);
  if (ipset) {
    steps.push({
      name: 'ipset restore',
      partial: true,
      run: () => run(exec, ['ipset', 'restore'], ipset),
      undo: async () => {
        for (const f of [4, 6] as Family[]) await exec(['ipset', 'destroy', TMP_SET[f]]); // may not exist: fine
        for (const r of rollbackIpset(plan, before)) {
          if (r.restore) await run(exec, ['ipset', 'restore'], r.restore);
          else {
            const d = await exec(['ipset', 'destroy', r.name]);
            if (d.exitCode !== 0 && !/does not exist/.test(d.stderr)) throw new CommandError(['ipset', 'destroy', r.name], d.exitCode, d.stderr);
          }
        }
      },
    });
  }

  // Containers: one nft transaction (all or nothing). Before the iptables step, so the pre-0.2
  // chain it removes is only gone once the table enforces; before ufw, whose reload takes a second
  // or more: after a ruleset flush the containers are judged again at once, not after the reload.
  const nft = renderNft(plan);
  if (nft) {
    steps.push({
      name: 'nft',
      partial: false,
      run: () => run(exec, ['nft', '-f', '-'], nft),
      undo: () => nftJsonFile(exec, restoreBatch(before.nft?.raw ?? null)),
    });
  }

  const ufwOps = plan.ops.filter((o) => o.kind.startsWith('ufw-'));
  if (ufwOps.length) {
    steps.push({
      name: 'ufw',
      partial: true,
      run: async () => {
        for (const op of ufwOps) {
          if (op.kind === 'ufw-block') {
            await deps.backupOnce(op.file, `${op.file}.egressfw-backup`);
            await deps.writeFileAtomic(op.file, op.text);
          } else if (op.kind === 'ufw-outgoing') await run(exec, ['ufw', 'default', op.to, 'outgoing']);
          else if (op.kind === 'ufw-enable') await run(exec, ['ufw', '--force', 'enable']);
          else if (op.kind === 'ufw-reload') await run(exec, ['ufw', 'reload']);
        }
      },
      undo: async () => {
        const u = rollbackUfw(plan, before);
        if (!u) return;
        for (const f of u.files) await deps.writeFileAtomic(f.file, f.text);
        for (const argv of u.commands) await run(exec, argv);
        for (const f of [4, 6] as Family[]) if (u.refill[f]) await run(exec, [RESTORE[f], '--noflush'], u.refill[f]);
      },
    });
  }

  for (const family of [4, 6] as Family[]) {
    const text = renderIptables(plan, family);
    if (!text) continue;
    steps.push({
      name: RESTORE[family],
      partial: false,
      run: () => run(exec, [RESTORE[family], '--noflush'], text),
      undo: async () => {
        const back = rollbackIptables(plan, before, family);
        if (back) await run(exec, [RESTORE[family], '--noflush'], back);
      },
    });
  }

  // Interruption is checked before each step and once after the last: until applyPlan returns, a signal undoes it all.
  if (deps.signal) steps.push({ name: 'the last step', partial: false, run: async () => {}, undo: async () => {} });
  const done: Step[] = [];
  for (const step of steps) {
    let started = false;
    try {
      if (deps.signal?.aborted) throw new Error(`interrupted by ${String(deps.signal.reason)} before ${step.name === 'the last step' ? 'the sync finished' : step.name}`);
      started = true;
      await step.run();
      done.push(step);
    } catch (e) {
      // Newest first: the failing step's leftovers, then the completed steps backwards
      // (so iptables, which references the sets, is undone before ipset).
      const order = [...(step.partial && started ? [step] : []), ...[...done].reverse()];
      const problems: string[] = [];
      for (const s of order) {
        try {
          await s.undo();
        } catch (u) {
          problems.push(`undo of ${s.name} failed: ${(u as Error).message}`);
        }
      }
      const what = (e as Error).message;
      throw new ApplyError(
        problems.length
          ? `${started ? `${step.name} failed: ` : ''}${what}\nRolling back did not fully succeed:\n${problems.map((p) => `  - ${p}`).join('\n')}\nRun \`egressfw plan\` to see the current state.`
          : `${started ? `${step.name} failed: ` : ''}${what}\nEverything this sync changed was rolled back; the previous rules are in force.`,
      );
    }
  }
}
