// Section 2: packet-path cost. client netns -> router netns (the Docker host: Docker's FORWARD chains, and egressfw's nft forward chain)
// -> server netns, with no rules, with a Docker-like FORWARD skeleton, with egressfw's real rules (written by the
// real CLI) at 1,000 and 10,000 allowed IPs, and with the same allowlists as linear rules.
import fs from 'node:fs';
import path from 'node:path';
import type { Lab } from '../../test/lab/lab.js';
import { dockerSkeleton, EMPTY_FILTER as EMPTY } from './kernel.js';
import { SEED } from './allowlist.js';
import { must, prng, progress, run, sleep, spawnLogged, waitForLine, killPid, alive, spawnClientHolder, wireClient, type RunResult } from './util.js';

function shuffled<T>(xs: T[], rand: () => number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

export interface PacketOpts {
  rounds: number;
  crrSeconds: number;
  latSeconds: number;
  streamSeconds: number;
  crrThreads: number;
  sizes: number[];
}

export interface ScenarioResult {
  name: string;
  label: string;
  /** allowed IPs in the set / linear chain (0 for the baselines) */
  allowed: number;
  setupMs: number[];
  /** new connections per second (crrThreads clients, connect + 1-byte request/reply + RST close) */
  cps: number[];
  /** connect() latency, one client, sequential: median and p99 of each run, in microseconds */
  latP50: number[];
  latP99: number[];
  /** bulk TCP throughput, one connection, Gbit/s */
  gbit: number[];
  /** an allowed connection works and a not-allowed one is rejected (baselines: both work) */
  enforced: string;
}

export interface PacketResult {
  family: 'IPv6';
  scenarios: ScenarioResult[];
  opts: PacketOpts;
  notes: string[];
}

const PORT = '5001';
/** server addresses (inet netns lo): the allowed target, and one that is never allowed */
const TARGET = '2001:db8:77::1';
const OTHER = '2001:db8:77::2';


/** n allowed IPv6 addresses; the benchmark's target is the LAST one (worst case for a linear chain). */
export function allowedIps(n: number): string[] {
  const ips: string[] = [];
  for (let i = 0; i < n - 1; i++) ips.push(`2001:db8:a:${(i >> 12).toString(16)}::${(i & 0xfff).toString(16)}:1`);
  ips.push(TARGET);
  return ips;
}

/** The same allowlist as one rule per IP, in a chain shaped like egressfw's (replies first, reject at the end). */
function linearRules(ips: string[]): string[] {
  return [
    ':EFW-LINEAR - [0:0]',
    '-A EFW-LINEAR -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN',
    '-A EFW-LINEAR -o docker0 -j RETURN',
    ...ips.map((ip) => `-A EFW-LINEAR -d ${ip}/128 -p tcp -m tcp --dport ${PORT} -j RETURN`),
    '-A EFW-LINEAR -i docker0 -p tcp -j REJECT --reject-with tcp-reset',
    '-A EFW-LINEAR -i docker0 -j REJECT --reject-with icmp6-adm-prohibited',
    '-A DOCKER-USER -j EFW-LINEAR',
  ];
}

function egressfwConfig(ips: string[]): string {
  // host.enabled false: the router stands for the container path only (no ufw); dns: the lab resolver (unused: no names)
  return [
    'dns:',
    '  servers: [198.51.100.53]',
    'host:',
    '  enabled: false',
    'allow:',
    ...ips.map((ip) => `  - { cidr: "${ip}", ports: [${PORT}] }`),
    '',
  ].join('\n');
}

export async function packetPath(lab: Lab, cli: string, bin: string, opts: PacketOpts): Promise<PacketResult> {
  const notes: string[] = [];
  const router = (argv: string[], o: { input?: string; timeoutMs?: number } = {}) => must(lab.hostArgv(argv), o);
  const server = (argv: string[]) => must(['nsenter', `--net=${lab.inetNetns}`, '--', ...argv]);

  // client netns: a `sleep` started inside the router's mount namespace (so lab.stop() sweeps it and whatever runs
  // in it), with a new network namespace of its own; the veth is created inside the router: the machine never sees it
  const holder = spawnClientHolder(lab, path.join(lab.dir, 'client-holder.log'));
  const servers: number[] = [];
  try {
    const client = await wireClient(lab, holder);
    await server(['ip', 'addr', 'add', `${TARGET}/128`, 'dev', 'lo', 'nodad']);
    await server(['ip', 'addr', 'add', `${OTHER}/128`, 'dev', 'lo', 'nodad']);
    for (const addr of [TARGET, OTHER]) {
      const s = spawnLogged(['nsenter', `--net=${lab.inetNetns}`, '--', bin, 'server', addr, PORT], path.join(lab.dir, `tcpbench-${addr}.log`), true);
      servers.push(s.pid!);
      await waitForLine(s, /^ready$/m, 10_000, `tcpbench server ${addr}`);
    }

    const reset = async (text: string) => {
      // egressfw's own table (containers, since 0.2) goes first: every scenario starts from Docker's rules alone
      await run(lab.hostArgv(['nft', 'delete', 'table', 'inet', 'egressfw']));
      await router(['iptables-restore'], { input: text.includes('EFW-LINEAR') ? dockerSkeleton() : text });
      await router(['ip6tables-restore'], { input: text });
      // sets last: rules referencing them are gone now
      const sets = (await router(['ipset', 'list', '-n'])).stdout.split('\n').filter(Boolean);
      for (const s of sets) await router(['ipset', 'destroy', s]);
      fs.rmSync(path.join(lab.dir, 'pkt-state'), { recursive: true, force: true });
    };

    const configs = new Map<number, string>();
    for (const n of opts.sizes) {
      const file = path.join(lab.dir, `pkt-${n}.yml`);
      fs.writeFileSync(file, egressfwConfig(allowedIps(n)));
      configs.set(n, file);
    }

    interface Scenario {
      name: string;
      label: string;
      allowed: number;
      enforce: boolean;
      setup: () => Promise<void>;
    }
    const scenarios: Scenario[] = [
      { name: 'none', label: 'no rules (baseline)', allowed: 0, enforce: false, setup: () => reset(EMPTY) },
      { name: 'docker', label: 'Docker FORWARD chains only', allowed: 0, enforce: false, setup: () => reset(dockerSkeleton()) },
      ...opts.sizes.map((n) => ({
        name: `egressfw-${n}`,
        label: `egressfw, ${n.toLocaleString('en-US')} IPs (nft set)`,
        allowed: n,
        enforce: true,
        setup: async () => {
          await reset(dockerSkeleton());
          const r = await run(lab.hostArgv([process.execPath, cli, 'sync', '--quiet', '--config', configs.get(n)!, '--state-dir', path.join(lab.dir, 'pkt-state')]), { timeoutMs: 120_000 });
          if (r.exitCode !== 0) throw new Error(`egressfw sync (${n} IPs) exited ${r.exitCode}: ${r.stderr}`);
        },
      })),
      ...opts.sizes.map((n) => ({
        name: `linear-${n}`,
        label: `linear rules, ${n.toLocaleString('en-US')} IPs`,
        allowed: n,
        enforce: true,
        setup: () => reset(dockerSkeleton(linearRules(allowedIps(n)))),
      })),
    ];
    const results = new Map<string, ScenarioResult>(
      scenarios.map((s) => [s.name, { name: s.name, label: s.label, allowed: s.allowed, setupMs: [], cps: [], latP50: [], latP99: [], gbit: [], enforced: '' }]),
    );

    const json = (r: RunResult, what: string): Record<string, number> => {
      if (r.exitCode !== 0) throw new Error(`${what} exited ${r.exitCode}: ${r.stderr}`);
      return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, number>;
    };
    const rand = prng(SEED);
    for (let round = 0; round < opts.rounds; round++) {
      // rotate the order each round, so slow drifts of the machine's load spread over all scenarios
      // a seeded shuffle per round: no setup always follows the same one (teardown work, caches)
      const order = shuffled(scenarios, rand);
      for (const s of order) {
        const res = results.get(s.name)!;
        const t0 = Date.now();
        await s.setup();
        res.setupMs.push(Date.now() - t0);
        if (round === 0) {
          const [ok, other] = await Promise.all([client([bin, 'probe', TARGET, PORT, '2000']), client([bin, 'probe', OTHER, PORT, '2000'])]);
          const o = ok.stdout.trim();
          const b = other.stdout.trim();
          const good = s.enforce ? o === 'ok' && b === 'refused' : o === 'ok' && b === 'ok';
          res.enforced = `${good ? 'yes' : 'NO'} (allowed: ${o}, other: ${b})`;
          if (!good) throw new Error(`scenario ${s.name}: expected ${s.enforce ? 'allowed ok, other refused' : 'both ok'}, got allowed ${o}, other ${b}`);
        }
        // settle, then a short warm-up load that is not counted
        await sleep(300);
        await client([bin, 'crr', TARGET, PORT, '0.25', String(opts.crrThreads)], { timeoutMs: 20_000 });
        const crr = json(await client([bin, 'crr', TARGET, PORT, String(opts.crrSeconds), String(opts.crrThreads)], { timeoutMs: (opts.crrSeconds + 20) * 1000 }), `crr ${s.name}`);
        if (crr.errors! > 0) notes.push(`${s.name} round ${round + 1}: ${crr.errors} failed connections`);
        res.cps.push(crr.rate!);
        const lat = json(await client([bin, 'crr', TARGET, PORT, String(opts.latSeconds), '1'], { timeoutMs: (opts.latSeconds + 20) * 1000 }), `latency ${s.name}`);
        res.latP50.push(lat.p50_us!);
        res.latP99.push(lat.p99_us!);
        const st = json(await client([bin, 'stream', TARGET, PORT, String(opts.streamSeconds)], { timeoutMs: (opts.streamSeconds + 20) * 1000 }), `stream ${s.name}`);
        res.gbit.push(st.gbit!);
      }
      progress(`packet path: round ${round + 1}/${opts.rounds} done (cps ${[...results.values()].map((r) => `${r.name}=${Math.round(r.cps.at(-1)!)}`).join(' ')})`);
    }
    await reset(EMPTY);
    return { family: 'IPv6', scenarios: [...results.values()], opts, notes };
  } finally {
    for (const pid of servers) await killPid(pid, 'SIGKILL');
    await killPid(holder.pid, 'SIGKILL');
    if (holder.pid && alive(holder.pid)) progress(`warning: client holder ${holder.pid} still alive`);
  }
}
