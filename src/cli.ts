#!/usr/bin/env node
import { Command, CommanderError, Option } from 'commander';
import { runPlan } from './commands/plan.js';
import { runSync } from './commands/sync.js';
import { runDaemon } from './commands/daemon.js';
import { DEFAULT_CONFIG_PATH } from './config/load.js';
import { EgressfwError } from './errors.js';
import { query } from './resolve/dns-client.js';
import { realExec, onPath } from './system/exec.js';
import { backupOnce, readText, writeFileAtomic } from './system/files.js';
import { acquireLock } from './system/lock.js';
import { observe } from './system/observe.js';
import { DEFAULT_STATE_DIR } from './system/state.js';

const isRoot = process.getuid?.() === 0;
const out = (t: string) => process.stdout.write(t);
const warn = (t: string) => process.stderr.write(`${t}\n`);

function program(): Command {
  const p = new Command('egressfw')
    .description("Keep a Docker host's outbound traffic (host and containers) to an allowlist of domains.")
    .version('0.1.0')
    .exitOverride()
    .showHelpAfterError('(run `egressfw --help` for usage)')
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  p.command('plan')
    .description('dry run: resolve the allowlist, compare with the kernel, print exactly what sync would change (writes nothing)')
    .addOption(new Option('-c, --config <file>', 'config file (YAML or JSON)').default(DEFAULT_CONFIG_PATH))
    .addOption(new Option('--state-dir <dir>', 'where sync keeps its state (read only here)').default(DEFAULT_STATE_DIR))
    .option('--json', 'print one machine-readable JSON document', false)
    .option('--detailed-exitcode', 'exit 3 when changes are pending, 0 when none', false)
    .action(async (o: { config: string; stateDir: string; json: boolean; detailedExitcode: boolean }) => {
      process.exitCode = await runPlan(o, planDeps());
    });
  p.command('sync')
    .description('resolve, plan and apply the allowlist to the kernel (root): all or nothing, verified, state saved')
    .addOption(new Option('-c, --config <file>', 'config file (YAML or JSON)').default(DEFAULT_CONFIG_PATH))
    .addOption(new Option('--state-dir <dir>', 'where sync keeps its state').default(DEFAULT_STATE_DIR))
    .option('--dry-run', 'print the plan and change nothing (same as `egressfw plan`)', false)
    .option('-q, --quiet', 'print only warnings and errors', false)
    .option('--offline', 'no DNS: re-apply the saved IPs (used at boot, before the network is up)', false)
    .action(async (o: { config: string; stateDir: string; dryRun: boolean; quiet: boolean; offline: boolean }) => {
      if (o.dryRun) {
        process.exitCode = await runPlan({ ...o, json: false, detailedExitcode: false }, planDeps());
        return;
      }
      process.exitCode = await runSync(o, syncDeps());
    });
  p.command('daemon')
    .description('foreground scheduler (for systemd): refresh on a schedule and at TTL expiry, repair drift between refreshes')
    .addOption(new Option('-c, --config <file>', 'config file (YAML or JSON)').default(DEFAULT_CONFIG_PATH))
    .addOption(new Option('--state-dir <dir>', 'where sync keeps its state').default(DEFAULT_STATE_DIR))
    .option('--json', 'log one JSON object per line', false)
    .action(async (o: { config: string; stateDir: string; json: boolean }) => {
      process.exitCode = await runDaemon(o, syncDeps(), process);
    });
  return p;
}

function syncDeps() {
  return { ...planDeps(), exec: realExec, writeFileAtomic, backupOnce, onPath, acquireLock: () => acquireLock() };
}

function planDeps() {
  return {
    query,
    readText,
    observe: (wantUfw: boolean) => observe({ exec: realExec, readText, onPath, isRoot }, wantUfw),
    now: () => Math.floor(Date.now() / 1000),
    isRoot,
    out,
    warn,
  };
}

/** The one place errors become exit codes: 0 ok, 1 error, 2 bad usage or config, 3 changes pending. */
export async function main(argv: string[]): Promise<number> {
  process.exitCode = 0;
  try {
    await program().parseAsync(argv);
    return Number(process.exitCode ?? 0);
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version end here too, with exit code 0.
      return e.exitCode === 0 ? 0 : 2;
    }
    if (e instanceof EgressfwError) {
      warn(`egressfw: ${e.message}`);
      return e.exitCode;
    }
    warn(`egressfw: unexpected error: ${(e as Error).stack ?? String(e)}`);
    return 1;
  }
}

process.exitCode = await main(process.argv);
