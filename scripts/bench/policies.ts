// Per-workload policies (issue 18): what they cost per new connection, and how fast the daemon maps a new container.
//  1. packet path (IPv6, client netns -> lab host -> server): Docker's FORWARD chains alone; egressfw without
//     policies (1,000 allowed addresses); egressfw with policies (1,000 containers in the source -> policy map,
//     20 policies of 50 entries each); and the alternative design, one concatenated set saddr . daddr . proto . port
//     holding every container's allowed entries (1,000 x 50 elements).
//  2. Docker start event -> map entry: 100 containers started at once under the real daemon and dockerd.
//  3. memory: the daemon's RSS with those containers, and the policy state for 1,000 containers and 20 policies.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startLab, type Lab } from '../../test/lab/lab.js';
import { dockerSkeleton } from './kernel.js';
import { CLIENT, killPid, must, progress, run, sleep, spawnClientHolder, spawnLogged, waitForLine, wireClient, type RunResult } from './util.js';

const PORT = '5001';
const TARGET = '2001:db8:77::1';
const OTHER = '2001:db8:77::2';
const CONTAINERS = 1000;
const POLICIES = 20;
const ENTRIES = 50;
const CLIENT6 = CLIENT.v6.split('/')[0]!;

export interface PoliciesBenchResult {
  cps: { name: string; label: string; runs: number[]; enforced: string }[];
  window: { containers: number; ms: number[]; p50: number; p99: number; mapped: number } | null;
  rss: { daemonMiB: number | null; stateMiB: number; containers: number; policies: number };
  notes: string[];
}

/** entry j of policy i: a /128 in 2001:db8:b::/48; policy 0's last entry is the benchmark's target */
const entryOf = (i: number, j: number) => (i === 0 && j === ENTRIES - 1 ? TARGET : `2001:db8:b:${i.toString(16)}::${(j + 1).toString(16)}`);
/** container k's address: the client is container 0 (policy 0); the rest are addresses nobody uses */
const containerAddr = (k: number) => (k === 0 ? CLIENT6 : `2001:db8:1::${(k + 0x1000).toString(16)}`);

function policiesConfig(): string {
  const lines = ['dns:', '  servers: [198.51.100.53]', 'host:', '  enabled: false', 'allow: []', 'containers:', '  default: none', 'policies:'];
  for (let i = 0; i < POLICIES; i++) {
    lines.push(`  p${i}:`, '    allow:');
    for (let j = 0; j < ENTRIES; j++) lines.push(`      - { cidr: "${entryOf(i, j)}", ports: [${PORT}] }`);
  }
  return `${lines.join('\n')}\n`;
}

function plainConfig(): string {
  const lines = ['dns:', '  servers: [198.51.100.53]', 'host:', '  enabled: false', 'allow:'];
  for (let k = 0; k < CONTAINERS - 1; k++) lines.push(`  - { cidr: "2001:db8:a:${(k >> 12).toString(16)}::${(k & 0xfff).toString(16)}:1", ports: [${PORT}] }`);
  lines.push(`  - { cidr: "${TARGET}", ports: [${PORT}] }`);
  return `${lines.join('\n')}\n`;
}

/** the map members sync cannot know here (no Docker in this lab): container k -> policy k mod 20 */
function mapMembers(): string {
  const members = Array.from({ length: CONTAINERS }, (_, k) => `${containerAddr(k)} : jump pol-p${k % POLICIES}`);
  const out: string[] = [];
  for (let i = 0; i < members.length; i += 500) out.push(`add element inet egressfw policy6 { ${members.slice(i, i + 500).join(', ')} }`);
  return `${out.join('\n')}\n`;
}

/** the alternative: one set of saddr . daddr . proto . port, every container's entries, in a table like egressfw's */
function concatTable(): string {
  const lines = [
    'add table inet efwcat',
    'add set inet efwcat pairs6 { type ipv6_addr . ipv6_addr . inet_proto . inet_service; }',
    'add chain inet efwcat forward { type filter hook forward priority filter - 1; policy accept; }',
    'add rule inet efwcat forward ct state established,related accept',
    'add rule inet efwcat forward ip6 saddr . ip6 daddr . meta l4proto . th dport @pairs6 accept',
    'add rule inet efwcat forward meta l4proto tcp reject with tcp reset',
    'add rule inet efwcat forward reject with icmpx admin-prohibited',
  ];
  const elems: string[] = [];
  for (let k = 0; k < CONTAINERS; k++) for (let j = 0; j < ENTRIES; j++) elems.push(`${containerAddr(k)} . ${entryOf(k % POLICIES, j)} . tcp . ${PORT}`);
  for (let i = 0; i < elems.length; i += 1000) lines.push(`add element inet efwcat pairs6 { ${elems.slice(i, i + 1000).join(', ')} }`);
  return `${lines.join('\n')}\n`;
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]! : NaN;
};

async function packetPart(lab: Lab, cli: string, bin: string, rounds: number, seconds: number, notes: string[]): Promise<PoliciesBenchResult['cps']> {
  const router = (argv: string[], o: { input?: string; timeoutMs?: number } = {}) => must(lab.hostArgv(argv), o);
  const server = (argv: string[]) => must(['nsenter', `--net=${lab.inetNetns}`, '--', ...argv]);
  const holder = spawnClientHolder(lab, path.join(lab.dir, 'pol-client-holder.log'));
  const pids: number[] = [];
  try {
    const client = await wireClient(lab, holder);
    for (const addr of [TARGET, OTHER]) {
      await server(['ip', 'addr', 'add', `${addr}/128`, 'dev', 'lo', 'nodad']);
      const s = spawnLogged(['nsenter', `--net=${lab.inetNetns}`, '--', bin, 'server', addr, PORT], path.join(lab.dir, `pol-tcpbench-${addr}.log`), true);
      pids.push(s.pid!);
      await waitForLine(s, /^ready$/m, 10_000, `tcpbench server ${addr}`);
    }
    const files = { plain: path.join(lab.dir, 'pol-plain.yml'), policies: path.join(lab.dir, 'pol-policies.yml'), map: path.join(lab.dir, 'pol-map.nft'), concat: path.join(lab.dir, 'pol-concat.nft') };
    fs.writeFileSync(files.plain, plainConfig());
    fs.writeFileSync(files.policies, policiesConfig());
    fs.writeFileSync(files.map, mapMembers());
    fs.writeFileSync(files.concat, concatTable());
    const reset = async () => {
      await run(lab.hostArgv(['nft', 'delete', 'table', 'inet', 'egressfw']));
      await run(lab.hostArgv(['nft', 'delete', 'table', 'inet', 'efwcat']));
      await router(['iptables-restore'], { input: dockerSkeleton() });
      await router(['ip6tables-restore'], { input: dockerSkeleton() });
      fs.rmSync(path.join(lab.dir, 'pol-state'), { recursive: true, force: true });
    };
    const sync = async (config: string) => {
      const r = await run(lab.hostArgv([process.execPath, cli, 'sync', '--quiet', '--config', config, '--state-dir', path.join(lab.dir, 'pol-state')]), { timeoutMs: 180_000 });
      if (r.exitCode !== 0) throw new Error(`egressfw sync exited ${r.exitCode}: ${r.stderr}`);
    };
    const scenarios: { name: string; label: string; enforce: boolean; setup: () => Promise<void> }[] = [
      { name: 'docker', label: "Docker's FORWARD chains alone", enforce: false, setup: reset },
      { name: 'plain', label: `egressfw, no policies (${CONTAINERS.toLocaleString('en-US')} allowed addresses)`, enforce: true, setup: async () => {
        await reset();
        await sync(files.plain);
      } },
      {
        name: 'vmap',
        label: `egressfw, policies: ${CONTAINERS.toLocaleString('en-US')} containers mapped to ${POLICIES} policies of ${ENTRIES} entries (verdict map)`,
        enforce: true,
        setup: async () => {
          await reset();
          await sync(files.policies);
          await router(['nft', '-f', files.map]);
        },
      },
      {
        name: 'concat',
        label: `alternative: one set saddr . daddr . proto . port (${(CONTAINERS * ENTRIES).toLocaleString('en-US')} elements)`,
        enforce: true,
        setup: async () => {
          await reset();
          await router(['nft', '-f', files.concat], { timeoutMs: 180_000 });
        },
      },
    ];
    const out = scenarios.map((s) => ({ name: s.name, label: s.label, runs: [] as number[], enforced: '' }));
    const json = (r: RunResult, what: string) => {
      if (r.exitCode !== 0) throw new Error(`${what} exited ${r.exitCode}: ${r.stderr}`);
      return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, number>;
    };
    for (let round = 0; round < rounds; round++) {
      // alternate the order: slow drifts of the machine's load spread over all scenarios
      const order = round % 2 ? [...scenarios].reverse() : scenarios;
      for (const s of order) {
        const res = out.find((o) => o.name === s.name)!;
        const t0 = Date.now();
        await s.setup();
        if (round === 0) {
          const [ok, other] = await Promise.all([client([bin, 'probe', TARGET, PORT, '2000']), client([bin, 'probe', OTHER, PORT, '2000'])]);
          const good = s.enforce ? ok.stdout.trim() === 'ok' && other.stdout.trim() === 'refused' : ok.stdout.trim() === 'ok';
          res.enforced = `${good ? 'yes' : 'NO'} (allowed: ${ok.stdout.trim()}, other: ${other.stdout.trim()}; setup ${Date.now() - t0} ms)`;
          if (!good) throw new Error(`scenario ${s.name}: ${res.enforced}`);
        }
        await sleep(300);
        await client([bin, 'crr', TARGET, PORT, '0.25', '2'], { timeoutMs: 20_000 });
        const crr = json(await client([bin, 'crr', TARGET, PORT, String(seconds), '2'], { timeoutMs: (seconds + 20) * 1000 }), `crr ${s.name}`);
        if (crr.errors! > 0) notes.push(`${s.name} round ${round + 1}: ${crr.errors} failed connections`);
        res.runs.push(crr.rate!);
      }
      progress(`policies: packet round ${round + 1}/${rounds} (${out.map((o) => `${o.name}=${Math.round(o.runs.at(-1)!)}`).join(' ')})`);
    }
    await reset();
    return out;
  } finally {
    for (const pid of pids) await killPid(pid, 'SIGKILL');
    await killPid(holder.pid, 'SIGKILL');
  }
}

async function windowPart(lab: Lab, cli: string, n: number, notes: string[]): Promise<{ window: PoliciesBenchResult['window']; daemonMiB: number | null }> {
  const config = path.join(lab.dir, 'pol-window.yml');
  const stateDir = path.join(lab.dir, 'pol-window-state');
  fs.writeFileSync(config, `dns:\n  servers: [${lab.dnsServer}]\nhost:\n  enabled: false\nallow: []\ncontainers:\n  default: none\npolicies:\n${Array.from({ length: POLICIES }, (_, i) => `  p${i}:\n    allow:\n      - { cidr: "203.0.113.${i + 1}", ports: [80] }\n`).join('')}`);
  const log = path.join(lab.dir, 'pol-daemon.log');
  const daemon = spawnLogged(lab.hostArgv([process.execPath, cli, 'daemon', '--json', '--config', config, '--state-dir', stateDir]), log, true);
  const lines: string[] = [];
  daemon.stdout!.on('data', (d: Buffer) => lines.push(...d.toString().trim().split('\n')));
  try {
    const t0 = Date.now();
    while (!lines.some((l) => /"resync"/.test(l))) {
      if (Date.now() - t0 > 30_000) throw new Error(`the daemon did not map the inventory within 30 s: ${lines.slice(-5).join(' | ')}`);
      await sleep(100);
    }
    const net = await run(lab.hostArgv(['docker', 'network', 'create', '--subnet', '198.51.100.128/25', 'polbench']));
    if (net.exitCode !== 0) throw new Error(`docker network create: ${net.stderr}`);
    progress(`policies: starting ${n} containers at once`);
    const started = await Promise.all(
      Array.from({ length: n }, (_, i) => run(lab.hostArgv(['docker', 'run', '-d', '--network', 'polbench', '--label', `egressfw.policy=p${i % POLICIES}`, 'busybox:latest', 'sleep', '86400']), { timeoutMs: 300_000 })),
    );
    const failed = started.filter((r) => r.exitCode !== 0);
    if (failed.length) notes.push(`${failed.length} of ${n} containers failed to start: ${failed[0]!.stderr.trim().slice(0, 200)}`);
    const want = n - failed.length;
    const t1 = Date.now();
    const ms = () => lines.flatMap((l) => {
      try {
        const e = JSON.parse(l) as { event?: string; ms?: number; policy?: string };
        return e.event === 'policy-map' && typeof e.ms === 'number' ? [e.ms] : [];
      } catch {
        return [];
      }
    });
    while (ms().length < want && Date.now() - t1 < 60_000) await sleep(200);
    const got = ms();
    const status = fs.readFileSync(`/proc/${daemon.pid}/status`, 'utf8');
    const rss = /^VmRSS:\s+(\d+) kB/m.exec(status);
    return { window: { containers: n, ms: got, p50: pct(got, 50), p99: pct(got, 99), mapped: got.length }, daemonMiB: rss ? Number(rss[1]) / 1024 : null };
  } finally {
    await killPid(daemon.pid, 'SIGTERM');
    await sleep(500);
    await killPid(daemon.pid, 'SIGKILL');
  }
}

/** The per-container state of the daemon for 1,000 containers and 20 policies, in a child node with the same modules. */
async function statePart(root: string): Promise<number> {
  const script = `
    const { parseConfig } = await import(${JSON.stringify(path.join(root, 'dist/config/load.js'))});
    const { buildDesired } = await import(${JSON.stringify(path.join(root, 'dist/plan/desired.js'))});
    const { MapModel } = await import(${JSON.stringify(path.join(root, 'dist/policy/follow.js'))});
    const { membersByContainer } = await import(${JSON.stringify(path.join(root, 'dist/schedule/policy-follow.js'))});
    global.gc?.(); const before = process.memoryUsage().rss;
    const cfg = parseConfig(${JSON.stringify(policiesConfig())}, 'bench.yml');
    const containers = Array.from({ length: ${CONTAINERS} }, (_, k) => ({ id: k.toString(16).padStart(64, '0'), name: 'c' + k, labels: { 'egressfw.policy': 'p' + (k % ${POLICIES}), 'com.docker.compose.project': 'bench', 'com.docker.compose.service': 's' + k }, addresses: ['198.51.' + (100 + (k >> 8)) + '.' + (k & 255), '2001:db8:1::' + (k + 4096).toString(16)] }));
    const d = buildDesired(cfg, [], [{ host: '198.51.100.53', port: 53 }], containers);
    const m = new MapModel(); m.reset(membersByContainer(d.nft.policies));
    global.gc?.(); console.log(JSON.stringify({ rss: process.memoryUsage().rss, delta: process.memoryUsage().rss - before, mapped: m.size }));`;
  const r = await run([process.execPath, '--expose-gc', '--input-type=module', '-e', script]);
  if (r.exitCode !== 0) throw new Error(`state part: ${r.stderr}`);
  return (JSON.parse(r.stdout.trim()) as { rss: number }).rss / 2 ** 20;
}

export async function policiesSection(opts: { quick: boolean; cli: string }): Promise<PoliciesBenchResult> {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const notes: string[] = [];
  let lab: Lab | undefined;
  let cps: PoliciesBenchResult['cps'];
  try {
    // the packet path without Docker running (the client netns stands for a container on "docker0"); no containers
    // to list, so the map members are written by hand as the daemon would
    lab = await startLab({ docker: false });
    progress(`lab ${lab.id} up (policies, packet path)`);
    const bin = path.join(lab.dir, 'tcpbench');
    await must(['gcc', '-O2', '-pthread', '-o', bin, path.join(here, 'tcpbench.c')]);
    cps = await packetPart(lab, opts.cli, bin, opts.quick ? 2 : 6, opts.quick ? 1 : 3, notes);
  } finally {
    await lab?.stop();
  }
  try {
    lab = await startLab({ docker: true });
    progress(`lab ${lab.id} up (policies, window)`);
    const { window, daemonMiB } = await windowPart(lab, opts.cli, opts.quick ? 20 : 100, notes);
    const stateMiB = await statePart(path.resolve(here, '..', '..'));
    return { cps, window, rss: { daemonMiB, stateMiB, containers: CONTAINERS, policies: POLICIES }, notes };
  } finally {
    await lab?.stop();
  }
}

const median = (xs: number[]) => pct(xs, 50);

export function renderPoliciesBench(r: PoliciesBenchResult): string {
  const base = median(r.cps.find((c) => c.name === 'docker')!.runs);
  const out = [
    '## New connections per second (IPv6, 2 client threads, connect + 1-byte request/reply + close)',
    '',
    '| scenario | new conn/s (median of runs) | vs Docker\'s chains alone | runs | enforced |',
    '|---|---:|---:|---|---|',
    ...r.cps.map((c) => `| ${c.label} | ${Math.round(median(c.runs)).toLocaleString('en-US')} | ${((median(c.runs) / base) * 100).toFixed(1)} % | ${c.runs.map((x) => Math.round(x)).join(', ')} | ${c.enforced} |`),
    '',
    'Target: policies at least 95 % of Docker\'s chains alone. The verdict map is what egressfw uses: one lookup by source, then the policy\'s own sets.',
    '',
    '## Docker start event to map entry',
    '',
    r.window
      ? `${r.window.containers} containers started at once (\`docker run -d\`, in parallel) under the real daemon: ${r.window.mapped} mapped; p50 ${r.window.p50} ms, p99 ${r.window.p99} ms (target p99 <= 50 ms). Until its entry exists a container gets nothing (refused), never more.`
      : 'not measured',
    '',
    '## Memory',
    '',
    `Daemon RSS with the ${r.window?.containers ?? 0} containers above and ${r.rss.policies} policies: ${r.rss.daemonMiB?.toFixed(1) ?? '?'} MiB. The policy state for ${r.rss.containers.toLocaleString('en-US')} containers and ${r.rss.policies} policies (assignments, map, follower model) in a node process with the same modules: ${r.rss.stateMiB.toFixed(1)} MiB RSS (target: daemon < 150 MB at 1,000 containers).`,
    ...(r.notes.length ? ['', ...r.notes.map((n) => `note: ${n}`)] : []),
  ];
  return out.join('\n');
}
