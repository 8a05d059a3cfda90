#!/usr/bin/env node
import { Command, CommanderError, Option } from 'commander';
import { fileURLToPath } from 'node:url';
import { DEFAULT_CONFIG_PATH, DEFAULT_PROXY_OUT, DEFAULT_STATE_DIR, VERSION } from './defaults.js';
import { EgressfwError } from './errors.js';
import { printText } from './text.js';

// Commands and their dependencies load when a command runs, not before: `--version`
// and `--help` then cost little more than Node's own start-up (cron pays it every run).
const deps = () => import('./deps.js');
const warn = (t: string) => process.stderr.write(`${printText(t)}\n`);

const configOption = () => new Option('-c, --config <file>', 'config file (YAML or JSON)').default(DEFAULT_CONFIG_PATH);
const stateDirOption = (what = 'where sync keeps its state') => new Option('--state-dir <dir>', what).default(DEFAULT_STATE_DIR);

function program(): Command {
  const p = new Command('egressfw')
    .description("Keep a Docker host's outbound traffic (host and containers) to an allowlist of domains.")
    .version(VERSION)
    .exitOverride()
    .showHelpAfterError('(run `egressfw --help` for usage)')
    .configureOutput({ writeErr: (s) => process.stderr.write(printText(s)) });

  p.command('plan')
    .description('dry run: resolve the allowlist, compare with the kernel, print exactly what sync would change (writes nothing)')
    .addOption(configOption())
    .addOption(stateDirOption('where sync keeps its state (read only here)'))
    .option('--json', 'print one machine-readable JSON document', false)
    .option('--detailed-exitcode', 'exit 3 when changes are pending, 0 when none', false)
    .action(async (o: { config: string; stateDir: string; json: boolean; detailedExitcode: boolean }) => {
      const [{ runPlan }, d] = await Promise.all([import('./commands/plan.js'), deps()]);
      process.exitCode = await runPlan(o, d.planDeps());
    });
  p.command('sync')
    .description('resolve, plan and apply the allowlist to the kernel (root): all or nothing, verified, state saved')
    .addOption(configOption())
    .addOption(stateDirOption())
    .option('--dry-run', 'print the plan and change nothing (same as `egressfw plan`)', false)
    .option('-q, --quiet', 'print only warnings and errors', false)
    .option('--offline', 'no DNS: re-apply the saved IPs (used at boot, before the network is up)', false)
    .option('--json', 'print one JSON document: changes applied, warnings, connections cut', false)
    .action(async (o: { config: string; stateDir: string; dryRun: boolean; quiet: boolean; offline: boolean; json: boolean }) => {
      if (o.dryRun) {
        const [{ runPlan }, d] = await Promise.all([import('./commands/plan.js'), deps()]);
        process.exitCode = await runPlan({ ...o, detailedExitcode: false }, d.planDeps());
        return;
      }
      const [{ runSync }, d] = await Promise.all([import('./commands/sync.js'), deps()]);
      process.exitCode = await runSync(o, d.syncDeps());
    });
  p.command('daemon')
    .description('foreground scheduler (for systemd): refresh on a schedule and at TTL expiry, repair drift between refreshes')
    .addOption(configOption())
    .addOption(stateDirOption())
    .option('--json', 'log one JSON object per line', false)
    .action(async (o: { config: string; stateDir: string; json: boolean }) => {
      const [{ runDaemon }, d, { journalStream }] = await Promise.all([import('./commands/daemon.js'), deps(), import('./system/journal.js')]);
      const opts = { ...o, journal: journalStream(1) };
      process.exitCode = await runDaemon(opts, d.syncDeps(), process, d.auditDeps(), await d.gateSupervisor(opts, cliFile()), await d.metricsDeps(), await d.followSystem());
    });
  p.command('gate', { hidden: true })
    .description('the DNS gate in the foreground (egressfw daemon starts and restarts it when dns.gate.enabled is true)')
    .addOption(configOption())
    .addOption(stateDirOption())
    .action(async (o: { config: string; stateDir: string }) => {
      const [{ runGate }, d] = await Promise.all([import('./commands/gate.js'), deps()]);
      process.exitCode = await runGate(o, await d.gateDeps(), process);
    });
  p.command('status')
    .description('what is enforced now (read from the kernel) against the saved state; exit 0 enforced, 3 drift')
    .addOption(configOption())
    .addOption(stateDirOption())
    .option('--json', 'print one machine-readable JSON document (everything)', false)
    .option('-v, --verbose', 'every name with its IPs and every network (default: a summary, details only for what needs attention)', false)
    .option('--domains', 'the same as --verbose', false)
    .action(async (o: { config: string; stateDir: string; json: boolean; verbose: boolean; domains: boolean }) => {
      const [{ runStatus }, d] = await Promise.all([import('./commands/status.js'), deps()]);
      process.exitCode = await runStatus({ config: o.config, stateDir: o.stateDir, json: o.json, verbose: o.verbose || o.domains }, d.statusDeps());
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
      const [{ runInstall }, d] = await Promise.all([import('./commands/install.js'), deps()]);
      process.exitCode = await runInstall(o, await d.installDeps(cliFile(), process.argv[1]));
    });

  p.command('uninstall')
    .description('remove every set, chain, jump, ufw block, unit and cron file egressfw created; restore the ufw policy it found')
    .addOption(configOption())
    .addOption(stateDirOption('where sync keeps its state (only egressfw\'s own files there are removed)'))
    .option('--dry-run', 'print what would be removed, change nothing', false)
    .action(async (o: { config: string; stateDir: string; dryRun: boolean }) => {
      const [{ runUninstall }, d] = await Promise.all([import('./commands/uninstall.js'), deps()]);
      process.exitCode = await runUninstall(o, d.uninstallDeps(), await d.installDeps(cliFile(), process.argv[1]));
    });

  p.command('report')
    .description('refused connections (and those audit mode let through) per container and for the host: count, first and last seen, DNS name where known')
    .addOption(configOption().default(DEFAULT_CONFIG_PATH, `${DEFAULT_CONFIG_PATH}, if it exists`))
    .addOption(stateDirOption())
    .option('--since <duration>', 'window: 30m, 1h, 24h, 7d', '1h')
    .option('--json', 'print one machine-readable JSON document', false)
    .action(async (o: { config: string; stateDir: string; since: string; json: boolean }) => {
      const [{ runReport }, d] = await Promise.all([import('./commands/report.js'), deps()]);
      process.exitCode = await runReport(o, d.auditDeps());
    });
  p.command('suggest')
    .description('print an allowlist fragment (YAML) from what was refused or audited, to review and merge into the config (never edits it)')
    .addOption(configOption().default(DEFAULT_CONFIG_PATH, `${DEFAULT_CONFIG_PATH}, if it exists`))
    .addOption(stateDirOption())
    .option('--since <duration>', 'window: 1h, 24h, 7d', '24h')
    .option('--per-service', 'one policy per compose service (policies: + containers.assign:), for least privilege per workload', false)
    .action(async (o: { config: string; stateDir: string; since: string; perService: boolean }) => {
      const [{ runSuggest }, d] = await Promise.all([import('./commands/suggest.js'), deps()]);
      process.exitCode = await runSuggest(o, { ...d.auditDeps(), warn });
    });

  p.command('proxy')
    .description('write a compose override (compose.egress.yml) + nginx configs: listed services lose their route out and reach allowed domains only through proxies')
    .addOption(configOption())
    .addOption(stateDirOption('accepted like every command takes it; proxy keeps no state'))
    .addOption(new Option('-o, --out <dir>', 'directory for the generated files (nothing is written elsewhere)').default(DEFAULT_PROXY_OUT))
    .addOption(new Option('--mode <mode>', 'per-domain (one stream proxy per domain) or sni (one proxy, routes by TLS SNI / HTTP Host); default proxy.mode').choices(['per-domain', 'sni']))
    .option('--services <list>', 'comma-separated compose services to protect (default proxy.services)')
    .option('--compose <file>', 'your compose file, checked so the override can isolate the services (default: compose.yaml/compose.yml/docker-compose.yml here)')
    .option('--force', 'overwrite files in the out dir that egressfw did not generate', false)
    .action(async (o: { config: string; out: string; mode?: string; services?: string; compose?: string; force: boolean }) => {
      const [{ runProxy }, d] = await Promise.all([import('./commands/proxy.js'), deps()]);
      process.exitCode = await runProxy(o, d.proxyDeps(o.out));
    });
  p.command('export')
    .description('write the allowlist and policies as Kubernetes objects for Cilium or Antrea (reads only the config); what cannot carry over is listed')
    .addOption(new Option('--to <engine>', 'cilium (CiliumNetworkPolicy) or antrea (ClusterNetworkPolicy)').choices(['cilium', 'antrea']).makeOptionMandatory())
    .addOption(configOption())
    .addOption(stateDirOption('accepted like every command takes it; export keeps no state'))
    .option('-n, --namespace <ns>', 'namespace of the pods the objects select', 'default')
    .option('--cluster-wide', 'select pods in every namespace but kube-system (Cilium: CiliumClusterwideNetworkPolicy)', false)
    .option('-o, --out <dir>', 'directory for one file per object, or - for stdout', '-')
    .option('--service-label <key>', 'pod label that carries the compose service', 'app.kubernetes.io/name')
    .option('--project-label <key>', 'pod label that carries the compose project', 'app.kubernetes.io/part-of')
    .action(async (o: { to: string; config: string; namespace: string; clusterWide: boolean; out: string; serviceLabel: string; projectLabel: string }) => {
      const [{ runExport }, d] = await Promise.all([import('./commands/export.js'), deps()]);
      process.exitCode = await runExport(o, d.exportDeps(o.out));
    });
  return p;
}

/** The file this CLI runs from (dist/cli.js, or the bundle): cron and unit files start it (or the path it was started as). */
const cliFile = () => fileURLToPath(import.meta.url);

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
      // Under systemd (egressfw-boot's sync, the daemon) an error is filed as one: `<3>` (sd-daemon(3)).
      const journal = (await import('./system/journal.js')).journalStream(2);
      warn(`${journal ? '<3>' : ''}egressfw: ${e.message}`);
      return e.exitCode;
    }
    warn(`egressfw: unexpected error: ${(e as Error).stack ?? String(e)}`);
    return 1;
  }
}

process.exitCode = await main(process.argv);
