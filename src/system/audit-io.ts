import { mkdir } from 'node:fs/promises';
import { readTail } from './read-file.js';
import path from 'node:path';
import { applyCollection, applySnapshot, type ContainerInfo, type RecordSource } from '../audit/collect.js';
import { AUDIT_LOCK, HISTORY_FILE, parseHistory, serializeHistory, trimHistory, type History } from '../audit/history.js';
import { GATE_LOG_TAIL_BYTES, parseGateLog, type GateEntry } from '../audit/destination-names.js';
import { GATE_LOG } from '../gate/log.js';
import { nftChainMode, parseIpsetRefusedSet, parseNftRefusedSet, type KernelRecord, type SetRead } from '../audit/records.js';
import { PreconditionError } from '../errors.js';
import type { Family } from '../net/ip.js';
import { hostModeOf, type Mode } from '../plan/audit-rules.js';
import { HOST_CHAIN, NFT, NFT_TABLE_REF, REFUSED_HOST_SET } from '../plan/kernel-names.js';
import { parseIptablesSave } from '../plan/observed.js';
import type { Exec } from './exec.js';
import { parseState, stateFile } from '../state-file.js';

/** Reading the kernel's records, Docker and the state dir; writing the audit history. The only side effects of audit. */

export interface AuditDeps {
  exec: Exec;
  readText: (file: string) => Promise<string | null>;
  writeFileAtomic: (file: string, text: string, mode?: number) => Promise<void>;
  /** Docker's containers (all, with their networks); undefined: containers are not managed */
  listContainers?: () => Promise<ContainerInfo[]>;
  acquireLock: (file: string) => Promise<() => Promise<void>>;
  now: () => number;
  isRoot: boolean;
}

export const historyFile = (stateDir: string) => path.join(stateDir, HISTORY_FILE);
const lockFile = (stateDir: string) => path.join(stateDir, AUDIT_LOCK);

export interface KernelRead {
  records: KernelRecord[];
  read: RecordSource[];
  modes: { containers: Mode | null; host: Mode | null };
  notes: string[];
}

const FULL = 0.9;
const missing = (stderr: string) => /No such file or directory|does not exist|not found/i.test(stderr);

function fullness(what: string, r: SetRead, notes: string[]): void {
  if (r.size && r.elements >= r.size * FULL) {
    notes.push(`${what} holds ${r.elements} of ${r.size} records: new destinations stop being recorded when it is full (elements expire 7 days after their last use)`);
  }
}

/**
 * Read-only: the record sets (nft for containers, ipset for the host) and which mode each side is in.
 * `modes: false`: the sets only (the daemon's metrics read their counters every interval; two processes fewer).
 */
export async function readKernelRecords(exec: Exec, o: { modes?: boolean } = {}): Promise<KernelRead> {
  const out: KernelRead = { records: [], read: [], modes: { containers: null, host: null }, notes: [] };
  let nftMissing = false;
  for (const f of [4, 6] as Family[]) {
    const name = NFT.refused[f];
    const r = await exec(['nft', '-j', 'list', 'set', NFT.family, NFT.table, name]);
    if (r.exitCode === 127) nftMissing = true;
    else if (r.exitCode === 0) {
      try {
        const s = parseNftRefusedSet(r.stdout);
        out.records.push(...s.records);
        out.read.push(`containers${f}`);
        fullness(`nft set ${NFT_TABLE_REF} ${name}`, s, out.notes);
      } catch (e) {
        out.notes.push(`nft set ${name}: ${(e as Error).message}; its records were skipped this time`);
      }
    } else if (missing(r.stderr)) out.read.push(`containers${f}`); // not installed: nothing to track
    else out.notes.push(`\`nft list set ${NFT_TABLE_REF} ${name}\` failed: ${r.stderr.trim()}`);

    const set = REFUSED_HOST_SET[f];
    const s = await exec(['ipset', 'save', set]);
    if (s.exitCode === 0) {
      const parsed = parseIpsetRefusedSet(s.stdout, set);
      out.records.push(...parsed.records);
      out.read.push(`host${f}`);
      fullness(`ipset ${set}`, parsed, out.notes);
    } else if (s.exitCode !== 127 && missing(s.stderr)) out.read.push(`host${f}`);
    else if (s.exitCode !== 127) out.notes.push(`\`ipset save ${set}\` failed: ${s.stderr.trim()}`);
  }
  if (o.modes === false) return out;
  if (nftMissing) out.notes.push('nft is not installed: container records cannot be read (`apt-get install nftables`)');
  else {
    const chain = await exec(['nft', '-j', 'list', 'chain', NFT.family, NFT.table, NFT.chain]);
    if (chain.exitCode === 0) out.modes.containers = nftChainMode(chain.stdout);
  }
  const save = await exec(['iptables-save', '-t', 'filter']);
  if (save.exitCode === 0) out.modes.host = hostModeOf(parseIptablesSave(save.stdout).chains.get(HOST_CHAIN) ?? []);
  return out;
}

const SNAPSHOT_REWRITE_SEC = 60;
const LOCK_WAIT_MS = 10_000;

/** The audit history lock: collections are short, so wait for one in progress rather than fail. */
async function locked<T>(stateDir: string, deps: AuditDeps, fn: () => Promise<T>): Promise<T> {
  await mkdir(stateDir, { recursive: true, mode: 0o755 });
  let release: (() => Promise<void>) | undefined;
  for (const t0 = Date.now(); !release; ) {
    try {
      release = await deps.acquireLock(lockFile(stateDir));
    } catch (e) {
      if (!(e instanceof PreconditionError) || !/is running/.test(e.message)) throw e;
      if (Date.now() - t0 > LOCK_WAIT_MS) throw new PreconditionError(`another egressfw process has been collecting audit records for ${LOCK_WAIT_MS / 1000} s (lock ${lockFile(stateDir)}); try again, or remove the lock if no egressfw runs`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  try {
    return await fn();
  } finally {
    await release();
  }
}

export interface Collected {
  history: History;
  /** the DNS gate's log (its tail), for names the gate refused */
  gate: GateEntry[];
  notes: string[];
}

async function loadHistory(stateDir: string, deps: AuditDeps, notes: string[]): Promise<History> {
  const { history, skipped } = parseHistory(await deps.readText(historyFile(stateDir)));
  if (skipped) notes.push(`${historyFile(stateDir)}: ${skipped} damaged lines skipped`);
  return history;
}

async function containers(deps: AuditDeps, notes: string[]): Promise<ContainerInfo[] | null> {
  if (!deps.listContainers) return null;
  try {
    return await deps.listContainers();
  } catch (e) {
    if (/ENOENT/.test((e as Error).message)) return null; // no Docker on this machine
    notes.push(`Docker could not be asked which container has which address (${(e as Error).message}); attempts are attributed from earlier snapshots`);
    return null;
  }
}

/**
 * One collection: read the kernel's records (root), Docker's containers,
 * egressfw's resolution history and the DNS gate's log, fold them into the
 * audit history and save it (atomically, bounded). Without root nothing is
 * read from the kernel and the saved history is returned as it is.
 */
export async function collectAudit(stateDir: string, deps: AuditDeps): Promise<Collected> {
  const notes: string[] = [];
  const gateLog = async () => {
    const file = path.join(stateDir, GATE_LOG);
    const text = await readTail(file, GATE_LOG_TAIL_BYTES, { follow: false }).catch((e: Error) => {
      notes.push(`${file} not read (${e.message}): no names from the DNS gate; remove it, the gate writes a new one`);
      return null;
    });
    return parseGateLog(text);
  };
  if (!deps.isRoot) {
    notes.push('not root: showing what earlier collections saved (run with sudo to read the kernel now)');
    return { history: await loadHistory(stateDir, deps, notes), gate: await gateLog(), notes };
  }
  return locked(stateDir, deps, async () => {
    const history = await loadHistory(stateDir, deps, notes);
    const [kernel, list, stateText, gate] = await Promise.all([readKernelRecords(deps.exec), containers(deps, notes), deps.readText(stateFile(stateDir)), gateLog()]);
    notes.push(...kernel.notes);
    const now = deps.now();
    // Only the names and their addresses are used here; without the config, no TTL clamp or allowPrivate exemption.
    const state = stateText === null ? null : parseState(stateText, { now }).state;
    const next = trimHistory(
      applyCollection(history, { now, records: kernel.records, read: kernel.read, containers: list, domains: state?.domains ?? null, gate, modes: kernel.modes }),
      now,
    );
    await deps.writeFileAtomic(historyFile(stateDir), serializeHistory(next), 0o600);
    return { history: next, gate, notes };
  });
}

/**
 * Attribution only: which container holds which address now. Cheap (one
 * Docker API call); the daemon runs it more often than a full collection so
 * short-lived containers are seen while they run.
 */
export async function snapshotContainers(stateDir: string, deps: AuditDeps): Promise<void> {
  const notes: string[] = [];
  const list = await containers(deps, notes);
  if (!list) return;
  await locked(stateDir, deps, async () => {
    const history = await loadHistory(stateDir, deps, notes);
    const now = deps.now();
    const next = applySnapshot(history, list, now);
    // Rewrite the file only when an address changed hands or a container changed state, else once a minute
    // (to extend the spans): the history can be megabytes.
    const states = (h: History) => [...h.containers.values()].map((c) => `${c.id}:${c.state}`).join();
    const changed = next.spans.length !== history.spans.length || states(next) !== states(history) || now - (history.snapshotAt ?? 0) >= SNAPSHOT_REWRITE_SEC;
    if (changed) await deps.writeFileAtomic(historyFile(stateDir), serializeHistory(trimHistory(next, now)), 0o600);
  });
}
