import path from 'node:path';
import { loadConfig, parseResolvConf, withScheduler, type Config } from '../config/load.js';
import { dnsServers, resolverOptions } from '../resolve/upstream.js';
import { PreconditionError, UsageError } from '../errors.js';
import { Attribution, type ContainerInfo } from '../gate/attribution.js';
import { Gate, type Admit, type AdmitEntry, type GateOptions, type QueryEvent, type Remove } from '../gate/gate.js';
import type { FlowCut } from '../system/flows.js';
import { GATE_LOG, queryLine, ShedSampler } from '../gate/log.js';
import { GatePolicy } from '../gate/policy.js';
import { PROBE_NAME } from '../gate/probe.js';
import { startGateServer } from '../gate/server.js';
import type { QueryFn } from '../resolve/query.js';
import { resolveOneFamily, type ResolverOptions } from '../resolve/resolver.js';
import { LineBatch, RotatingLog } from '../system/gate-log.js';
import { HOST_POLICY, policiesInUse } from '../policy/assign.js';
import { POLICY_NFT } from '../plan/kernel-names.js';
import { SourcePolicies } from '../gate/sources.js';
import { GateShare } from '../gate/share.js';
import { GateStats, mergeSnapshots, minuteLine } from '../gate/stats.js';

export interface GateCommandOptions {
  config: string;
  stateDir: string;
}

export interface GateDeps {
  query: QueryFn;
  /** the shared upstream socket pool on egressfw's reserved ports (UpstreamPool in production); absent: `query` */
  upstreamPool?: () => Promise<{ query: QueryFn; close(): void }>;
  readText: (file: string) => Promise<string | null>;
  writeFileAtomic: (file: string, text: string) => Promise<void>;
  /** the kernel writer (NftAdmitter in production); `remove`: take elements out (a reload), absent: they time out */
  admitter: () => { admit: Admit; remove?: Remove; close(): void };
  /**
   * After a reload took elements out: cut the connections to them that the kernel now refuses
   * (src/system/flows.ts, judged against egressfw's table as it is then); absent: they run on
   */
  cutFlows?: (config: Config, closed: { ip: string; proto: string; port: number }[]) => Promise<FlowCut>;
  /** kernels before 6.12: what the gate sets hold now, so the ledger knows which elements need delete + add to refresh */
  presentElements?: () => Promise<{ ip: string; proto: 'tcp' | 'udp'; port: number; expiresInSec: number }[]>;
  /** per-workload policies: the kernel's source -> policy maps (`nft -j list map` of policy4, policy6) and this host's addresses */
  sources?: { readMaps: () => Promise<string[]>; localAddresses: () => string[] };
  /** running containers, for attribution (Docker API); undefined: no attribution */
  containers?: () => Promise<ContainerInfo[]>;
  isRoot: boolean;
  out: (text: string) => void;
  warn: (text: string) => void;
}

export interface GateProcess {
  on(signal: 'SIGHUP' | 'SIGTERM' | 'SIGINT', fn: () => void): void;
  pid: number;
}

/**
 * Node flags for the gate process (the daemon starts it with these): a capped
 * old space makes V8 collect before it grows. The live heap stays far below it:
 * the cache is bounded by dns.gate.cacheSize (20,000 compact entries) and the
 * kernel ledger by the gate sets' size; the lab's flood peaks at 95 MiB RSS.
 * Measured with 10,000 names cached: 108 MiB RSS (bench --only gate, docs/dns-gate.md).
 */
export const GATE_NODE_FLAGS = ['--max-old-space-size=128'];

/** Written when the gate listens, then with fresh counters every STATS_EVERY_MS; `status` reads it. */
export const GATE_STATE = 'gate.json';
const STATS_EVERY_MS = 5000;
/** The journal's summary line comes this often. */
const MINUTE_MS = 60_000;
/** query log lines for shed queries, one each, per second (the rest: one line a second with their count) */
const SHED_LINES_PER_SEC = 20;

export const gateOptions = (c: Config): GateOptions => ({ minTtl: c.dns.minTtl, maxTtl: c.dns.maxTtl, staleGrace: c.staleGrace, ipv6: c.ipv6, cacheSize: c.dns.gate.cacheSize });
const isLoopback = (ip: string) => ip.startsWith('127.') || ip === '::1';

/**
 * The gate's upstream servers. Host DNS is redirected to the gate: a resolver on the host itself
 * (systemd-resolved's 127.0.0.53, a local dnsmasq) would send its own upstream queries back here, a
 * loop. The gate asks the servers systemd-resolved lists instead, or says to set dns.servers.
 */
async function gateServers(c: Config, readText: GateDeps['readText']): Promise<ResolverOptions['servers']> {
  const servers = await dnsServers(c, readText);
  if (!c.host.enabled || !servers.some((s) => isLoopback(s.host))) return servers;
  const remote = servers.filter((s) => !isLoopback(s.host));
  if (remote.length) return remote;
  const real = parseResolvConf((await readText('/run/systemd/resolve/resolv.conf')) ?? '').filter((h) => !isLoopback(h));
  if (!real.length) throw new PreconditionError(`the DNS servers (${servers.map((s) => s.host).join(', ')}) are on this host, whose DNS goes through the gate: set dns.servers to the upstream resolvers in the config`);
  return real.map((host) => ({ host, port: c.dns.port }));
}

async function upstreamOf(c: Config, deps: Pick<GateDeps, 'query' | 'readText'>): Promise<ResolverOptions> {
  // TTLs: lowered to maxTtl here; NOT raised to minTtl (the cache keeps an answer no longer than its TTL; minTtl goes into the kernel timeout).
  // A container's resolver gives up after about 5 s: the gate answers SERVFAIL before that rather than never.
  return { ...resolverOptions(c, await gateServers(c, deps.readText), deps.query), concurrency: 1, minTtl: 0, deadlineMs: Math.min(c.dns.deadlineMs, 4000) };
}

/**
 * `egressfw gate`: the DNS gate in the foreground. `egressfw daemon` runs it
 * as a child and restarts it; run by hand only to debug. One JSON line per
 * query on stdout and in <state dir>/gate.log, and a summary a minute on
 * stdout (the only gate lines the daemon puts in its journal).
 */
export async function runGate(opts: GateCommandOptions, deps: GateDeps, proc: GateProcess): Promise<number> {
  if (!deps.isRoot) throw new PreconditionError('the DNS gate writes kernel sets and needs root (it is started by `egressfw daemon`)');
  // The gate runs under the daemon (or by hand to debug): an unset dns.gate.enabled is on there.
  let config = withScheduler(await loadConfig(opts.config), 'daemon');
  if (!config.dns.gate.enabled) throw new UsageError(`dns.gate.enabled is false in ${opts.config}: remove the line (on under the daemon) or set it to true to run the gate`);
  const pool = deps.upstreamPool ? await deps.upstreamPool() : null;
  const ask = { query: pool?.query ?? deps.query, readText: deps.readText };
  let upstream = await upstreamOf(config, ask);
  const admitter = deps.admitter();
  const log = new RotatingLog(path.join(opts.stateDir, GATE_LOG), config.dns.gate.logMaxBytes, config.dns.gate.logFiles, (e) => deps.warn(`gate: cannot write ${GATE_LOG}: ${e.message}`));
  const attribution = deps.containers ? new Attribution(deps.containers, Date.now) : null;
  // stdout (the daemon's metrics read it) and gate.log in batches: thousands of queries a second must not
  // mean thousands of blocking pipe writes. The daemon's journal gets the line a minute (minuteLine), not these.
  const batch = new LineBatch();
  const tally = new GateStats(Date.now());
  let tallied = { ...tally.decisions };
  let outTimer: NodeJS.Timeout | undefined;
  const flushOut = () => {
    clearTimeout(outTimer);
    outTimer = undefined;
    const text = batch.take();
    if (!text) return;
    deps.out(`${text}\n`);
    log.write(text); // several lines: the log joins its writes with newlines
  };
  // A flood is shed by the thousand a second: the first few each second logged one by one, the rest as one counted line.
  const shed = new ShedSampler(SHED_LINES_PER_SEC);
  let shedTimer: NodeJS.Timeout | undefined;
  const flushShed = () => {
    clearTimeout(shedTimer);
    shedTimer = undefined;
    const h = shed.take();
    if (h) write(h.event, undefined, h.count);
  };
  const write = (e: QueryEvent, c: Awaited<ReturnType<Attribution['lookup']>>, count = 1) => {
    if (!batch.push(queryLine(e, c, count))) flushOut();
    else outTimer ??= setTimeout(flushOut, 100);
  };
  const emit = (e: QueryEvent) => {
    if (e.name === PROBE_NAME && isLoopback(e.client)) return;
    tally.decision(e.verdict, e.client, e.cached, e.at);
    if (e.verdict === 'shed' && !shed.admit(e)) {
      shedTimer ??= setTimeout(flushShed, 1000);
      return;
    }
    if (!attribution || isLoopback(e.client)) write(e, undefined);
    else attribution.lookup(e.client).then((c) => write(e, c), () => write(e, undefined));
  };
  const gateDeps = (set?: (f: 4 | 6) => string) => ({
    upstream: async (name: string, family: 4 | 6, allowPrivate: boolean) => {
      const { result, refused } = await resolveOneFamily(upstream, name, family, allowPrivate);
      return result.ok ? { ok: true as const, addresses: result.addresses.map((a) => ({ ip: a.ip, ttl: a.ttl })), refused } : result;
    },
    // a policy's answers go into its own gate sets
    admit: set ? (entries: Parameters<Admit>[0]) => admitter.admit(entries.map((e) => ({ ...e, set: set(e.family) }))) : admitter.admit,
    ...(admitter.remove ? { remove: (entries: AdmitEntry[]) => admitter.remove!(set ? entries.map((e) => ({ ...e, set: set(e.family) })) : entries) } : {}),
    nowMs: Date.now,
    hrMs: () => performance.now(),
    onQuery: emit,
  });
  // One set of caps (answers cached, names fetched upstream) for the process, however many policies it serves.
  const share = new GateShare();
  const gate = new Gate(new GatePolicy(config.domains, config.wildcards), gateOptions(config), gateDeps(), share);
  const policyGate = (c: Config, p: Config['policies'][number]) => new Gate(new GatePolicy(p.domains, p.wildcards), gateOptions(c), gateDeps((f) => POLICY_NFT.gate(p.name, f)), share);
  /**
   * Per-workload policies: one gate per policy (its names, its cache, its gate sets), chosen by the
   * asking source through the kernel's own map; a source no policy holds gets the refusing gate.
   */
  const perPolicy = (c: Config) => new Map<string, Gate>([[HOST_POLICY, gate], ...c.policies.map((p) => [p.name, policyGate(c, p)] as const)]);
  /**
   * A reload: every gate that stays (the top-level one, each policy still defined) keeps its cache and
   * its record of what it admitted for which name, and takes out what the new config no longer opens.
   * A policy taken out of the config loses its gate sets with its chain at the next sync, and its
   * gate's answers stop counting against the process's cache cap.
   */
  const reloadGates = async (c: Config): Promise<{ removed: AdmitEntry[]; cacheDropped: number }> => {
    const jobs: Promise<{ removed: AdmitEntry[]; cacheDropped: number }>[] = [gate.reload(new GatePolicy(c.domains, c.wildcards), gateOptions(c))];
    const before = gates;
    if (!policiesInUse(c)) gates = null;
    else {
      const next = new Map<string, Gate>([[HOST_POLICY, gate]]);
      for (const p of c.policies) {
        const old = before?.get(p.name);
        next.set(p.name, old ?? policyGate(c, p));
        if (old) jobs.push(old.reload(new GatePolicy(p.domains, p.wildcards), gateOptions(c)));
      }
      gates = next;
    }
    for (const [name, g] of before ?? []) if (g !== gate && gates?.get(name) !== g) g.retire();
    const done = await Promise.all(jobs);
    return { removed: done.flatMap((d) => d.removed), cacheDropped: done.reduce((n, d) => n + d.cacheDropped, 0) };
  };
  let gates = policiesInUse(config) ? perPolicy(config) : null;
  const refuser = new Gate(new GatePolicy([], []), gateOptions(config), gateDeps(), share);
  const sources = deps.sources ? new SourcePolicies({ ...deps.sources, nowMs: Date.now }) : null;
  if (gates && !sources) throw new PreconditionError('policies are in use but this build of the gate cannot read the kernel\'s source -> policy map');
  const gateFor = async (client: string): Promise<Gate> => {
    if (!gates || !sources) return gate;
    const p = await sources.policyOf(client).catch(() => null);
    return (p !== null && gates.get(p)) || refuser;
  };
  if (deps.presentElements) gate.ledger.seed(await deps.presentElements(), Date.now());
  const server = await startGateServer({
    listen: config.dns.gate.listen,
    port: config.dns.gate.port,
    // one allowlist (no policies): straight to the gate, so a warm answer goes out in the same turn
    handle: (m, c, t) => (gates && sources ? gateFor(c).then((g) => g.handle(m, c, t)) : gate.handle(m, c, t)),
    warn: (w) => deps.warn(`gate: ${w}`),
  });
  const listening = { pid: proc.pid, since: new Date().toISOString(), port: config.dns.gate.port, bound: server.bound };
  // every gate's counters: with policies, the top-level gate answers the host only
  const snapshot = () => mergeSnapshots([...new Set([gate, refuser, ...(gates?.values() ?? [])])].map((g) => g.snapshot()));
  const writeState = () => deps.writeFileAtomic(path.join(opts.stateDir, GATE_STATE), `${JSON.stringify({ ...listening, stats: snapshot() })}\n`);
  await writeState();
  // status reads the counters from here (every few seconds: cheap, and never on the query path)
  const statsTimer = setInterval(() => void writeState().catch((e: Error) => deps.warn(`gate: cannot write ${GATE_STATE}: ${e.message}`)), STATS_EVERY_MS);
  statsTimer.unref?.();
  const minuteTimer = setInterval(() => {
    const now = Date.now();
    const line = minuteLine(now, tallied, tally.snapshot(now, { upstream: 0, waiting: 0, limit: 0, perClientLimit: 0, cacheEntries: 0, cacheLimit: 0 }));
    tallied = { ...tally.decisions };
    if (line) deps.out(`${line}\n`);
  }, MINUTE_MS);
  minuteTimer.unref?.();
  deps.warn(`gate: listening on ${server.bound.join(', ')}; ${config.domains.length} names, ${config.wildcards.length} wildcards`);
  void attribution?.refresh();

  proc.on('SIGHUP', () => {
    loadConfig(opts.config).then(
      async (loaded) => {
        const c = withScheduler(loaded, 'daemon');
        if (c.dns.gate.port !== config.dns.gate.port || c.dns.gate.listen.join() !== config.dns.gate.listen.join()) {
          deps.warn('gate: dns.gate.listen/port changed: restart the gate (`systemctl restart egressfw`) to move its sockets');
        }
        upstream = await upstreamOf(c, ask);
        config = c;
        const { removed } = await reloadGates(c).catch((e: Error) => {
          deps.warn(`gate: could not take the addresses of names no longer allowed out of the gate sets (they time out): ${e.message}`);
          return { removed: [] as AdmitEntry[] };
        });
        // what those elements carried: connections opened while the name was allowed (ct state established is accepted first)
        const cut = removed.length && deps.cutFlows
          ? await deps.cutFlows(c, removed).catch((e: Error): FlowCut => ({ host: 0, containers: 0, tracked: 0, notes: [`connections to them were not checked: ${e.message.split('\n')[0]}`] }))
          : null;
        for (const n of cut?.notes ?? []) deps.warn(`gate: ${n}`);
        const closed = removed.length ? `; took ${removed.length} address${removed.length === 1 ? '' : 'es'} of names no longer allowed out of the gate sets${cut ? `, cut ${cut.containers} connection${cut.containers === 1 ? '' : 's'} to them` : ''}` : '';
        deps.warn(`gate: config reloaded: ${c.domains.length} names, ${c.wildcards.length} wildcards${closed}`);
      },
      (e: Error) => deps.warn(`gate: config not reloaded (kept the previous one): ${e.message.replace(/\n\s*/g, ' ')}`),
    );
  });
  await new Promise<void>((resolve) => {
    proc.on('SIGTERM', resolve);
    proc.on('SIGINT', resolve);
  });
  clearInterval(statsTimer);
  clearInterval(minuteTimer);
  await server.close();
  admitter.close();
  pool?.close();
  flushShed();
  flushOut();
  await log.close();
  return 0;
}
