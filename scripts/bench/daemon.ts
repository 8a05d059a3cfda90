// Section 3: `egressfw daemon` with 1,000 names: memory and CPU while idle, the CPU of one refresh, and the time
// from a DNS change to enforcement (the new IP in the set).
import fs from 'node:fs';
import path from 'node:path';
import type { Lab } from '../../test/lab/lab.js';
import { changedNames, configYaml, recordsOf } from './allowlist.js';
import { BENCH_DNS, type BenchDns } from './dns.js';
import { resetKeepHookScript } from './kernel.js';
import { alive, killPid, median, must, progress, run, sleep, spawnLogged } from './util.js';

export interface DaemonOpts {
  n: number;
  idleSeconds: number;
  refreshSamples: number;
  changeSamples: number;
  /** TTL (and dns.minTtl) while measuring DNS change -> enforcement */
  ttl: number;
}

export interface DaemonResult {
  n: number;
  /** how it was started (from the systemd unit) */
  command: string;
  idleSeconds: number;
  /** VmRSS samples (kB), one a second during the idle window */
  rssKb: number[];
  /** VmHWM (kB) at the end: the daemon's peak, refreshes included */
  hwmKb: number;
  /** CPU seconds (user+sys, its children included) used during the idle window */
  idleCpuSec: number;
  driftChecks: number;
  /** CPU seconds and wall ms of one full refresh (DNS + compare + no change) */
  refreshCpuSec: number[];
  refreshMs: number[];
  /** DNS change -> new IP in egressfw-v6, ms; with TTL = dns.minTtl = ttl */
  changeMs: number[];
  ttl: number;
  defaultRefreshPerHour: number;
}

const TICK = 100; // USER_HZ on Linux

function cpuTicks(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields 14-17 (utime, stime, cutime, cstime) are at 11..14 after "pid (comm) "
  return Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
}
function status(pid: number, key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? NaN);
}

/** Environment= and ExecStart= of egressfw.service, from `egressfw install --systemd --dry-run`. */
async function unitCommand(lab: Lab, cli: string, cfg: string, stateDir: string): Promise<{ env: string[]; argv: string[] }> {
  const r = await must(lab.hostArgv([process.execPath, cli, 'install', '--systemd', '--dry-run', '--config', cfg, '--state-dir', stateDir]));
  const unit = r.stdout.split(/^--- /m).find((s) => s.startsWith('/etc/systemd/system/egressfw.service'));
  const exec = unit && /^ExecStart=(.*)$/m.exec(unit);
  if (!unit || !exec) throw new Error(`no ExecStart in egressfw.service:\n${r.stdout}`);
  return { env: [...unit.matchAll(/^Environment=(.*)$/gm)].map((m) => m[1]!), argv: exec[1]!.trim().split(/\s+/) };
}

export async function daemonSection(lab: Lab, cli: string, dns: BenchDns, opts: DaemonOpts): Promise<DaemonResult> {
  const stateDir = path.join(lab.dir, 'daemon-state');
  const cfg = path.join(lab.dir, 'daemon.yml');
  const log = path.join(lab.dir, 'daemon.log');
  // The cron refresh is moved out of the window (1 January), so the window shows what the daemon costs between
  // refreshes; one refresh is measured on its own and added 12 times an hour (the default "*/5 * * * *").
  const never = '0 0 1 1 *';
  fs.writeFileSync(cfg, configYaml(opts.n, { dnsServer: BENCH_DNS, refresh: never }));
  await must(lab.hostArgv(['sh', '-c', resetKeepHookScript(stateDir)]));
  const events = () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  const refreshes = () => events().filter((e) => e.event === 'refresh');
  const waitRefreshes = async (count: number, ms: number) => {
    const t0 = Date.now();
    while (refreshes().length < count) {
      if (Date.now() - t0 > ms) throw new Error(`daemon: no refresh #${count} within ${ms} ms:\n${fs.readFileSync(log, 'utf8').slice(-2000)}`);
      if (!alive(pid)) throw new Error(`daemon died:\n${fs.readFileSync(log, 'utf8').slice(-2000)}`);
      await sleep(50);
    }
    return refreshes()[count - 1]!;
  };

  // Started exactly as the systemd unit that `egressfw install --systemd` writes would start it (its Environment= and ExecStart=).
  const unit = await unitCommand(lab, cli, cfg, stateDir);
  const child = spawnLogged(lab.hostArgv(['env', ...unit.env, ...unit.argv, '--json']), log);
  const pid = child.pid!;
  try {
    // nsenter execs (no fork): the pid is node's
    await waitRefreshes(1, 60_000);
    await sleep(1000);
    // ---- idle window
    const rssKb: number[] = [];
    const c0 = cpuTicks(pid);
    for (let s = 0; s < opts.idleSeconds; s++) {
      await sleep(1000);
      rssKb.push(status(pid, 'VmRSS'));
    }
    const idleCpuSec = (cpuTicks(pid) - c0) / TICK;
    if (refreshes().length !== 1) progress(`WARNING: the daemon refreshed during the idle window (${refreshes().length - 1} times)`);
    progress(`daemon: idle ${opts.idleSeconds} s: ${idleCpuSec.toFixed(2)} CPU s, RSS ${Math.round(median(rssKb) / 1024)} MB`);

    // ---- one refresh at a time (SIGHUP: reload config + refresh at once), CPU and wall
    const refreshCpuSec: number[] = [];
    const refreshMs: number[] = [];
    for (let k = 0; k < opts.refreshSamples; k++) {
      const before = refreshes().length;
      const t0 = cpuTicks(pid);
      process.kill(pid, 'SIGHUP');
      const ev = await waitRefreshes(before + 1, 60_000);
      await sleep(300); // children reaped, log written
      refreshCpuSec.push((cpuTicks(pid) - t0) / TICK);
      refreshMs.push(Number(ev.ms));
      await sleep(500);
    }
    progress(`daemon: refresh CPU ${refreshCpuSec.map((c) => c.toFixed(2)).join(', ')} s`);

    // ---- DNS change -> enforcement. TTL and dns.minTtl = opts.ttl: the daemon refreshes when the TTL runs out.
    await dns.restart(opts.ttl);
    fs.writeFileSync(cfg, configYaml(opts.n, { dnsServer: BENCH_DNS, refresh: never, minTtl: `${opts.ttl}s` }));
    const before = refreshes().length;
    process.kill(pid, 'SIGHUP');
    await waitRefreshes(before + 1, 60_000);
    const changeMs: number[] = [];
    const pool = [...changedNames(opts.n)];
    const changed = new Set<number>();
    for (let k = 0; k < opts.changeSamples; k++) {
      // changes land at evenly spread points of the refresh cycle (just after a refresh + k/n of the TTL)
      await sleep(Math.round((k / opts.changeSamples) * opts.ttl * 1000));
      const i = pool[k % pool.length]!;
      changed.add(i);
      const newIp = recordsOf(i, 1).AAAA[0]!;
      const t0 = Date.now();
      await dns.set(changed, i);
      for (;;) {
        const r = await run(lab.hostArgv(['ipset', 'test', 'egressfw-v6', `${newIp},tcp:443`]));
        if (r.exitCode === 0) break;
        if (Date.now() - t0 > (opts.ttl + 60) * 1000) throw new Error(`daemon: ${newIp} not enforced after ${Date.now() - t0} ms`);
        if (!alive(pid)) throw new Error(`daemon died:\n${fs.readFileSync(log, 'utf8').slice(-2000)}`);
        await sleep(50);
      }
      changeMs.push(Date.now() - t0);
    }
    progress(`daemon: DNS change -> enforced: ${changeMs.join(', ')} ms`);
    const hwmKb = status(pid, 'VmHWM');
    return {
      n: opts.n,
      command: [...unit.env, ...unit.argv.map((a) => a.replace(lab.dir, '<lab>'))].join(' '),
      idleSeconds: opts.idleSeconds,
      rssKb,
      hwmKb,
      idleCpuSec,
      driftChecks: Math.floor(opts.idleSeconds / 30),
      refreshCpuSec,
      refreshMs,
      changeMs,
      ttl: opts.ttl,
      defaultRefreshPerHour: 12,
    };
  } finally {
    await killPid(pid, 'SIGTERM');
    await dns.set(new Set()).catch(() => {});
    await dns.restart(3600).catch(() => {});
    await run(lab.hostArgv(['sh', '-c', resetKeepHookScript(stateDir)]));
  }
}
