#!/usr/bin/env node
import { Command, CommanderError, Option } from 'commander';
import { runPlan } from './commands/plan.js';
import { runSync } from './commands/sync.js';
import { runDaemon } from './commands/daemon.js';
import { runInstall } from './commands/install.js';
import { runStatus } from './commands/status.js';
import { GATE_NODE_FLAGS, runGate } from './commands/gate.js';
import { NftAdmitter, readGateSets, reAddRefreshes } from './system/nft-admit.js';
import { release } from 'node:os';
import { Supervisor } from './system/supervise.js';
import { dockerClient } from './system/docker.js';
import { probeGate } from './gate/probe.js';
import { readGateLogs } from './system/gate-log.js';
import { formatLog } from './schedule/daemon.js';
import { runUninstall } from './commands/uninstall.js';
import { DEFAULT_PROXY_OUT, runProxy } from './commands/proxy.js';
import { fileURLToPath } from 'node:url';
import { access } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULT_CONFIG_PATH } from './config/load.js';
import { EgressfwError } from './errors.js';
import { query } from './system/dns-client.js';
import { realExec, onPath } from './system/exec.js';
import { backupOnce, confinedFiles, readText, removeFile, writeFileAtomic } from './system/files.js';
import { acquireLock } from './system/lock.js';
import { observe, type Wanted } from './system/observe.js';
import { inspectDocker } from './system/docker-view.js';
import { DEFAULT_STATE_DIR, removeStateFiles, setAsideDamaged } from './system/state.js';

const isRoot = process.getuid?.() === 0;
const out = (t: string) => process.stdout.write(t);
const warn = (t: string) => process.stderr.write(`${t}\n`);

const configOption = () => new Option('-c, --config <file>', 'config file (YAML or JSON)').default(DEFAULT_CONFIG_PATH);
const stateDirOption = (what = 'where sync keeps its state') => new Option('--state-dir <dir>', what).default(DEFAULT_STATE_DIR);

function program(): Command {
  const p = new Command('egressfw')
    .description("Keep a Docker host's outbound traffic (host and containers) to an allowlist of domains.")
    .version('0.1.0')
    .exitOverride()
    .showHelpAfterError('(run `egressfw --help` for usage)')
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  p.command('plan')
    .description('dry run: resolve the allowlist, compare with the kernel, print exactly what sync would change (writes nothing)')
    .addOption(configOption())
    .addOption(stateDirOption('where sync keeps its state (read only here)'))
    .option('--json', 'print one machine-readable JSON document', false)
    .option('--detailed-exitcode', 'exit 3 when changes are pending, 0 when none', false)
    .action(async (o: { config: string; stateDir: string; json: boolean; detailedExitcode: boolean }) => {
      process.exitCode = await runPlan(o, planDeps());
    });
  p.command('sync')
    .description('resolve, plan and apply the allowlist to the kernel (root): all or nothing, verified, state saved')
    .addOption(configOption())
    .addOption(stateDirOption())
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
    .addOption(configOption())
    .addOption(stateDirOption())
    .option('--json', 'log one JSON object per line', false)
    .action(async (o: { config: string; stateDir: string; json: boolean }) => {
      const log = (event: string, fields: Record<string, unknown>) => out(`${formatLog(o.json, new Date(), event, fields)}\n`);
      const gate = new Supervisor({
        argv: [process.execPath, ...GATE_NODE_FLAGS, fileURLToPath(import.meta.url), 'gate', '--config', path.resolve(o.config), '--state-dir', path.resolve(o.stateDir)],
        onLine: (line) => out(`${line}\n`),
        onEvent: log,
      });
      process.exitCode = await runDaemon(o, syncDeps(), process, gate);
    });
  p.command('gate', { hidden: true })
    .description('the DNS gate in the foreground (egressfw daemon starts and restarts it when dns.gate.enabled is true)')
    .addOption(configOption())
    .addOption(stateDirOption())
    .action(async (o: { config: string; stateDir: string }) => {
      process.exitCode = await runGate(o, {
        query,
        readText,
        writeFileAtomic,
        admitter: () => new NftAdmitter({ reAdd: reAddRefreshes(release()), onProblem: (w) => warn(`gate: kernel writer: ${w}`) }),
        ...(reAddRefreshes(release()) ? {} : { presentElements: () => readGateSets() }),
        containers: () => dockerClient().containers(),
        isRoot,
        out,
        warn,
      }, process);
    });
  p.command('status')
    .description('what is enforced now (read from the kernel) against the saved state; exit 0 enforced, 3 drift')
    .addOption(configOption())
    .addOption(stateDirOption())
    .option('--json', 'print one machine-readable JSON document', false)
    .action(async (o: { config: string; stateDir: string; json: boolean }) => {
      process.exitCode = await runStatus(o, {
        ...planDeps(),
        gate: {
          readText,
          probe: (port) => probeGate(port),
          dockerVersion: () => dockerClient().engine().then((e) => e.version, () => null),
          readLogs: (dir) => readGateLogs(dir),
          nowMs: Date.now,
        },
      });
    });

  p.command('install')
    .description('schedule egressfw: a cron file (--cron) or systemd units (--systemd); --remove takes them out')
    .addOption(configOption())
    .addOption(stateDirOption())
    .option('--cron', 'write /etc/cron.d/egressfw', false)
    .option('--systemd', 'write and enable egressfw.service (daemon) and egressfw-boot.service (fail closed at boot)', false)
    .option('--remove', 'remove the cron file and units egressfw wrote', false)
    .option('--docker-dns', "DNS gate: set daemon.json `dns` so Docker's embedded resolver asks from the containers' side (Docker 27+; restart Docker after); undone by uninstall", false)
    .option('--dry-run', 'print the files, write nothing', false)
    .action(async (o: { config: string; stateDir: string; cron: boolean; systemd: boolean; remove: boolean; dockerDns: boolean; dryRun: boolean }) => {
      process.exitCode = await runInstall(o, installDeps());
    });

  p.command('uninstall')
    .description('remove every set, chain, jump, ufw block, unit and cron file egressfw created; restore the ufw policy it found')
    .addOption(configOption())
    .addOption(stateDirOption('where sync keeps its state (only egressfw\'s own files there are removed)'))
    .option('--dry-run', 'print what would be removed, change nothing', false)
    .action(async (o: { config: string; stateDir: string; dryRun: boolean }) => {
      process.exitCode = await runUninstall(o, { ...syncDeps(), removeStateFiles, removeFile }, installDeps());
    });

  p.command('proxy')
    .description('write a compose override (compose.egress.yml) + nginx configs: listed services lose their route out and reach allowed domains only through proxies')
    .addOption(configOption())
    .addOption(new Option('-o, --out <dir>', 'directory for the generated files (nothing is written elsewhere)').default(DEFAULT_PROXY_OUT))
    .addOption(new Option('--mode <mode>', 'per-domain (one stream proxy per domain) or sni (one proxy, routes by TLS SNI / HTTP Host); default proxy.mode').choices(['per-domain', 'sni']))
    .option('--services <list>', 'comma-separated compose services to protect (default proxy.services)')
    .option('--compose <file>', 'your compose file, checked so the override can isolate the services (default: compose.yaml/compose.yml/docker-compose.yml here)')
    .option('--force', 'overwrite files in the out dir that egressfw did not generate', false)
    .action(async (o: { config: string; out: string; mode?: string; services?: string; compose?: string; force: boolean }) => {
      // every read, write and delete under --out goes through the real --out, never a symlink below it
      process.exitCode = await runProxy(o, {
        ...confinedFiles(path.resolve(process.cwd(), o.out)),
        cwd: process.cwd(),
        out,
        warn,
      });
    });
  return p;
}

function installDeps() {
  return {
    exec: realExec,
    readText,
    writeFileAtomic,
    isRoot,
    systemdRunning: () => access('/run/systemd/system').then(() => true, () => false),
    node: process.execPath,
    cli: fileURLToPath(import.meta.url),
    out,
  };
}

function syncDeps() {
  return { ...planDeps(), exec: realExec, writeFileAtomic, backupOnce, onPath, acquireLock: () => acquireLock(), setAside: setAsideDamaged };
}

function planDeps() {
  return {
    query,
    readText,
    observe: (want: Wanted) => observe({ exec: realExec, readText, onPath, isRoot }, want),
    inspectDocker: () => inspectDocker(),
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
