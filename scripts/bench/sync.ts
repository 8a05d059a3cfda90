// Section 1: what one `egressfw sync` costs, against allowlist size, side by side with per-IP ufw rules and linear
// iptables rules. Runs the real CLI (node dist/cli.js) inside the lab's Docker-host namespace (private /etc/ufw, /run, ...).
import fs from 'node:fs';
import path from 'node:path';
import type { Lab } from '../../test/lab/lab.js';
import { changedNames, configYaml, uniqueIps } from './allowlist.js';
import { BENCH_DNS, type BenchDns } from './dns.js';
import { resetKeepHookScript, unhookScript } from './kernel.js';
import { parseStrace, summarize, STRACE_ARGS, type SpawnSummary } from './trace.js';
import { median, must, progress, run } from './util.js';

export interface SyncOpts {
  sizes: number[];
  /** timed repetitions per size */
  reps: (n: number) => number;
  /** first sync that also hooks ufw: at this size, this many times */
  firstEverN: number;
  firstEverReps: number;
  /** per-IP `ufw allow out` at these sizes (reps each) */
  ufwSizes: number[];
  ufwReps: (n: number) => number;
  applyReps: number;
}

export interface Sample {
  ms: number[];
  rssKb: number[];
}

export interface SizeRow {
  n: number;
  /** members of egressfw-v4 / -v6 after the first sync (distinct IP,port tuples + the DNS server) */
  entries: { v4: number; v6: number };
  first: Sample;
  refresh: Sample;
  refresh5: Sample;
  spawns: { first: SpawnSummary; refresh: SpawnSummary; refresh5: SpawnSummary };
  /** kernel work only, ms: egressfw's own restore texts (from `plan --json`), and the same IPs as linear rules */
  apply: { egressfw: number[]; linearCreate: number[]; linearReplace: number[] };
}

export interface UfwRow {
  n: number;
  rules: number;
  totalMs: number[];
  /** every rule of every rep, in order: [index within the rep, ms] */
  perRule: [number, number][];
}

export interface SyncResult {
  rows: SizeRow[];
  firstEver: { n: number; ms: number[]; rssKb: number[]; spawns: SpawnSummary };
  ufw: UfwRow[];
  /** per-rule ufw fit t(k) = a + b*k ms, k = rules already there */
  ufwFit: { a: number; b: number };
  nsenterMs: number;
  /** what every run pays, at `n` names: node start-up alone, the CLI's start-up (`--version`), a sync without DNS */
  floor: { n: number; nodeMs: number[]; cliMs: number[]; offlineMs: number[] };
}

export async function syncSection(lab: Lab, cli: string, dns: BenchDns, opts: SyncOpts): Promise<SyncResult> {
  const stateDir = path.join(lab.dir, 'sync-state');
  const host = (argv: string[], o: { input?: string; timeoutMs?: number } = {}) => run(lab.hostArgv(argv), o);
  const hostMust = (argv: string[], o: { input?: string; timeoutMs?: number } = {}) => must(lab.hostArgv(argv), o);
  const sh = (script: string) => hostMust(['sh', '-c', script], { timeoutMs: 60_000 });
  const configs = new Map<number, string>();
  const configFor = (n: number) => {
    let f = configs.get(n);
    if (!f) {
      f = path.join(lab.dir, `sync-${n}.yml`);
      fs.writeFileSync(f, configYaml(n, { dnsServer: BENCH_DNS }));
      configs.set(n, f);
    }
    return f;
  };
  const syncArgv = (n: number) => [process.execPath, cli, 'sync', '--quiet', '--config', configFor(n), '--state-dir', stateDir];

  const timed = async (n: number, into: Sample) => {
    const r = await host(['/usr/bin/time', '-f', 'EFWTIME %e %M', ...syncArgv(n)], { timeoutMs: 120_000 });
    const m = /EFWTIME (\S+) (\d+)/.exec(r.stderr);
    if (r.exitCode !== 0 || !m) throw new Error(`sync (${n} names) exited ${r.exitCode}: ${r.stderr.slice(0, 2000)}`);
    into.ms.push(r.ms);
    into.rssKb.push(Number(m[2]));
  };
  let traceNo = 0;
  const traced = async (n: number): Promise<SpawnSummary> => {
    const out = path.join(lab.dir, `strace-${traceNo++}.txt`);
    const r = await host([...STRACE_ARGS, '-o', out, ...syncArgv(n)], { timeoutMs: 180_000 });
    if (r.exitCode !== 0) throw new Error(`traced sync (${n} names) exited ${r.exitCode}: ${r.stderr.slice(0, 2000)}`);
    const s = summarize(parseStrace(fs.readFileSync(out, 'utf8')));
    fs.rmSync(out, { force: true });
    return s;
  };
  const reset = () => sh(resetKeepHookScript(stateDir));
  const nsenter: number[] = [];
  for (let i = 0; i < 5; i++) nsenter.push((await hostMust(['true'])).ms);

  // ---- A. the very first sync: writes the ufw hook, `ufw default reject outgoing`, `ufw reload`
  const firstEver = { n: opts.firstEverN, ms: [] as number[], rssKb: [] as number[], spawns: undefined as SpawnSummary | undefined };
  for (let r = 0; r <= opts.firstEverReps; r++) {
    await sh(unhookScript(stateDir));
    if (r === 0) firstEver.spawns = await traced(opts.firstEverN);
    else {
      const s: Sample = { ms: [], rssKb: [] };
      await timed(opts.firstEverN, s);
      firstEver.ms.push(s.ms[0]!);
      firstEver.rssKb.push(s.rssKb[0]!);
    }
  }
  progress(`sync: first sync incl. ufw hook (${opts.firstEverN} names): ${firstEver.ms.map((m) => Math.round(m)).join(', ')} ms`);

  // ---- B. per size: first sync (ufw already hooked), refresh without change, refresh with 5 % of names changed
  const rows: SizeRow[] = [];
  const floor: SyncResult['floor'] = { n: opts.sizes.includes(1000) ? 1000 : opts.sizes.at(-1)!, nodeMs: [], cliMs: [], offlineMs: [] };
  for (const n of opts.sizes) {
    const row: SizeRow = {
      n,
      entries: { v4: 0, v6: 0 },
      first: { ms: [], rssKb: [] },
      refresh: { ms: [], rssKb: [] },
      refresh5: { ms: [], rssKb: [] },
      spawns: {} as SizeRow['spawns'],
      apply: { egressfw: [], linearCreate: [], linearReplace: [] },
    };
    const changed = changedNames(n);
    for (let r = 0; r <= opts.reps(n); r++) {
      await reset();
      if (r === 0) {
        // warm-up round, traced: counts processes and kernel writes (deterministic; strace slows it, so not timed)
        row.spawns.first = await traced(n);
        const terse = async (set: string) => Number(/Number of entries: (\d+)/.exec((await hostMust(['ipset', 'list', '-t', set])).stdout)?.[1] ?? NaN);
        row.entries = { v4: await terse('egressfw-v4'), v6: await terse('egressfw-v6') };
        row.spawns.refresh = await traced(n);
        await dns.set(changed);
        row.spawns.refresh5 = await traced(n);
      } else {
        await timed(n, row.first);
        await timed(n, row.refresh);
        await dns.set(changed);
        await timed(n, row.refresh5);
      }
      await dns.set(new Set());
    }
    for (const k of ['first', 'refresh', 'refresh5'] as const) {
      const s = row.spawns[k];
      if (k === 'refresh' && s.writes !== 0) progress(`WARNING: refresh without DNS change wrote to the kernel: ${s.writeCmds.join('; ')}`);
    }
    if (n === floor.n) {
      await run(lab.hostArgv(syncArgv(n))); // settle: the kernel matches the saved state
      for (let r = 0; r < opts.reps(n); r++) {
        floor.nodeMs.push((await hostMust([process.execPath, '-e', '0'])).ms);
        floor.cliMs.push((await hostMust([process.execPath, cli, '--version'])).ms);
        floor.offlineMs.push((await hostMust([...syncArgv(n), '--offline'], { timeoutMs: 120_000 })).ms);
      }
    }
    progress(`sync: ${n} names: first ${Math.round(median(row.first.ms))} ms, refresh ${Math.round(median(row.refresh.ms))} ms, refresh 5% ${Math.round(median(row.refresh5.ms))} ms`);
    rows.push(row);
  }

  // ---- C. kernel work only: egressfw's restore texts vs the same IPs as linear rules (iptables-restore)
  for (const row of rows) {
    await reset();
    const plan = await host([process.execPath, cli, 'plan', '--json', '--config', configFor(row.n), '--state-dir', stateDir], { timeoutMs: 120_000 });
    const doc = JSON.parse(plan.stdout) as { render: { ipsetRestore: string | null; iptablesRestore: string | null; ip6tablesRestore: string | null } };
    const { v4, v6 } = uniqueIps(row.n);
    const linear = (ips: string[], len: number) =>
      ['*filter', ':EFW-LINEAR - [0:0]', ...ips.map((ip) => `-A EFW-LINEAR -d ${ip}/${len} -p tcp -m tcp --dport 443 -m comment --comment egressfw-linear -j ACCEPT`), 'COMMIT', ''].join('\n');
    const lin4 = linear(v4, 32);
    const lin6 = linear(v6, 128);
    for (let r = 0; r < opts.applyReps; r++) {
      await reset();
      let ms = 0;
      if (doc.render.ipsetRestore) ms += (await hostMust(['ipset', 'restore'], { input: doc.render.ipsetRestore })).ms;
      if (doc.render.iptablesRestore) ms += (await hostMust(['iptables-restore', '--noflush'], { input: doc.render.iptablesRestore })).ms;
      if (doc.render.ip6tablesRestore) ms += (await hostMust(['ip6tables-restore', '--noflush'], { input: doc.render.ip6tablesRestore })).ms;
      row.apply.egressfw.push(ms);
      await reset();
      const c4 = await hostMust(['iptables-restore', '--noflush'], { input: lin4 });
      const c6 = await hostMust(['ip6tables-restore', '--noflush'], { input: lin6 });
      row.apply.linearCreate.push(c4.ms + c6.ms);
      const p4 = await hostMust(['iptables-restore', '--noflush'], { input: lin4 });
      const p6 = await hostMust(['ip6tables-restore', '--noflush'], { input: lin6 });
      row.apply.linearReplace.push(p4.ms + p6.ms);
    }
    await reset();
  }
  progress('sync: kernel-apply comparison done');

  // ---- D. the naive way: one `ufw allow out` per IP
  const ufw: UfwRow[] = [];
  await reset();
  const userRules = path.join(lab.dir, 'ufw-user-rules');
  await sh(`mkdir -p ${userRules} && cp /etc/ufw/user.rules /etc/ufw/user6.rules ${userRules}/`);
  for (const n of opts.ufwSizes) {
    const { v4, v6 } = uniqueIps(n);
    const ips = [...v4, ...v6];
    const row: UfwRow = { n, rules: ips.length, totalMs: [], perRule: [] };
    for (let r = 0; r < opts.ufwReps(n); r++) {
      let total = 0;
      for (const [k, ip] of ips.entries()) {
        const res = await hostMust(['ufw', 'allow', 'out', 'to', ip, 'port', '443', 'proto', 'tcp'], { timeoutMs: 60_000 });
        total += res.ms;
        row.perRule.push([k, res.ms]);
      }
      row.totalMs.push(total);
      await sh(`cp ${userRules}/user.rules ${userRules}/user6.rules /etc/ufw/ && ufw reload >/dev/null`);
      progress(`sync: per-IP ufw rules, ${n} names (${ips.length} rules): ${(total / 1000).toFixed(1)} s`);
    }
    ufw.push(row);
  }
  // least squares over the largest size's samples: per-rule ms = a + b * (rules already there)
  const pts = ufw.at(-1)?.perRule ?? [];
  const mx = pts.reduce((s, p) => s + p[0], 0) / (pts.length || 1);
  const my = pts.reduce((s, p) => s + p[1], 0) / (pts.length || 1);
  const sxy = pts.reduce((s, p) => s + (p[0] - mx) * (p[1] - my), 0);
  const sxx = pts.reduce((s, p) => s + (p[0] - mx) ** 2, 0);
  const b = sxx ? Math.max(0, sxy / sxx) : 0;
  const a = my - b * mx;

  return { rows, firstEver: { ...firstEver, spawns: firstEver.spawns! }, ufw, ufwFit: { a, b }, nsenterMs: median(nsenter), floor };
}

/** Extrapolated total ms for `rules` per-IP ufw rules (sum of a + b*k for k = 0..rules-1). */
export function ufwEstimate(fit: { a: number; b: number }, rules: number): number {
  return rules * fit.a + (fit.b * rules * (rules - 1)) / 2;
}
