// Section "metrics" (issue 19): what Prometheus metrics cost the daemon. 1,000 names, a refresh every 3 s
// (the soak schedule), drift checks every 30 s; the same daemon without metrics, then with both outputs
// (textfile and a unix-socket endpoint scraped every 5 s, three times Prometheus' default rate), in
// alternating phases. CPU is the process's own (user+sys, children included: nft, ipset, iptables-save),
// so other load on the machine does not count; RSS is sampled every 10 s across the long metrics phase.
import fs from 'node:fs';
import { request } from 'node:http';
import path from 'node:path';
import type { Lab } from '../../test/lab/lab.js';
import { configYaml } from './allowlist.js';
import { BENCH_DNS, type BenchDns } from './dns.js';
import { resetKeepHookScript } from './kernel.js';
import { alive, killPid, median, must, progress, run, sleep, spawnLogged } from './util.js';

export interface MetricsBenchOpts {
  n: number;
  /** seconds per phase without / with metrics (alternating: off, on, off, on, ...) */
  phaseSeconds: number;
  phases: number;
  /** seconds of the last, long phase with metrics (RSS over time) */
  soakSeconds: number;
  /** seconds of the same soak without metrics before it, for comparison (0: none) */
  baselineSoakSeconds: number;
}

export interface MetricsBenchResult {
  n: number;
  phaseSeconds: number;
  /** CPU seconds per phase */
  offCpu: number[];
  onCpu: number[];
  /** refreshes per phase (a 3 s schedule: ~phaseSeconds / 3) */
  offRefreshes: number[];
  onRefreshes: number[];
  scrapes: number;
  scrapeBytes: number;
  soakSeconds: number;
  /** [seconds since start of the soak, VmRSS kB] */
  rss: [number, number][];
  /** the same without metrics (baseline soak) */
  baselineRss: [number, number][];
  soakCpu: number;
  soakRefreshes: number;
}

const TICK = 100;
function cpuTicks(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
}
const rssKb = (pid: number) => Number(/^VmRSS:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);

function scrape(socketPath: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: '/metrics' }, (res) => {
      let n = 0;
      res.on('data', (c: Buffer) => (n += c.length));
      res.on('end', () => (res.statusCode === 200 ? resolve(n) : reject(new Error(`scrape: HTTP ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

export async function metricsSection(lab: Lab, cli: string, _dns: BenchDns, o: MetricsBenchOpts): Promise<MetricsBenchResult> {
  const stateDir = path.join(lab.dir, 'metrics-state');
  const sock = path.join(lab.dir, 'metrics.sock');
  const textfile = path.join(lab.dir, 'node-exporter', 'egressfw.prom');
  fs.mkdirSync(path.dirname(textfile), { recursive: true });
  const base = configYaml(o.n, { dnsServer: BENCH_DNS, refresh: '*/3 * * * * *' });
  const cfgOff = path.join(lab.dir, 'metrics-off.yml');
  const cfgOn = path.join(lab.dir, 'metrics-on.yml');
  fs.writeFileSync(cfgOff, base);
  fs.writeFileSync(cfgOn, `${base}metrics:\n  textfile: ${textfile}\n  listen: "unix:${sock}"\n`);
  await must(lab.hostArgv(['sh', '-c', resetKeepHookScript(stateDir)]));
  // one sync first: every phase starts from an enforced kernel, as a running host is
  await must(lab.hostArgv([process.execPath, cli, 'sync', '--quiet', '--config', cfgOff, '--state-dir', stateDir]));
  const r: MetricsBenchResult = { n: o.n, phaseSeconds: o.phaseSeconds, offCpu: [], onCpu: [], offRefreshes: [], onRefreshes: [], scrapes: 0, scrapeBytes: 0, soakSeconds: o.soakSeconds, rss: [], baselineRss: [], soakCpu: 0, soakRefreshes: 0 };

  /** one daemon for `seconds`: CPU ticks over the window (after a 6 s warm-up), refreshes, RSS samples */
  async function phase(on: boolean, seconds: number, rss?: [number, number][]): Promise<{ cpu: number; refreshes: number }> {
    const log = path.join(lab.dir, `metrics-${on ? 'on' : 'off'}.log`);
    fs.writeFileSync(log, '');
    const child = spawnLogged(lab.hostArgv(['env', 'NODE_OPTIONS=--max-semi-space-size=1', process.execPath, cli, 'daemon', '--json', '--config', on ? cfgOn : cfgOff, '--state-dir', stateDir]), log);
    const pid = child.pid!;
    const refreshes = () => fs.readFileSync(log, 'utf8').split('\n').filter((l) => l.includes('"event":"refresh"')).length;
    try {
      await sleep(6000);
      if (!alive(pid)) throw new Error(`daemon died:\n${fs.readFileSync(log, 'utf8').slice(-2000)}`);
      const c0 = cpuTicks(pid);
      const n0 = refreshes();
      const t0 = Date.now();
      let nextScrape = 0;
      let nextRss = 0;
      while (Date.now() - t0 < seconds * 1000) {
        const t = (Date.now() - t0) / 1000;
        if (on && t >= nextScrape) {
          r.scrapeBytes = await scrape(sock);
          r.scrapes++;
          nextScrape += 5;
        }
        if (rss && t >= nextRss) {
          rss.push([Math.round(t), rssKb(pid)]);
          nextRss += 10;
        }
        if (!alive(pid)) throw new Error(`daemon died:\n${fs.readFileSync(log, 'utf8').slice(-2000)}`);
        await sleep(250);
      }
      const errors = fs.readFileSync(log, 'utf8').split('\n').filter((l) => l.includes('"event":"error"'));
      if (errors.length) progress(`WARNING: ${errors.length} errors in the ${on ? 'metrics' : 'plain'} daemon's log, e.g. ${errors[0]}`);
      return { cpu: (cpuTicks(pid) - c0) / TICK, refreshes: refreshes() - n0 };
    } finally {
      await killPid(pid, 'SIGTERM');
    }
  }

  try {
    for (let k = 0; k < o.phases; k++) {
      const off = await phase(false, o.phaseSeconds);
      r.offCpu.push(off.cpu);
      r.offRefreshes.push(off.refreshes);
      const on = await phase(true, o.phaseSeconds);
      r.onCpu.push(on.cpu);
      r.onRefreshes.push(on.refreshes);
      progress(`metrics: phase ${k + 1}/${o.phases}: CPU ${off.cpu.toFixed(2)} s without, ${on.cpu.toFixed(2)} s with metrics (${off.refreshes} / ${on.refreshes} refreshes)`);
    }
    if (o.baselineSoakSeconds) await phase(false, o.baselineSoakSeconds, r.baselineRss);
    const soak = await phase(true, o.soakSeconds, r.rss);
    r.soakCpu = soak.cpu;
    r.soakRefreshes = soak.refreshes;
    progress(`metrics: soak ${o.soakSeconds} s with metrics: CPU ${soak.cpu.toFixed(1)} s, RSS ${Math.round(r.rss[0]![1] / 1024)} -> ${Math.round(r.rss.at(-1)![1] / 1024)} MB`);
    return r;
  } finally {
    await run(lab.hostArgv(['sh', '-c', resetKeepHookScript(stateDir)]));
  }
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/** RSS medians per 2 minutes, with metrics and (when run) without, side by side. */
function curve(r: MetricsBenchResult): string[] {
  const slots = Math.ceil(Math.max(r.soakSeconds, ...r.baselineRss.map(([t]) => t + 1)) / 120);
  const at = (xs: [number, number][], k: number) => {
    const m = median(xs.filter(([t]) => t >= k * 120 && t < (k + 1) * 120).map(([, kb]) => kb));
    return Number.isNaN(m) ? '-' : (m / 1024).toFixed(1);
  };
  const head = Array.from({ length: slots }, (_, k) => `${k * 2}-${k * 2 + 2}`);
  return [
    '',
    `| RSS MB, median per 2 min | ${head.join(' | ')} |`,
    `|---|${head.map(() => '---').join('|')}|`,
    ...(r.baselineRss.length ? [`| without metrics | ${head.map((_, k) => at(r.baselineRss, k)).join(' | ')} |`] : []),
    `| with metrics | ${head.map((_, k) => at(r.rss, k)).join(' | ')} |`,
  ];
}

export function renderMetricsBench(r: MetricsBenchResult): string {
  const off = sum(r.offCpu);
  const on = sum(r.onCpu);
  const wall = r.phaseSeconds * r.offCpu.length;
  const perRefresh = (cpu: number, n: number) => (n ? `${((cpu / n) * 1000).toFixed(0)} ms` : '-');
  const window = (from: number, to: number) => median(r.rss.filter(([t]) => t >= from && t < to).map(([, kb]) => kb));
  const first = window(0, 120);
  const last = window(r.soakSeconds - 120, r.soakSeconds + 1);
  // least-squares slope of RSS over the soak, MB per hour
  const n = r.rss.length;
  const mt = sum(r.rss.map(([t]) => t)) / n;
  const mk = sum(r.rss.map(([, k]) => k)) / n;
  const slope = sum(r.rss.map(([t, k]) => (t - mt) * (k - mk))) / sum(r.rss.map(([t]) => (t - mt) ** 2));
  return [
    `${r.n} names, refresh every 3 s, drift check every 30 s; ${r.offCpu.length} alternating phases of ${r.phaseSeconds} s each without and with metrics`,
    `(textfile every 15 s + a unix-socket endpoint scraped every 5 s, ${r.scrapes} scrapes of ${(r.scrapeBytes / 1024).toFixed(1)} KiB). CPU: the daemon's own, children included.`,
    '',
    '| | CPU s per phase | CPU per refresh | share of one core | refreshes |',
    '|---|---|---|---|---|',
    `| without metrics | ${r.offCpu.map((c) => c.toFixed(2)).join(', ')} | ${perRefresh(off, sum(r.offRefreshes))} | ${((off / wall) * 100).toFixed(1)} % | ${r.offRefreshes.join(', ')} |`,
    `| with metrics | ${r.onCpu.map((c) => c.toFixed(2)).join(', ')} | ${perRefresh(on, sum(r.onRefreshes))} | ${((on / wall) * 100).toFixed(1)} % | ${r.onRefreshes.join(', ')} |`,
    '',
    `Metrics cost ${(((on - off) / off) * 100).toFixed(1)} % of the daemon's CPU (target < 5 %).`,
    '',
    ...curve(r),
    '',
    `Soak with metrics, ${Math.round(r.soakSeconds / 60)} min (${r.soakRefreshes} refreshes, ${r.soakCpu.toFixed(1)} CPU s): RSS median of the first 2 min ${(first / 1024).toFixed(1)} MB, of the last 2 min ${(last / 1024).toFixed(1)} MB; least-squares slope ${((slope * 3600) / 1024).toFixed(1)} MB/h over ${n} samples.`,
  ].join('\n');
}
