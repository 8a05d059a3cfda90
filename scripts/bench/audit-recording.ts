// The cost of recording refused connections (issue 12), measured side by side in one run:
//  - containers: new TCP connections/s through a namespaced forward path, egressfw's own nftables table in audit
//    mode (rendered by src/plan/nft.ts), with and without its `ct state new update @refused4/6 {...}` rules;
//  - host: new TCP connections/s of the router's own connections (OUTPUT), EGRESSFW-HOST in audit mode, with no
//    recording, with egressfw's ipset recording (-m set + -j SET, the product's rules from src/plan/audit-rules.ts),
//    and with NFLOG read by a user-space reader (scripts/bench/nflogread.c).
// Every connection goes to a destination that is not allowed, so every one reaches the recording rule: the worst
// case (allowed traffic never gets there). Everything runs in the lab's namespaces.
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startLab, type Lab } from '../../test/lab/lab.js';
import { parseConfig } from '../../src/config/load.js';
import { hostAuditRules, refusedSetCreateLine } from '../../src/plan/audit-rules.js';
import { REFUSED_HOST_SET } from '../../src/plan/kernel-names.js';
import { desiredSets } from '../../src/plan/desired.js';
import { buildNftDesired, renderNftScript } from '../../src/plan/nft.js';
import { EMPTY_FILTER } from './kernel.js';
import { alive, CLIENT, fmtNum, killPid, median, max, min, must, progress, run, sleep, spawnClientHolder, spawnLogged, table, waitForLine, wireClient, type RunResult } from './util.js';

export interface AuditBenchOpts {
  /** ABBA blocks per comparison (baseline, recording, recording, baseline) */
  blocks: number;
  /** seconds per load run */
  runSeconds: number;
  crrThreads: number;
  /** elements put into refused4 beforehand for the "nearly full set" comparison (0: no such comparison) */
  prefill: number;
  /** also compare with this many copies of each recording rule (1: not) */
  amplify: number;
}

export interface AuditComparison {
  name: string;
  path: 'containers (FORWARD, nft)' | 'host (OUTPUT, iptables)';
  family: 'IPv4' | 'IPv6';
  label: string;
  /** copies of the recording rule */
  times: number;
  /** new connections/s of every run without and with recording */
  baseCps: number[];
  recCps: number[];
  /** per ABBA block: (B1 + B2) / (A1 + A2) */
  ratios: number[];
  /** after the warm-up with recording on: what the recording saw against the connections made (self-check) */
  check: string;
}

export interface AuditBenchResult {
  comparisons: AuditComparison[];
  opts: AuditBenchOpts;
  notes: string[];
}

const PORT = '5001';
const TARGET4 = '203.0.113.77';
const TARGET6 = '2001:db8:77::1';
const NFLOG_GROUP = '7';

/** egressfw's own audit-mode config for the bench: 200 allowed networks per family (none of them the target). */
const BENCH_CONFIG = parseConfig(
  [
    'mode: audit',
    'host: { enabled: false }',
    'dns: { servers: [198.51.100.53] }',
    'allow:',
    ...Array.from({ length: 200 }, (_, i) => `  - { cidr: "192.0.2.${i}", ports: [443] }`),
    ...Array.from({ length: 200 }, (_, i) => `  - { cidr: "2001:db8:a::${i.toString(16)}", ports: [443] }`),
    '',
  ].join('\n'),
  'bench.yml',
);

/**
 * The product's own nft transaction (src/plan/nft.ts) for that config: the table, its sets and the forward chain
 * in audit mode. `times` copies of the recording rules (0: none), in the product's place (before the final accept).
 */
export function containerScript(times: number, withSets: boolean): string {
  const want = buildNftDesired(BENCH_CONFIG, desiredSets(BENCH_CONFIG, [], [{ host: '198.51.100.53', port: 53 }]));
  const record = want.rules.filter((r) => r.tag.startsWith('record'));
  const rest = want.rules.filter((r) => !r.tag.startsWith('record'));
  if (record.length !== 4 || rest.at(-1)?.tag !== 'audit') throw new Error(`the product's forward chain changed shape: ${want.rules.map((r) => r.tag).join(', ')}`);
  const rules = [...rest.slice(0, -1), ...Array.from({ length: times }, () => record).flat(), rest.at(-1)!];
  return renderNftScript({ ...want, rules }, { sets: withSets ? [4, 6] : [], chain: true });
}

/** `prefill` elements for refused4, from the benchmarking range 198.18.0.0/15 (RFC 2544): set keys only, no packet goes there. */
export function prefillScript(prefill: number): string {
  const elems: string[] = [];
  for (let i = 0; i < prefill; i++) elems.push(`198.18.${(i >> 8) & 255}.${i & 255} . 198.19.${(i >> 16) & 255}.${(i >> 8) & 255} . tcp . ${1 + (i % 60000)}`);
  const lines: string[] = [];
  for (let i = 0; i < elems.length; i += 5000) lines.push(`add element inet egressfw refused4 { ${elems.slice(i, i + 5000).join(', ')} }`);
  return `${lines.join('\n')}\n`;
}

export type HostVariant = 'plain' | 'set' | 'nflog';

/** EGRESSFW-HOST's rules in audit mode: allowed set (a miss here), then the recording variant, then ACCEPT. */
export function hostChainRules(variant: HostVariant, times = 1): string[] {
  const accept = '-A EGRESSFW-HOST -m comment --comment "egressfw audit" -j ACCEPT';
  const record =
    variant === 'set'
      ? hostAuditRules(4, 'audit').filter((r) => r !== accept)
      : variant === 'nflog'
        ? [`-A EGRESSFW-HOST -m conntrack --ctstate NEW -m comment --comment "egressfw refused-log" -j NFLOG --nflog-group ${NFLOG_GROUP} --nflog-size 64`]
        : [];
  return ['-A EGRESSFW-HOST -m set --match-set egressfw-v4 dst,dst -m comment --comment "egressfw allowed" -j ACCEPT', ...Array.from({ length: times }, () => record).flat(), accept];
}

/** The filter table with EGRESSFW-HOST reached from OUTPUT as ufw's before-output would (replies and loopback first). */
export function hostFilter(): string {
  return ['*filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':EGRESSFW-HOST - [0:0]', '-A OUTPUT -o lo -j ACCEPT', '-A OUTPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT', '-A OUTPUT -j EGRESSFW-HOST', ...hostChainRules('plain'), 'COMMIT', ''].join('\n');
}

/** `iptables-restore --noflush` text rewriting EGRESSFW-HOST only (declaring it empties it): one transaction. */
export function hostToggle(variant: HostVariant, times = 1): string {
  return ['*filter', ':EGRESSFW-HOST - [0:0]', ...hostChainRules(variant, times), 'COMMIT', ''].join('\n');
}

/** The whole section: a lab of its own (no Docker), the load generator and NFLOG reader built in it, the comparisons. */
export async function auditSection(opts: { quick: boolean; blocks?: number }): Promise<AuditBenchResult> {
  const here = path.dirname(fileURLToPath(import.meta.url));
  let lab: Lab | undefined;
  try {
    lab = await startLab({ docker: false });
    progress(`lab ${lab.id} up (audit recording cost)`);
    const bin = path.join(lab.dir, 'tcpbench');
    const nflog = path.join(lab.dir, 'nflogread');
    await must(['gcc', '-O2', '-pthread', '-o', bin, path.join(here, 'tcpbench.c')]);
    await must(['gcc', '-O2', '-o', nflog, path.join(here, 'nflogread.c')]);
    const q = opts.quick;
    return await auditBench(lab, bin, nflog, { blocks: opts.blocks ?? (q ? 2 : 15), runSeconds: q ? 0.3 : 0.5, crrThreads: 2, prefill: q ? 5000 : 50_000, amplify: 20 });
  } finally {
    await lab?.stop();
  }
}

export async function auditBench(lab: Lab, bin: string, nflogBin: string, opts: AuditBenchOpts): Promise<AuditBenchResult> {
  const notes: string[] = [];
  const router = (argv: string[], o: { input?: string; timeoutMs?: number } = {}) => must(lab.hostArgv(argv), o);
  const server = (argv: string[]) => must(['nsenter', `--net=${lab.inetNetns}`, '--', ...argv]);
  const holder = spawnClientHolder(lab, path.join(lab.dir, 'audit-client-holder.log'));
  const pids: number[] = [];
  let reader: ChildProcess | undefined;
  try {
    const client = await wireClient(lab, holder);
    await router(['sysctl', '-q', '-w', 'net.ipv4.ip_local_port_range=1024 65000']);
    await server(['ip', 'addr', 'add', `${TARGET4}/32`, 'dev', 'lo']);
    await server(['ip', 'addr', 'add', `${TARGET6}/128`, 'dev', 'lo', 'nodad']);
    for (const addr of [TARGET4, TARGET6]) {
      const s = spawnLogged(['nsenter', `--net=${lab.inetNetns}`, '--', bin, 'server', addr, PORT], path.join(lab.dir, `audit-tcpbench-${addr}.log`), true);
      pids.push(s.pid!);
      await waitForLine(s, /^ready$/m, 10_000, `tcpbench server ${addr}`);
    }

    const readerOut = path.join(lab.dir, 'nflogread.json');
    const startReader = async () => {
      fs.rmSync(readerOut, { force: true });
      reader = spawnLogged(lab.hostArgv([nflogBin, NFLOG_GROUP, readerOut]), path.join(lab.dir, 'nflogread.log'), true);
      await waitForLine(reader, /^ready$/m, 10_000, 'nflogread');
    };
    const stopReader = async (): Promise<Record<string, number> | undefined> => {
      if (!reader?.pid) return undefined;
      const pid = reader.pid;
      reader = undefined;
      await killPid(pid, 'SIGTERM');
      for (let i = 0; i < 100 && !fs.existsSync(readerOut); i++) await sleep(20);
      return fs.existsSync(readerOut) ? (JSON.parse(fs.readFileSync(readerOut, 'utf8')) as Record<string, number>) : undefined;
    };
    const reset = async () => {
      await stopReader();
      await router(['iptables-restore'], { input: EMPTY_FILTER });
      await run(lab.hostArgv(['nft', 'delete', 'table', 'inet', 'egressfw']));
      for (const s of (await router(['ipset', 'list', '-n'])).stdout.split('\n').filter(Boolean)) await router(['ipset', 'destroy', s]);
    };
    const hostSets = async () => router(['ipset', 'restore'], { input: `create egressfw-v4 hash:net,port family inet hashsize 1024 maxelem 65536\nadd egressfw-v4 192.0.2.1,tcp:443\n${refusedSetCreateLine(4)}\n` });
    const tuple = (v: '4' | '6') => `{ ${CLIENT[`v${v}`].split('/')[0]} . ${v === '4' ? TARGET4 : TARGET6} . tcp . ${PORT} }`;

    interface Plan {
      name: string;
      path: AuditComparison['path'];
      family: AuditComparison['family'];
      label: string;
      /** copies of the recording rule: the per-rule cost, resolved above the machine's noise */
      times: number;
      target: string;
      /** the client runs in the router itself: its own connections (OUTPUT) */
      local: boolean;
      prepare: () => Promise<void>;
      toggle: (record: boolean) => Promise<void>;
      check: (conns: number) => Promise<string>;
    }
    const ct = (v: '4' | '6', prefill = 0, times = 1): Plan => ({
      name: `ct${v}${prefill ? '-full' : ''}${times > 1 ? `-x${times}` : ''}`,
      path: 'containers (FORWARD, nft)',
      family: v === '4' ? 'IPv4' : 'IPv6',
      times,
      label: `update @refused${v}${prefill ? ` (set prefilled with ${fmtNum(prefill)} elements)` : ''}${times > 1 ? ` ×${times} (amplified)` : ''}`,
      target: v === '4' ? TARGET4 : TARGET6,
      local: false,
      prepare: async () => {
        await reset();
        const file = path.join(lab.dir, 'audit-table.nft');
        fs.writeFileSync(file, containerScript(0, true) + (prefill ? prefillScript(prefill) : ''));
        await router(['nft', '-f', file], { timeoutMs: 120_000 });
      },
      // the product's transaction without the static sets: chain flushed and rewritten, sets and records kept
      toggle: async (record) => {
        await router(['nft', '-f', '-'], { input: containerScript(record ? times : 0, false) });
      },
      check: async (conns) => {
        const r = await run(lab.hostArgv(['nft', 'get', 'element', 'inet', 'egressfw', `refused${v}`, tuple(v)]));
        return `refused${v} counted ${/packets (\d+)/.exec(r.stdout)?.[1] ?? 'nothing'} of ${conns} connections${times > 1 ? ` × ${times} rules` : ''}`;
      },
    });
    const host = (variant: 'set' | 'nflog', times = 1): Plan => ({
      name: `host-${variant}${times > 1 ? `-x${times}` : ''}`,
      path: 'host (OUTPUT, iptables)',
      family: 'IPv4',
      times,
      label: `${variant === 'set' ? '-m set ! --match-set … -j SET --add-set (ipset, egressfw)' : `NFLOG group ${NFLOG_GROUP} + user-space reader`}${times > 1 ? ` ×${times} (amplified)` : ''}`,
      target: TARGET4,
      local: true,
      prepare: async () => {
        await reset();
        await hostSets();
        await router(['iptables-restore'], { input: hostFilter() });
        if (variant === 'nflog') await startReader(); // idle (no packets for it) while recording is off
      },
      toggle: async (record) => {
        await router(['iptables-restore', '--noflush'], { input: hostToggle(record ? variant : 'plain', times) });
      },
      check: async (conns) => {
        if (variant === 'set') {
          const r = await router(['ipset', 'save', REFUSED_HOST_SET[4]]);
          return `${REFUSED_HOST_SET[4]} counted ${/packets (\d+)/.exec(r.stdout)?.[1] ?? 'nothing'} of ${conns} connections${times > 1 ? ` × ${times} rules` : ''}`;
        }
        const got = await stopReader();
        await startReader(); // again, for the measured runs
        return `reader got ${got?.packets ?? 'nothing'} packets of ${conns} connections${times > 1 ? ` × ${times} rules` : ''} (${got?.messages ?? 0} netlink messages, ${got?.enobufs ?? 0} ENOBUFS)`;
      },
    });
    const x = opts.amplify;
    const plans: Plan[] = [
      ct('4'),
      ...(opts.prefill ? [ct('4', opts.prefill)] : []),
      ct('6'),
      host('set'),
      host('nflog'),
      ...(x > 1 ? [ct('4', 0, x), host('set', x), host('nflog', x)] : []),
    ];
    const json = (r: RunResult, what: string): Record<string, number> => {
      if (r.exitCode !== 0) throw new Error(`${what} exited ${r.exitCode}: ${r.stderr}`);
      return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, number>;
    };
    const comparisons: AuditComparison[] = [];
    for (const p of plans) {
      const res: AuditComparison = { name: p.name, path: p.path, family: p.family, label: p.label, times: p.times, baseCps: [], recCps: [], ratios: [], check: '' };
      const crr = async (seconds: number, what: string) => {
        const argv = [bin, 'crr', p.target, PORT, String(seconds), String(opts.crrThreads)];
        const r = json(p.local ? await run(lab.hostArgv(argv), { timeoutMs: (seconds + 20) * 1000 }) : await client(argv, { timeoutMs: (seconds + 20) * 1000 }), `${what} ${p.name}`);
        if (r.errors! > 0) notes.push(`${p.name} ${what}: ${r.errors} failed connections`);
        return r;
      };
      await p.prepare();
      await p.toggle(true);
      await sleep(200);
      const warm = await crr(0.3, 'warm-up');
      if (warm.conns! <= 0) throw new Error(`${p.name}: the warm-up made no connection`);
      res.check = await p.check(warm.conns!);
      progress(`audit bench: ${p.name}: ${res.check}`);
      // ABBA: a drift of the machine's load within a block cancels out of its ratio
      const one = async (record: boolean) => {
        await p.toggle(record);
        await sleep(100);
        const r = await crr(opts.runSeconds, record ? 'recording' : 'baseline');
        (record ? res.recCps : res.baseCps).push(r.rate!);
        return r.rate!;
      };
      for (let b = 0; b < opts.blocks; b++) {
        const a1 = await one(false);
        const b1 = await one(true);
        const b2 = await one(true);
        const a2 = await one(false);
        res.ratios.push((b1 + b2) / (a1 + a2));
      }
      progress(`audit bench: ${p.name}: median ${median(res.ratios).toFixed(3)} over ${opts.blocks} blocks`);
      comparisons.push(res);
    }
    await reset();
    return { comparisons, opts, notes };
  } finally {
    if (reader?.pid) await killPid(reader.pid, 'SIGKILL');
    for (const pid of pids) await killPid(pid, 'SIGKILL');
    await killPid(holder.pid, 'SIGKILL');
    if (holder.pid && alive(holder.pid)) progress(`warning: client holder ${holder.pid} still alive`);
  }
}

const pct = (r: number) => `${r >= 1 ? '+' : '−'}${Math.abs((r - 1) * 100).toFixed(1)} %`;

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const i = (s.length - 1) * q;
  const lo = Math.floor(i);
  return s[lo]! + (s[Math.min(lo + 1, s.length - 1)]! - s[lo]!) * (i - lo);
}

/** Markdown: one table, rates and the cost against the same chain without recording, per ABBA block. */
export function renderAuditBench(r: AuditBenchResult): string {
  const rows = r.comparisons.map((c) => [
    c.path,
    c.family,
    c.label,
    fmtNum(median(c.baseCps)),
    fmtNum(median(c.recCps)),
    c.times > 1 ? `${pct(median(c.ratios))} → ${pct(median(c.ratios) ** (1 / c.times))} per rule` : pct(median(c.ratios)),
    `${pct(quantile(c.ratios, 0.25))} … ${pct(quantile(c.ratios, 0.75))}`,
    `${pct(min(c.ratios))} … ${pct(max(c.ratios))}`,
    c.check,
  ]);
  const out = [
    `New TCP connections/s (connect, 1-byte request and reply, close), ${r.opts.crrThreads} client threads, ${r.opts.runSeconds} s per run. Each comparison alternates the same chain without and with recording in ${r.opts.blocks} blocks of four runs (without, with, with, without: a drift of the machine's load cancels out of the block's ratio); switching is one small kernel transaction, the sets and their records stay. Every connection goes to a destination that is not allowed (audit mode lets it through), so every one reaches the recording rule: the worst case. The change is the median of the blocks' ratios; the spread shows their middle half and their extremes. On a shared machine the spread of a single rule's change is wider than the 3 % target, so the amplified rows put ${r.opts.amplify} copies of the recording rule in the chain (each copy does the same work: a lookup and a counter update of the same element; NFLOG: one more message per packet) and give the per-rule cost as the ${r.opts.amplify}th root of their ratio. Copies after the first find the element's cache lines warm, so the first copy may cost somewhat more than that root; the single-rule rows bound it within their spread.`,
    '',
    table(['path', 'family', 'recording', 'conn/s without', 'conn/s with', 'change (median)', 'middle half', 'min … max', 'self-check (warm-up)'], rows),
  ];
  if (r.notes.length) out.push('', ...r.notes.map((n) => `- ${n}`));
  return out.join('\n');
}
