/**
 * The DNS gate's part of `egressfw status`: is it running and answering,
 * does Docker's embedded resolver go through it, and the last hour of queries.
 */
import path from 'node:path';
import type { Config } from '../config/load.js';
import { DAEMON_JSON, dockerDnsStatus } from '../gate/docker-dns.js';
import { renderSummary, summarise, type GateSummary } from '../gate/log.js';
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
  answering: { ok: boolean; ms: number; detail: string };
  docker: { version: string | null; throughGate: boolean; detail: string };
  lastHour: GateSummary;
}

export async function gateStatus(config: Config, stateDir: string, deps: GateStatusDeps): Promise<{ doc: GateStatus; lines: string[]; healthy: boolean } | null> {
  if (!config.dns.gate.enabled) return null;
  let proc: GateStatus['process'] = null;
  try {
    const j = JSON.parse((await deps.readText(path.join(stateDir, GATE_STATE))) ?? 'null') as GateStatus['process'];
    if (j && typeof j.pid === 'number') proc = { pid: j.pid, since: String(j.since), bound: Array.isArray(j.bound) ? j.bound.map(String) : [] };
  } catch {
    /* unreadable: as never started */
  }
  const [answering, version, logs] = await Promise.all([deps.probe(config.dns.gate.port), deps.dockerVersion().catch(() => null), deps.readLogs(stateDir)]);
  const docker = { version, ...dockerDnsStatus(await deps.readText(DAEMON_JSON), version) };
  const lastHour = summarise(logs, deps.nowMs());
  const doc: GateStatus = { enabled: true, process: proc, answering, docker, lastHour };
  const healthy = answering.ok && docker.throughGate;
  const lines = [
    '',
    'DNS gate',
    `  ${answering.ok ? `answering (${answering.ms.toFixed(1)} ms)` : `NOT ANSWERING: ${answering.detail}; containers cannot resolve until it is back (the daemon restarts it: is \`egressfw daemon\` running?)`}` +
      (proc ? `; started ${proc.since}, listening on ${proc.bound.join(', ')}` : ''),
    `  Docker's embedded resolver: ${docker.throughGate ? 'through the gate' : 'AROUND THE GATE'} (${docker.detail})`,
    ...renderSummary(lastHour),
  ];
  return { doc, lines, healthy };
}
