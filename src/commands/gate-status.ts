/**
 * The DNS gate's part of `egressfw status`: is it running and answering,
 * does Docker's embedded resolver go through it, and the last hour of queries.
 */
import path from 'node:path';
import type { Config } from '../config/load.js';
import { DAEMON_JSON, dockerDnsStatus } from '../gate/docker-dns.js';
import { policiesInUse } from '../policy/assign.js';
import { renderSummary, summarise, type GateSummary } from '../gate/log.js';
import type { GateStatsSnapshot } from '../gate/stats.js';
import { printable } from '../text.js';
import { GATE_STATE } from './gate.js';

export interface GateStatusDeps {
  readText: (file: string) => Promise<string | null>;
  /** one loopback query to the gate (src/gate/probe.ts) */
  probe: (port: number) => Promise<{ ok: boolean; ms: number; detail: string }>;
  /** the Docker engine's version, null when Docker cannot be asked */
  dockerVersion: () => Promise<string | null>;
  /** lines of gate.log and its rotated files */
  readLogs: (stateDir: string) => Promise<string[]>;
  nowMs: () => number;
}

export interface GateStatus {
  enabled: true;
  /** what the running gate wrote when it started listening (null: never started) */
  process: { pid: number; since: string; bound: string[] } | null;
  /** the running gate's counters (written every few seconds), null before the first */
  stats: GateStatsSnapshot | null;
  answering: { ok: boolean; ms: number; detail: string };
  docker: { version: string | null; throughGate: boolean; detail: string };
  lastHour: GateSummary;
}

export async function gateStatus(config: Config, stateDir: string, deps: GateStatusDeps): Promise<{ doc: GateStatus; lines: string[]; healthy: boolean } | null> {
  if (!config.dns.gate.enabled) return null;
  let proc: GateStatus['process'] = null;
  let stats: GateStatsSnapshot | null = null;
  try {
    const j = JSON.parse((await deps.readText(path.join(stateDir, GATE_STATE))) ?? 'null') as (GateStatus['process'] & { stats?: GateStatsSnapshot }) | null;
    if (j && typeof j.pid === 'number') proc = { pid: j.pid, since: String(j.since), bound: Array.isArray(j.bound) ? j.bound.map(String) : [] };
    if (j?.stats && typeof j.stats.at === 'number' && j.stats.decisions && j.stats.inflight && Array.isArray(j.stats.clients?.list)) stats = j.stats;
  } catch {
    /* unreadable: as never started */
  }
  const [answering, version, logs] = await Promise.all([deps.probe(config.dns.gate.port), deps.dockerVersion().catch(() => null), deps.readLogs(stateDir)]);
  const docker = { version, ...dockerDnsStatus(await deps.readText(DAEMON_JSON), version, { hostRedirect: config.host.enabled, policies: policiesInUse(config) }) };
  const lastHour = summarise(logs, deps.nowMs());
  const doc: GateStatus = { enabled: true, process: proc, stats, answering, docker, lastHour };
  const healthy = answering.ok && docker.throughGate;
  const lines = [
    '',
    'DNS gate',
    `  ${answering.ok ? `answering (${answering.ms.toFixed(1)} ms)` : `NOT ANSWERING: ${answering.detail}; containers cannot resolve until it is back (the daemon restarts it: is \`egressfw daemon\` running?)`}` +
      (proc ? `; started ${proc.since}, listening on ${proc.bound.join(', ')}` : ''),
    `  Docker's embedded resolver: ${docker.throughGate ? 'through the gate' : 'AROUND THE GATE'} (${docker.detail})`,
    ...(stats ? statsLines(stats, deps.nowMs()) : []),
    ...renderSummary(lastHour),
  ];
  return { doc, lines, healthy };
}

const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

/** The running gate's counters: since it started, what is in flight, and per client over the last full minute. */
export function statsLines(st: GateStatsSnapshot, nowMs: number): string[] {
  const d = st.decisions;
  const age = Math.max(0, Math.round((nowMs - n(st.at)) / 1000));
  const out = [
    `  since start: ${n(d.allowed)} answered (${n(st.cached)} from cache), ${n(d.refused)} refused, ${n(d.failed)} failed, ${n(d.shed)} SHED (over a cap)${age > 30 ? ` [counters ${age}s old]` : ''}`,
    `  in flight: ${n(st.inflight.upstream)} names upstream (cap ${n(st.inflight.limit)}), ${n(st.inflight.waiting)} queries waiting (cap ${n(st.inflight.perClientLimit)} per client); cache ${n(st.cache?.entries)}/${n(st.cache?.limit)}; upstream ${n(st.upstream?.queries)} queries, ${n(st.upstream?.failures)} failed, mean ${st.upstream?.queries ? (n(st.upstream.sumMs) / st.upstream.queries).toFixed(1) : '0'} ms`,
  ];
  const list = st.clients.list;
  if (list.length) {
    const sec = Math.max(1, (n(st.clients.to) - n(st.clients.from)) / 1000);
    out.push('  per client, last full minute:');
    for (const c of list.slice(0, 10)) out.push(`    ${printable(String(c.client))}: ${(n(c.queries) / sec).toFixed(1)} q/s, ${n(c.refused)} refused${n(c.shed) ? `, ${n(c.shed)} SHED` : ''}`);
  }
  return out;
}
