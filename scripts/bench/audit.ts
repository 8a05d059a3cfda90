// The cost of recording refused connections (issue 12), measured side by side in one run:
//  - containers: new TCP connections/s through a namespaced forward path, nftables table `inet egressfw` in audit
//    mode (the chain of the contract in the brief), with and without `ct state new update @refused4/6 {...}`;
//  - host: new TCP connections/s of the router's own connections (OUTPUT), EGRESSFW-HOST in audit mode, with no
//    recording, with egressfw's ipset recording (-m set + -j SET, the product's rules from src/plan/audit.ts),
//    and with NFLOG read by a user-space reader (scripts/bench/nflogread.c).
// Every connection goes to a destination that is not allowed, so every one reaches the recording rule: the worst
// case (allowed traffic never gets there). Everything runs in the lab's namespaces.
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Lab } from '../../test/lab/lab.js';
import { hostAuditRules, refusedSetCreateLine, REFUSED_HOST_SET } from '../../src/plan/audit.js';
import { EMPTY_FILTER } from './kernel.js';
import { alive, fmtNum, killPid, median, max, min, must, prng, progress, run, sleep, spawnLogged, table, waitForLine, type RunResult } from './util.js';

export interface AuditBenchOpts {
  rounds: number;
  crrSeconds: number;
  crrThreads: number;
  /** elements put into refused4 beforehand for the "nearly full set" variant (0: no such variant) */
  prefill: number;
}

export interface AuditScenarioResult {
  name: string;
  path: 'containers (FORWARD, nft)' | 'host (OUTPUT, iptables)';
  family: 'IPv4' | 'IPv6';
  label: string;
  /** the scenario this one is compared with */
  baseline?: string;
  cps: number[];
  /** this scenario's rate over its baseline's, per round */
  ratios: number[];
  setupMs: number[];
  /** round 0: what the recording saw against the connections made (self-check) */
  check: string;
}

export interface AuditBenchResult {
  scenarios: AuditScenarioResult[];
  opts: AuditBenchOpts;
  notes: string[];
}

const PORT = '5001';
const TARGET4 = '203.0.113.77';
const TARGET6 = '2001:db8:77::1';
const CLIENT = { v4: '198.51.100.66/26', gw4: '198.51.100.65', v6: '2001:db8:1::2/64', gw6: '2001:db8:1::1' };
const NFLOG_GROUP = '7';

/** The forward chain of the brief's contract, audit mode; `record` adds the two update rules before the final accept. */
export function containerTable(record: boolean, prefill = 0): string {
  const allow4 = Array.from({ length: 200 }, (_, i) => `192.0.2.${i} . tcp . 443`).join(', ');
  const allow6 = Array.from({ length: 200 }, (_, i) => `2001:db8:a::${i.toString(16)} . tcp . 443`).join(', ');
  const lines = [
    'table inet egressfw {',
    `  set allow4 { type ipv4_addr . inet_proto . inet_service; flags interval; elements = { ${allow4} } }`,
    `  set allow6 { type ipv6_addr . inet_proto . inet_service; flags interval; elements = { ${allow6} } }`,
    '  set gate4 { type ipv4_addr . inet_proto . inet_service; flags timeout; }',
    '  set gate6 { type ipv6_addr . inet_proto . inet_service; flags timeout; }',
    '  set refused4 { type ipv4_addr . ipv4_addr . inet_proto . inet_service; size 65536; flags dynamic,timeout; timeout 7d; counter; }',
    '  set refused6 { type ipv6_addr . ipv6_addr . inet_proto . inet_service; size 65536; flags dynamic,timeout; timeout 7d; counter; }',
    '  chain forward {',
    '    type filter hook forward priority filter - 1; policy accept;',
    '    ct state established,related accept',
    '    ct status dnat accept',
    '    fib daddr . iif oif exists accept',
    '    ip daddr . meta l4proto . th dport @allow4 accept',
    '    ip daddr . meta l4proto . th dport @gate4 accept',
    '    ip6 daddr . meta l4proto . th dport @allow6 accept',
    '    ip6 daddr . meta l4proto . th dport @gate6 accept',
    ...(record
      ? ['    ct state new update @refused4 { ip saddr . ip daddr . meta l4proto . th dport }', '    ct state new update @refused6 { ip6 saddr . ip6 daddr . meta l4proto . th dport }']
      : []),
    '    accept',
    '  }',
    '}',
  ];
  if (prefill > 0) {
    // distinct keys from the benchmarking range 198.18.0.0/15 (RFC 2544): set keys only, no packet goes there
    const elems: string[] = [];
    for (let i = 0; i < prefill; i++) elems.push(`198.18.${(i >> 8) & 255}.${i & 255} . 198.19.${(i >> 16) & 255}.${(i >> 8) & 255} . tcp . ${1 + (i % 60000)}`);
    for (let i = 0; i < elems.length; i += 5000) lines.push(`add element inet egressfw refused4 { ${elems.slice(i, i + 5000).join(', ')} }`);
  }
  return `${lines.join('\n')}\n`;
}

/** EGRESSFW-HOST in audit mode from OUTPUT, as ufw's before-output would reach it (replies and loopback first). */
export function hostFilter(variant: 'plain' | 'set' | 'nflog'): string {
  const end =
    variant === 'set'
      ? hostAuditRules(4, 'audit')
      : variant === 'nflog'
        ? [`-A EGRESSFW-HOST -m conntrack --ctstate NEW -m comment --comment "egressfw refused-log" -j NFLOG --nflog-group ${NFLOG_GROUP} --nflog-size 64`, '-A EGRESSFW-HOST -m comment --comment "egressfw audit" -j ACCEPT']
        : ['-A EGRESSFW-HOST -m comment --comment "egressfw audit" -j ACCEPT'];
  return [
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':EGRESSFW-HOST - [0:0]',
    '-A OUTPUT -o lo -j ACCEPT',
    '-A OUTPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    '-A OUTPUT -j EGRESSFW-HOST',
    '-A EGRESSFW-HOST -m set --match-set egressfw-v4 dst,dst -m comment --comment "egressfw allowed" -j ACCEPT',
    ...end,
    'COMMIT',
    '',
  ].join('\n');
}

function shuffled<T>(xs: T[], rand: () => number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

export async function auditBench(lab: Lab, bin: string, nflogBin: string, opts: AuditBenchOpts): Promise<AuditBenchResult> {
  const notes: string[] = [];
  const router = (argv: string[], o: { input?: string; timeoutMs?: number } = {}) => must(lab.hostArgv(argv), o);
  const server = (argv: string[]) => must(['nsenter', `--net=${lab.inetNetns}`, '--', ...argv]);
  const holder = spawnLogged(lab.hostArgv(['unshare', '--net', '--', 'sh', '-c', 'echo "ready $$"; exec sleep infinity']), path.join(lab.dir, 'audit-client-holder.log'), true);
  const pids: number[] = [];
  let reader: ChildProcess | undefined;
  try {
    const m = await waitForLine(holder, /^ready (\d+)$/m, 10_000, 'client namespace holder');
    const cpid = Number(m[1]);
    if (fs.readlinkSync(`/proc/${cpid}/ns/net`) === fs.readlinkSync('/proc/self/ns/net')) throw new Error('client holder is not in its own network namespace');
    const client = (argv: string[], o: { timeoutMs?: number } = {}) => run(['nsenter', '-t', String(cpid), '-n', '-m', '--', ...argv], o);
    await router(['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    await router(['ip', '-batch', '-'], {
      input: [`link add docker0 type veth peer name eth0 netns ${cpid}`, `addr add ${CLIENT.gw4}/26 dev docker0`, `addr add ${CLIENT.gw6}/64 dev docker0 nodad`, 'link set docker0 up', ''].join('\n'),
    });
    const c = await client(['sh', '-c', [
      'set -e',
      'sysctl -q -w net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 net.ipv4.ip_local_port_range="1024 65000"',
      'ip link set lo up',
      `ip addr add ${CLIENT.v4} dev eth0`,
      `ip addr add ${CLIENT.v6} dev eth0 nodad`,
      'ip link set eth0 up',
      `ip route add default via ${CLIENT.gw4}`,
      `ip -6 route add default via ${CLIENT.gw6}`,
    ].join('\n')]);
    if (c.exitCode !== 0) throw new Error(`client setup: ${c.stderr}`);
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

    interface Scenario {
      name: string;
      path: AuditScenarioResult['path'];
      family: AuditScenarioResult['family'];
      label: string;
      baseline?: string;
      target: string;
      /** run the client in the router itself (its own connections: OUTPUT) */
      local: boolean;
      setup: () => Promise<void>;
      /** after the round-0 warm-up: what the recording saw */
      check?: (conns: number) => Promise<string>;
    }
    const ct = (family: 'IPv4' | 'IPv6', record: boolean, prefill = 0): Scenario => {
      const v = family === 'IPv4' ? '4' : '6';
      const name = `ct${v}-${record ? (prefill ? 'record-full' : 'record') : 'plain'}`;
      return {
        name,
        path: 'containers (FORWARD, nft)',
        family,
        label: record ? `update @refused${v}${prefill ? ` (set prefilled with ${fmtNum(prefill)} elements)` : ''}` : 'no recording (audit: accept)',
        ...(record ? { baseline: `ct${v}-plain` } : {}),
        target: family === 'IPv4' ? TARGET4 : TARGET6,
        local: false,
        setup: async () => {
          await reset();
          const file = path.join(lab.dir, `audit-${name}.nft`);
          fs.writeFileSync(file, containerTable(record, prefill));
          await router(['nft', '-f', file], { timeoutMs: 120_000 });
        },
        ...(record
          ? {
              check: async (conns: number) => {
                // the client's own tuple only (the prefill elements have no counters of their own worth reading)
                const r = await run(lab.hostArgv(['nft', 'get', 'element', 'inet', 'egressfw', `refused${v}`, `{ ${CLIENT[`v${v}` as 'v4'].split('/')[0]} . ${family === 'IPv4' ? TARGET4 : TARGET6} . tcp . ${PORT} }`]));
                const got = /packets (\d+)/.exec(r.stdout)?.[1];
                return `refused${v} counted ${got ?? 'nothing'} of ${conns} connections`;
              },
            }
          : {}),
      };
    };
    const host = (variant: 'plain' | 'set' | 'nflog'): Scenario => ({
      name: `host-${variant}`,
      path: 'host (OUTPUT, iptables)',
      family: 'IPv4',
      label: variant === 'plain' ? 'no recording (audit: ACCEPT)' : variant === 'set' ? '-m set ! --match-set … -j SET --add-set (ipset, egressfw)' : `NFLOG group ${NFLOG_GROUP} + user-space reader`,
      ...(variant !== 'plain' ? { baseline: 'host-plain' } : {}),
      target: TARGET4,
      local: true,
      setup: async () => {
        await reset();
        await hostSets();
        await router(['iptables-restore'], { input: hostFilter(variant) });
        if (variant === 'nflog') await startReader();
      },
      ...(variant === 'set'
        ? {
            check: async (conns: number) => {
              const r = await router(['ipset', 'save', REFUSED_HOST_SET[4]]);
              return `${REFUSED_HOST_SET[4]} counted ${/packets (\d+)/.exec(r.stdout)?.[1] ?? 'nothing'} of ${conns} connections`;
            },
          }
        : variant === 'nflog'
          ? {
              check: async (conns: number) => {
                const got = await stopReader();
                await startReader(); // again, for the measured run
                return `reader got ${got?.packets ?? 'nothing'} packets of ${conns} connections (${got?.messages ?? 0} netlink messages, ${got?.enobufs ?? 0} ENOBUFS)`;
              },
            }
          : {}),
    });
    const scenarios: Scenario[] = [
      ct('IPv4', false),
      ct('IPv4', true),
      ...(opts.prefill ? [ct('IPv4', true, opts.prefill)] : []),
      ct('IPv6', false),
      ct('IPv6', true),
      host('plain'),
      host('set'),
      host('nflog'),
    ];
    const results = new Map<string, AuditScenarioResult>(
      scenarios.map((s) => [s.name, { name: s.name, path: s.path, family: s.family, label: s.label, ...(s.baseline ? { baseline: s.baseline } : {}), cps: [], ratios: [], setupMs: [], check: '' }]),
    );
    const json = (r: RunResult, what: string): Record<string, number> => {
      if (r.exitCode !== 0) throw new Error(`${what} exited ${r.exitCode}: ${r.stderr}`);
      return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, number>;
    };
    const rand = prng(12);
    for (let round = 0; round < opts.rounds; round++) {
      for (const s of shuffled(scenarios, rand)) {
        const res = results.get(s.name)!;
        const t0 = Date.now();
        await s.setup();
        res.setupMs.push(Date.now() - t0);
        const crr = (seconds: number) => {
          const argv = [bin, 'crr', s.target, PORT, String(seconds), String(opts.crrThreads)];
          return s.local ? run(lab.hostArgv(argv), { timeoutMs: (seconds + 20) * 1000 }) : client(argv, { timeoutMs: (seconds + 20) * 1000 });
        };
        await sleep(300);
        const warm = json(await crr(0.25), `warm-up ${s.name}`);
        if (round === 0) {
          if (warm.conns! <= 0 || warm.errors! > 0) throw new Error(`scenario ${s.name}: warm-up made ${warm.conns} connections, ${warm.errors} errors`);
          res.check = s.check ? await s.check(warm.conns!) : `${warm.conns} connections`;
          progress(`audit bench: ${s.name}: ${res.check}`);
        }
        const r = json(await crr(opts.crrSeconds), `crr ${s.name}`);
        if (r.errors! > 0) notes.push(`${s.name} round ${round + 1}: ${r.errors} failed connections`);
        res.cps.push(r.rate!);
      }
      for (const res of results.values()) if (res.baseline) res.ratios.push(res.cps.at(-1)! / results.get(res.baseline)!.cps.at(-1)!);
      progress(`audit bench: round ${round + 1}/${opts.rounds} (cps ${[...results.values()].map((r) => `${r.name}=${Math.round(r.cps.at(-1)!)}`).join(' ')})`);
    }
    await reset();
    return { scenarios: [...results.values()], opts, notes };
  } finally {
    if (reader?.pid) await killPid(reader.pid, 'SIGKILL');
    for (const pid of pids) await killPid(pid, 'SIGKILL');
    await killPid(holder.pid, 'SIGKILL');
    if (holder.pid && alive(holder.pid)) progress(`warning: client holder ${holder.pid} still alive`);
  }
}

const pct = (r: number) => `${r >= 1 ? '+' : '−'}${Math.abs((r - 1) * 100).toFixed(1)} %`;

/** Markdown: one table, rates and cost against the same chain without recording, measured within each round. */
export function renderAuditBench(r: AuditBenchResult): string {
  const rows = r.scenarios.map((s) => [
    s.path,
    s.family,
    s.label,
    fmtNum(median(s.cps)),
    s.baseline ? `${pct(median(s.ratios))} (${pct(min(s.ratios))} … ${pct(max(s.ratios))})` : '–',
    s.check,
  ]);
  const out = [
    `New TCP connections/s, ${r.opts.crrThreads} client threads for ${r.opts.crrSeconds} s per run, ${r.opts.rounds} rounds; in each round every setup is applied and measured in turn (seeded random order), and each recording variant is divided by its baseline in the same round. The change column is the median of those per-round ratios (min … max). Every connection is to a destination that is not allowed (audit mode lets it through), so every one reaches the recording rule: the worst case.`,
    '',
    table(['path', 'family', 'recording', 'new conn/s (median)', 'change vs. no recording', 'self-check (round 1 warm-up)'], rows),
  ];
  if (r.notes.length) out.push('', ...r.notes.map((n) => `- ${n}`));
  return out.join('\n');
}
