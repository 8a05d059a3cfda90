// The DNS gate under load, side by side with dnsmasq (the anchor: a caching forwarder doing the same job
// minus the policy and the kernel) in the same run, both in the lab's Docker-host namespace, on loopback,
// both forwarding to the bench's upstream dnsmasq in the "internet" namespace. Measured with dnsperf:
//   - latency of a cached allowed name (dnsperf -v per-query latencies at a moderate rate)
//   - sustained rate on cached allowed names (dnsperf, 100 outstanding, fixed time)
//   - new-IP release: upstream answer -> answer sent, kernel insert included (the gate's own releaseMs, per query)
//   - RSS of the gate with 10,000 names cached (A and AAAA: 20,000 answers)
//   - the kernel writer itself: one `nft -f -` spawn per answer vs the long-lived `nft -i` the gate uses
import fs from 'node:fs';
import path from 'node:path';
import type { Lab } from '../../test/lab/lab.js';
import { NftAdmitter } from '../../src/system/nft-admit.js';
import { GATE_NODE_FLAGS } from '../../src/commands/gate.js';
import { BENCH_DNS, type BenchDns } from './dns.js';
import { nameOf, ZONE } from './allowlist.js';
import { alive, killPid, must, progress, run, sleep, spawnLogged } from './util.js';

export interface Pctl {
  p50: number;
  p99: number;
  n: number;
}
export interface GateResult {
  names: number;
  latency: { gate: Pctl; dnsmasq: Pctl; qps: number };
  rate: { gate: number[]; dnsmasq: number[]; echo: number[]; seconds: number };
  /** CPU time (user + system, from /proc) per answered query during the rate rounds: what load on a shared machine does not distort */
  cpuUsPerQuery: { gate: number; dnsmasq: number; echo: number };
  /** new-IP release at a moderate rate of new names, and under stress */
  /** new-IP release at the target rate; kernel: the share waiting for the kernel insert (the gate's kernelMs) */
  release: Pctl & { rate: number; kernel: { p50: number; p99: number } };
  /** at twice the target rate of new answers: also how many were shed (SERVFAIL over a cap) and whether the gate lived */
  releaseStress: Pctl & { rate: number; kernel: { p50: number; p99: number }; shed: number; alive: boolean };
  /** cached names offered at twice the gate's measured rate: what came back, what was lost (the socket buffer overflows), SERVFAIL */
  overload: { offered: number; qps: number; completedPct: number; lost: number; servfail: number; alive: boolean; rssMiB: number };
  rss: { idleMiB: number; cachedMiB: number; cachedAnswers: number };
  writer: { spawn: Pctl; persistent: Pctl };
  versions: { dnsperf: string; dnsmasq: string };
}

const GATE_PORT = 5300;
const NODE_OPTIONS = '--max-semi-space-size=1';
const DNSMASQ_PORT = 5301;
const ECHO_PORT = 5302;
/**
 * The floor for any gate written for Node: a UDP server on the same dgram path that answers each
 * query with itself (QR set), with no parse, no cache and no log.
 */
const ECHO_SERVER = `const s = require('dgram').createSocket({ type: 'udp4', lookup: (a, _o, cb) => cb(null, a, 4) });
s.on('message', (m, r) => { const o = Buffer.from(m); o[2] |= 0x80; s.send(o, r.port, r.address); });
s.bind(${ECHO_PORT}, '127.0.0.1');`;

export function pctl(xs: number[]): Pctl {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => (s.length ? s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]! : NaN);
  return { p50: at(0.5), p99: at(0.99), n: s.length };
}

/** dnsperf -v: "> NOERROR name A 0.000151" per query -> latencies in ms */
function latencies(out: string): number[] {
  return [...out.matchAll(/^> NOERROR \S+ \S+ ([0-9.]+)$/gm)].map((m) => Number(m[1]) * 1000);
}
/** user + system CPU of a process so far, ms (/proc/PID/stat fields 14 and 15, in clock ticks of 10 ms) */
function cpuMs(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}
const qpsOf = (out: string) => Number(/Queries per second:\s+([0-9.]+)/.exec(out)?.[1] ?? NaN);

export async function gateSection(lab: Lab, cli: string, dns: BenchDns, o: { names: number; rateSeconds: number; rounds: number; latencySeconds: number; writerN: number }): Promise<GateResult> {
  const host = (argv: string[]) => lab.hostArgv(argv);
  const dir = path.join(lab.dir, 'gate-bench');
  fs.mkdirSync(dir, { recursive: true });
  // egressfw's table with the gate's sets, as sync declares them (the rest of the table plays no part here)
  await must(host(['nft', '-f', '-']), {
    input: 'table inet egressfw {\n set gate4 { type ipv4_addr . inet_proto . inet_service; flags timeout; }\n set gate6 { type ipv6_addr . inet_proto . inet_service; flags timeout; }\n}\n',
  });
  const config = path.join(dir, 'egressfw.yml');
  fs.writeFileSync(config, `allow:\n  - domain: "*.${ZONE}"\n    ports: [443]\ndns:\n  servers: [${BENCH_DNS}]\n  timeout: 2s\n  gate:\n    enabled: true\n    listen: [127.0.0.1]\n    port: ${GATE_PORT}\n`);
  // NODE_OPTIONS as the systemd unit sets it for the daemon (the gate inherits it)
  // EFW_BENCH_GATE_PROF=dir: a CPU profile of the gate over the whole section (node --cpu-prof), to see where its time goes
  const prof = process.env.EFW_BENCH_GATE_PROF ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(process.env.EFW_BENCH_GATE_PROF)}`] : [];
  // EFW_BENCH_GATE_FLAGS: more node flags for the gate (e.g. --trace-gc, to see its pauses in gate.out)
  const extra = (process.env.EFW_BENCH_GATE_FLAGS ?? '').split(/\s+/).filter((f) => /^--[a-z0-9-]+(=[\w.-]+)?$/.test(f));
  const gate = spawnLogged(host(['env', `NODE_OPTIONS=${NODE_OPTIONS}`, process.execPath, ...GATE_NODE_FLAGS, ...prof, ...extra, cli, 'gate', '--config', config, '--state-dir', path.join(dir, 'state')]), path.join(dir, 'gate.out'));
  const dnsmasq = spawnLogged(host([
    'dnsmasq', '--keep-in-foreground', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--pid-file=', '--user=root', '--group=root',
    `--server=${BENCH_DNS}`, '--cache-size=30000', '--bind-interfaces', '--listen-address=127.0.0.1', `--port=${DNSMASQ_PORT}`,
  ]), path.join(dir, 'dnsmasq.out'));
  const echo = spawnLogged(host([process.execPath, '-e', ECHO_SERVER]), path.join(dir, 'echo.out'));
  try {
    for (let i = 0; ; i++) {
      if (fs.existsSync(path.join(dir, 'state', 'gate.json'))) break;
      if (!alive(gate.pid!) || i > 100) throw new Error(`gate did not start: ${fs.readFileSync(path.join(dir, 'gate.out'), 'utf8').slice(-2000)}`);
      await sleep(100);
    }
    const rssMiB = async () => Number(/^VmRSS:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${gate.pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
    const idleMiB = await rssMiB();
    const dnsperf = (port: number, file: string, args: string[], timeoutMs = 120_000) => run(host(['dnsperf', '-s', '127.0.0.1', '-p', String(port), '-d', file, ...args]), { timeoutMs });

    // 1. new-IP release: every name once (A and AAAA), each answer carrying new IPs: the first 30 % at the target
    //    rate of new answers (1,000 a second), the rest at twice that (dnsperf and the upstream on the same 2 cores)
    const moderate = Math.round(o.names * 0.3);
    const releases = async (from: number, to: number, qps: number) => {
      const file = path.join(dir, `new-${from}.txt`);
      fs.writeFileSync(file, Array.from({ length: to - from }, (_, k) => `${nameOf(from + k)} A\n${nameOf(from + k)} AAAA\n`).join(''));
      progress(`gate: names ${from}-${to - 1}, A and AAAA, uncached, at ${qps} q/s (kernel insert before each answer)`);
      const logFile = path.join(dir, 'state', 'gate.log');
      const skip = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').split('\n').filter(Boolean).length : 0;
      const out = await dnsperf(GATE_PORT, file, ['-n', '1', '-Q', String(qps), '-q', '50', '-t', '5'], 300_000);
      await dnsperf(DNSMASQ_PORT, file, ['-n', '1', '-Q', String(qps), '-q', '50', '-t', '5'], 300_000);
      await sleep(500); // the log is written in batches
      const lines = fs.readFileSync(logFile, 'utf8').split('\n').filter(Boolean).slice(skip).map((l) => JSON.parse(l) as { releaseMs?: number; kernelMs?: number; ips: string[]; verdict: string; count?: number });
      const shed = lines.filter((l) => l.verdict === 'shed').reduce((n, l) => n + (l.count ?? 1), 0);
      const fresh = lines.filter((l) => l.releaseMs !== undefined && l.ips.length > 0);
      const kernel = pctl(fresh.filter((l) => l.kernelMs !== undefined).map((l) => l.kernelMs!));
      return { ...pctl(fresh.map((l) => l.releaseMs!)), kernel: { p50: kernel.p50, p99: kernel.p99 }, rate: qpsOf(out.stdout), shed, alive: alive(gate.pid!) };
    };
    const { shed: _s, alive: _a, ...release } = await releases(0, moderate, 1000);
    const releaseStress = await releases(moderate, o.names, 2000);
    const cachedMiB = await rssMiB();

    // 2. latency, cached: a moderate rate (not a saturation test), per-query latencies
    const hot = path.join(dir, 'hot.txt');
    fs.writeFileSync(hot, Array.from({ length: 1000 }, (_, i) => `${nameOf(i)} A\n`).join(''));
    const latQps = 2000;
    progress(`gate: latency of cached names at ${latQps} q/s, gate and dnsmasq`);
    const lat = async (port: number) => latencies((await dnsperf(port, hot, ['-l', String(o.latencySeconds), '-Q', String(latQps), '-q', '10', '-v'])).stdout);
    const latGate = pctl(await lat(GATE_PORT));
    const latDnsmasq = pctl(await lat(DNSMASQ_PORT));

    // 3. sustained rate, cached, alternating rounds
    const rate = { gate: [] as number[], dnsmasq: [] as number[], echo: [] as number[], seconds: o.rateSeconds };
    const cpu = { gate: { ms: 0, queries: 0 }, dnsmasq: { ms: 0, queries: 0 }, echo: { ms: 0, queries: 0 } };
    const pids = { gate: gate.pid!, dnsmasq: dnsmasq.pid!, echo: echo.pid! };
    for (let r = 0; r < o.rounds; r++) {
      for (const [which, port] of [['gate', GATE_PORT], ['dnsmasq', DNSMASQ_PORT], ['echo', ECHO_PORT]] as const) {
        const c0 = cpuMs(pids[which]);
        const out = await dnsperf(port, hot, ['-l', String(o.rateSeconds), '-q', '100', '-c', '4']);
        cpu[which].ms += cpuMs(pids[which]) - c0;
        cpu[which].queries += Number(/Queries completed:\s+(\d+)/.exec(out.stdout)?.[1] ?? NaN);
        rate[which].push(qpsOf(out.stdout));
      }
      progress(`gate: rate round ${r + 1}/${o.rounds}: gate ${rate.gate.at(-1)?.toFixed(0)} q/s, dnsmasq ${rate.dnsmasq.at(-1)?.toFixed(0)} q/s, Node UDP echo ${rate.echo.at(-1)?.toFixed(0)} q/s`);
    }

    // 4. overload: cached names offered at twice the rate the gate sustained; it must answer what it can and live
    const gq = [...rate.gate].sort((a, b) => a - b)[Math.floor(rate.gate.length / 2)] ?? 10_000;
    const offered = Math.round(2 * gq);
    progress(`gate: overload, cached names offered at ${offered} q/s (twice its rate)`);
    const over = (await dnsperf(GATE_PORT, hot, ['-l', String(o.rateSeconds), '-Q', String(offered), '-q', '500', '-c', '4', '-t', '2'])).stdout;
    const num = (re: RegExp) => Number(re.exec(over)?.[1] ?? NaN);
    const overload = {
      offered,
      qps: qpsOf(over),
      completedPct: num(/Queries completed:\s+\d+ \(([0-9.]+)%\)/),
      lost: num(/Queries lost:\s+(\d+)/),
      servfail: num(/SERVFAIL (\d+)/) || 0,
      alive: alive(gate.pid!),
      rssMiB: await rssMiB(),
    };

    // 5. the kernel writer: spawn per answer vs the gate's long-lived nft (same set, same element shape)
    progress(`gate: kernel writer, ${o.writerN} single inserts each way`);
    const spawnMs: number[] = [];
    for (let i = 0; i < o.writerN; i++) {
      const r = await run(host(['nft', '-f', '-']), { input: `add element inet egressfw gate4 { 192.0.2.${(i % 250) + 1} . tcp . ${1000 + i} timeout 60s }\n` });
      spawnMs.push(r.ms);
    }
    // NftAdmitter runs nft in this process's namespace: put the writer inside the lab host with nsenter as its "nft"
    const wrapperDir = path.join(dir, 'nft-in-lab');
    fs.mkdirSync(wrapperDir);
    fs.writeFileSync(path.join(wrapperDir, 'nft'), `#!/bin/sh\nexec ${lab.hostArgv(['nft']).join(' ')} "$@"\n`, { mode: 0o755 });
    const writer = new NftAdmitter({ toolDirs: [wrapperDir] });
    const persistentMs: number[] = [];
    await writer.admit([{ family: 4, ip: '192.0.2.1', proto: 'tcp', port: 1, timeoutSec: 60 }]); // start-up not counted
    for (let i = 0; i < o.writerN; i++) {
      const t0 = process.hrtime.bigint();
      await writer.admit([{ family: 4, ip: `192.0.2.${(i % 250) + 1}`, proto: 'udp', port: 1000 + i, timeoutSec: 60 }]);
      persistentMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    writer.close();

    const first = async (argv: string[]) => ((await run(argv)).stdout.split('\n').find((l) => /Version|version/.test(l)) ?? '').trim();
    return {
      names: o.names,
      latency: { gate: latGate, dnsmasq: latDnsmasq, qps: latQps },
      rate,
      cpuUsPerQuery: { gate: (cpu.gate.ms * 1000) / cpu.gate.queries, dnsmasq: (cpu.dnsmasq.ms * 1000) / cpu.dnsmasq.queries, echo: (cpu.echo.ms * 1000) / cpu.echo.queries },
      release,
      releaseStress,
      overload,
      rss: { idleMiB, cachedMiB, cachedAnswers: o.names * 2 },
      writer: { spawn: pctl(spawnMs), persistent: pctl(persistentMs) },
      versions: { dnsperf: await first(['dnsperf', '-h']), dnsmasq: await first(['dnsmasq', '--version']) },
    };
  } finally {
    await killPid(gate.pid);
    await killPid(dnsmasq.pid);
    await killPid(echo.pid);
    // EFW_BENCH_GATE_KEEP=dir: the gate's output and log are copied there (the lab's dir goes)
    const keep = process.env.EFW_BENCH_GATE_KEEP;
    if (keep) {
      fs.mkdirSync(keep, { recursive: true });
      for (const f of ['gate.out', 'state/gate.log']) if (fs.existsSync(path.join(dir, f))) fs.copyFileSync(path.join(dir, f), path.join(keep, path.basename(f)));
    }
    void dns;
  }
}

const ms = (x: number) => (Number.isFinite(x) ? `${x.toFixed(x < 10 ? 2 : 1)} ms` : '–');

/** The report section and its targets (scripts/bench/report.ts). */
export function gateTables(g: GateResult, table: (head: string[], rows: string[][]) => string): { text: string[]; targets: { what: string; measured: string; met: boolean | undefined }[] } {
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  const gq = med(g.rate.gate);
  const dq = med(g.rate.dnsmasq);
  const eq = med(g.rate.echo);
  const text = [
    `### DNS gate, side by side with dnsmasq`,
    '',
    `Both on loopback in the Docker host's namespace, both forwarding to the bench resolver (dnsmasq, TTL 3600 s) in the internet namespace; ` +
      `dnsmasq \`--cache-size=30000\`, the gate with one \`*.${ZONE}\` entry, NODE_OPTIONS=${NODE_OPTIONS} and ${GATE_NODE_FLAGS.join(' ')} (as the daemon runs it); load from dnsperf (${g.versions.dnsperf}). ` +
      'The gate writes one JSON line per query to stdout (the daemon\'s metrics read it) and to gate.log during all of it.',
    '',
    table(
      ['measure', 'gate', 'dnsmasq'],
      [
        [`cached name, latency at ${g.latency.qps} q/s (p50 / p99, ${g.latency.gate.n} queries)`, `${ms(g.latency.gate.p50)} / ${ms(g.latency.gate.p99)}`, `${ms(g.latency.dnsmasq.p50)} / ${ms(g.latency.dnsmasq.p99)}`],
        [`cached names, sustained rate (median of ${g.rate.gate.length} x ${g.rate.seconds} s; 4 clients, 100 outstanding)`, `${gq.toFixed(0)} q/s`, `${dq.toFixed(0)} q/s`],
        [`CPU per cached answer during those rounds (user + system; load on the machine does not change it much)`, `${g.cpuUsPerQuery.gate.toFixed(1)} µs`, `${g.cpuUsPerQuery.dnsmasq.toFixed(1)} µs`],
        [`the floor in Node, same rounds: a UDP server on the gate's dgram path answering each query with itself (no parse, cache or log): rate, CPU per answer`, `${eq.toFixed(0)} q/s (${((gq / eq) * 100).toFixed(0)} % of it), ${g.cpuUsPerQuery.echo.toFixed(1)} µs`, `${((dq / eq) * 100).toFixed(0)} % of it`],
        [`new IPs: upstream answer -> released, kernel insert included (p50 / p99 of ${g.release.n} answers, at ${g.release.rate.toFixed(0)} q/s)`, `${ms(g.release.p50)} / ${ms(g.release.p99)} (kernel ${ms(g.release.kernel.p50)} / ${ms(g.release.kernel.p99)})`, 'no kernel insert'],
        [`the same at twice that (${g.releaseStress.n} answers at ${g.releaseStress.rate.toFixed(0)} q/s, all new; shed: ${g.releaseStress.shed}, gate ${g.releaseStress.alive ? 'up' : 'DOWN'})`, `${ms(g.releaseStress.p50)} / ${ms(g.releaseStress.p99)} (kernel ${ms(g.releaseStress.kernel.p50)} / ${ms(g.releaseStress.kernel.p99)})`, 'no kernel insert'],
        [`cached names offered at ${g.overload.offered} q/s (twice the gate's rate), ${g.rate.seconds} s: answered q/s, completed, lost, SERVFAIL`, `${g.overload.qps.toFixed(0)} q/s, ${g.overload.completedPct} %, ${g.overload.lost} lost, ${g.overload.servfail} SERVFAIL; ${g.overload.alive ? 'up' : 'DOWN'}, ${g.overload.rssMiB.toFixed(0)} MiB after`, '–'],
        [`RSS: idle / ${g.names.toLocaleString('en-US')} names cached (${g.rss.cachedAnswers.toLocaleString('en-US')} answers)`, `${g.rss.idleMiB.toFixed(0)} / ${g.rss.cachedMiB.toFixed(0)} MiB`, '–'],
      ],
    ),
    '',
    'The kernel writer: one insert (add element with timeout, ack included), p50 / p99:',
    '',
    table(
      ['way', 'p50', 'p99'],
      [
        [`spawn \`nft -f -\` per answer (${g.writer.spawn.n})`, ms(g.writer.spawn.p50), ms(g.writer.spawn.p99)],
        [`one long-lived \`nft -i\`, a line + ack per answer (${g.writer.persistent.n}; what the gate uses)`, ms(g.writer.persistent.p50), ms(g.writer.persistent.p99)],
      ],
    ),
    '',
  ];
  const targets = [
    { what: 'gate: cached name latency p50 ≤ 0.5 ms', measured: ms(g.latency.gate.p50), met: g.latency.gate.p50 <= 0.5 },
    { what: 'gate: cached name latency p99 ≤ 2 ms', measured: ms(g.latency.gate.p99), met: g.latency.gate.p99 <= 2 },
    { what: 'gate: cached rate ≥ 20,000 q/s', measured: `${gq.toFixed(0)} q/s`, met: gq >= 20_000 },
    { what: "gate: cached rate ≥ dnsmasq's (issue 22)", measured: `${((gq / dq) * 100).toFixed(0)} % (${dq.toFixed(0)} q/s)`, met: gq >= dq },
    { what: `gate: new IP released ≤ 2 ms p99 after the upstream answer (${g.release.rate.toFixed(0)} new answers/s)`, measured: ms(g.release.p99), met: g.release.p99 <= 2 },
    { what: `gate: at twice that (${g.releaseStress.rate.toFixed(0)} new answers/s): sheds or answers, stays up`, measured: `p99 ${ms(g.releaseStress.p99)}, ${g.releaseStress.shed} shed, ${g.releaseStress.alive ? 'up' : 'down'}`, met: g.releaseStress.alive },
    { what: "gate: cached names at twice its rate: stays up", measured: `${g.overload.completedPct} % answered, ${g.overload.alive ? 'up' : 'down'}`, met: g.overload.alive },
    { what: `gate: RSS < 120 MB with ${g.names.toLocaleString('en-US')} names cached`, measured: `${g.rss.cachedMiB.toFixed(0)} MiB`, met: g.rss.cachedMiB * 1.048576 < 120 },
  ];
  return { text, targets };
}
