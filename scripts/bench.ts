// `npm run bench` (root): what egressfw costs, measured in throwaway network namespaces, side by side with the
// alternatives. Prints a table and writes docs/benchmarks.md. Nothing outside the namespaces is touched.
//
//   tsx scripts/bench.ts [--quick] [--only sync,packet,daemon,startup,gate,audit,flows] [--no-write]
//
// --quick: fewer sizes and repetitions (a smoke run, a few minutes); it never overwrites docs/benchmarks.md.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startLab, type Lab } from '../test/lab/lab.js';
import { BenchDns } from './bench/dns.js';
import { daemonSection, type DaemonResult } from './bench/daemon.js';
import { metricsSection, renderMetricsBench, type MetricsBenchResult } from './bench/metrics.js';
import { gateSection, type GateResult } from './bench/gate.js';
import { dockerSkeleton } from './bench/kernel.js';
import { packetPath, type PacketResult } from './bench/packet.js';
import { renderReport, type Machine } from './bench/report.js';
import { startupSection, type StartupResult } from './bench/startup.js';
import { syncSection, type SyncResult } from './bench/sync.js';
import { must, progress, run } from './bench/util.js';
import { auditSection, renderAuditBench, type AuditBenchResult } from './bench/audit-recording.js';
import { flowsSection, renderFlowsBench, type FlowsResult } from './bench/flows.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
// EFW_BENCH_CLI: another build's dist/cli.js (a before/after comparison on the same machine, same run conditions)
const CLI = process.env.EFW_BENCH_CLI ? path.resolve(process.env.EFW_BENCH_CLI) : path.join(ROOT, 'dist', 'cli.js');
const DOC = path.join(ROOT, 'docs', 'benchmarks.md');

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const SECTIONS = ['sync', 'packet', 'daemon', 'startup', 'gate', 'audit', 'metrics', 'flows'];
const onlyArg = args.includes('--only') ? args[args.indexOf('--only') + 1] ?? '' : SECTIONS.join(',');
const only = new Set(onlyArg.split(','));
const write = !args.includes('--no-write') && !quick && SECTIONS.every((s) => only.has(s));

async function preflight(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark builds network namespaces: run it as root (sudo npm run bench)');
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: \`npm run build\` first (npm run bench does it)`);
  const need = ['gcc', 'strace', 'dnsmasq', 'dnsperf', 'nft', 'ufw', 'ipset', 'iptables-restore', 'busybox', 'unshare', 'nsenter', 'conntrack'];
  const missing: string[] = [];
  for (const t of need) if ((await run(['sh', '-c', `command -v ${t}`])).exitCode !== 0) missing.push(t);
  if (!fs.existsSync('/usr/bin/time')) missing.push('/usr/bin/time');
  if (missing.length) throw new Error(`missing: ${missing.join(', ')}: run \`bash scripts/install-deps.sh\` first`);
}

async function machine(): Promise<Machine> {
  const first = async (argv: string[]) => {
    const r = await run(argv);
    return (r.stdout || r.stderr).split('\n')[0]!.trim();
  };
  const cpu = /^model name\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';
  return {
    date: new Date().toISOString(),
    nproc: Number((await first(['nproc'])) || os.cpus().length),
    cpu,
    memGiB: os.totalmem() / 2 ** 30,
    kernel: os.release(),
    node: process.version,
    iptables: await first(['iptables', '-V']),
    ipset: await first(['ipset', '-v']),
    ufw: await first(['ufw', 'version']),
    dnsmasq: await first(['dnsmasq', '--version']),
    loadStart: os.loadavg(),
    loadEnd: [],
  };
}

/** The machine's own namespace must show nothing of ours (read only). */
async function leftovers(): Promise<string[]> {
  const problems: string[] = [];
  // (`ip netns list` is not checked: the bench names no namespaces, and other processes may)
  for (const t of ['iptables-save', 'ip6tables-save']) {
    const s = (await run([t])).stdout;
    if (/egressfw|EGRESSFW|EFW-LINEAR/.test(s)) problems.push(`${t} shows egressfw rules in the machine's own namespace`);
  }
  const sets = (await run(['ipset', 'list', '-n'])).stdout;
  if (/egressfw/.test(sets)) problems.push("ipset shows egressfw sets in the machine's own namespace");
  return problems;
}

async function main(): Promise<void> {
  const t0 = Date.now();
  await preflight();
  const m = await machine();
  progress(`${quick ? 'quick run' : 'full run'}: ${[...only].join(', ')}; ${m.nproc} cores, ${m.memGiB.toFixed(1)} GiB, kernel ${m.kernel}, node ${m.node}`);
  let sync: SyncResult | undefined;
  let daemon: DaemonResult | undefined;
  let packet: PacketResult | undefined;
  let startup: StartupResult | undefined;
  let gate: GateResult | undefined;
  let audit: AuditBenchResult | undefined;
  let metrics: MetricsBenchResult | undefined;

  if (only.has('sync') || only.has('daemon') || only.has('startup') || only.has('metrics')) {
    const sizes = only.has('sync') ? (quick ? [10, 100, 1000] : [10, 100, 1000, 5000]) : [1000];
    let lab: Lab | undefined;
    try {
      lab = await startLab({ docker: false });
      progress(`lab ${lab.id} up (${['sync', 'daemon', 'startup'].filter((x) => only.has(x)).join(', ')})`);
      const dns = new BenchDns(lab, Math.max(...sizes));
      await dns.start(3600);
      // a Docker host's FORWARD chains, then ufw on (stock config: outgoing allowed), as on a real host
      await must(lab.hostArgv(['iptables-restore']), { input: dockerSkeleton() });
      await must(lab.hostArgv(['ip6tables-restore']), { input: dockerSkeleton() });
      await must(lab.hostArgv(['ufw', '--force', 'enable']));
      if (only.has('sync')) {
        sync = await syncSection(lab, CLI, dns, {
          sizes,
          reps: (n) => (quick ? 2 : n >= 5000 ? 3 : 5),
          firstEverN: 1000,
          firstEverReps: quick ? 1 : 3,
          ufwSizes: quick ? [10] : [10, 100],
          ufwReps: (n) => (quick ? 1 : n >= 100 ? 1 : 3),
          applyReps: quick ? 2 : 5,
        });
      }
      if (only.has('daemon')) {
        daemon = await daemonSection(lab, CLI, dns, { n: 1000, idleSeconds: quick ? 20 : 60, refreshSamples: 3, changeSamples: 3, ttl: 5 });
      }
      if (only.has('startup')) startup = await startupSection(lab, ROOT, { n: 1000, reps: quick ? 3 : 7 });
      // Issue 19: metrics at the soak schedule (EFW_BENCH_SOAK_MIN: minutes of each soak, without and with metrics; default 15, --quick 2)
      if (only.has('metrics')) {
        const soakMin = Number(process.env.EFW_BENCH_SOAK_MIN ?? (quick ? 2 : 15));
        const phases = Number(process.env.EFW_BENCH_METRICS_PHASES ?? 2);
        metrics = await metricsSection(lab, CLI, dns, { n: 1000, phaseSeconds: quick ? 30 : 90, phases, soakSeconds: soakMin * 60, baselineSoakSeconds: soakMin * 60 });
      }
      await dns.stop();
    } finally {
      await lab?.stop();
    }
  }

  if (only.has('packet')) {
    let lab: Lab | undefined;
    try {
      lab = await startLab({ docker: false });
      progress(`lab ${lab.id} up (packet path)`);
      const bin = path.join(lab.dir, 'tcpbench');
      await must(['gcc', '-O2', '-pthread', '-o', bin, path.join(HERE, 'bench', 'tcpbench.c')]);
      packet = await packetPath(lab, CLI, bin, {
        rounds: quick ? 2 : 6,
        crrSeconds: quick ? 1 : 1.5,
        latSeconds: quick ? 0.5 : 0.75,
        streamSeconds: quick ? 0.5 : 0.75,
        crrThreads: 2,
        sizes: [1000, 10000],
      });
    } finally {
      await lab?.stop();
    }
  }

  if (only.has('gate')) {
    let lab: Lab | undefined;
    try {
      lab = await startLab({ docker: false });
      progress(`lab ${lab.id} up (DNS gate)`);
      const names = 10_000;
      const dns = new BenchDns(lab, names);
      await dns.start(3600);
      gate = await gateSection(lab, CLI, dns, { names, rateSeconds: quick ? 3 : 8, rounds: quick ? 1 : 3, latencySeconds: quick ? 3 : 8, writerN: quick ? 50 : 300 });
      await dns.stop();
    } finally {
      await lab?.stop();
    }
  }

  // Issue 12: what recording refused connections costs, on the product's own nft chain and host rule.
  if (only.has('audit')) audit = await auditSection({ quick });
  // Issue 21 item 10: cutting the connections a sync refuses, at 10,000 tracked, beside a sync with none.
  let flows: FlowsResult | undefined;
  if (only.has('flows')) flows = await flowsSection(CLI, { flows: 10_000, reps: quick ? 2 : 5 });

  m.loadEnd = os.loadavg();
  const left = await leftovers();
  const totalSec = (Date.now() - t0) / 1000;
  const report = renderReport({ machine: m, sync, packet, daemon, startup, gate, totalSec, quick, leftovers: left });
  const auditText =
    (audit ? `\n## Recording refused connections (audit, issue 12)\n\n${renderAuditBench(audit)}\n` : '') +
    (metrics ? `\n## Prometheus metrics in the daemon (issue 19)\n\n${renderMetricsBench(metrics)}\n` : '');
  const flowsText = flows ? `\n## Cutting connections a sync refuses (issue 21 item 10)\n\n${renderFlowsBench(flows)}\n` : '';
  process.stdout.write(`${report.tables}\n${auditText}${flowsText}`);
  if (write) {
    fs.mkdirSync(path.dirname(DOC), { recursive: true });
    fs.writeFileSync(DOC, `${report.markdown}${auditText}${flowsText}`);
    progress(`wrote ${path.relative(process.cwd(), DOC)}`);
  }
  progress(`done in ${totalSec.toFixed(0)} s; left behind: ${left.length ? left.join('; ') : 'nothing'}`);
  if (left.length) process.exitCode = 1;
}

main().catch((e: Error) => {
  process.stderr.write(`bench: ${e.stack ?? e.message}\n`);
  process.exitCode = 1;
});
