/**
 * The daemon's share of per-workload policies: it follows Docker's events and keeps the source ->
 * policy map right between syncs, one small nft transaction per event over the long-lived `nft -i`
 * writer. After a gap (the stream broke, dockerd restarted) it has a full inventory read again
 * (an offline sync). Events are handled one at a time and never while a sync runs (`exclusive`).
 */
import type { Config } from '../config/load.js';
import { assignContainers, type InventoryContainer, type PolicyDesired } from '../plan/policies.js';
import { emptyDelta, mapLine, MapModel, parseEvent, type MapEvent } from '../policy/follow.js';
import type { EventStream, EventStreamHandlers } from '../system/docker-events.js';

export interface FollowDeps {
  watch: (h: EventStreamHandlers) => EventStream;
  /** the container now (null: gone or not running) */
  inspect: (id: string) => Promise<InventoryContainer | null>;
  /** run nft commands as one transaction (NftAdmitter.command) */
  write: (cmds: string) => Promise<void>;
  /** full inventory and offline sync; returns what it mapped (null: it failed) */
  resync: () => Promise<PolicyDesired | null>;
  /** the daemon's in-process lock, shared with every sync */
  exclusive: <T>(fn: () => Promise<T>) => Promise<T>;
  config: () => Config;
  log: (event: string, fields?: Record<string, unknown>) => void;
  /** a container started (audit attribution: snapshot now, so a short-lived container is named) */
  onStart?: (id: string) => void;
  nowMs: () => number;
  setTimer: (fn: () => void, ms: number) => unknown;
  clearTimer: (t: unknown) => void;
}

/** Members of the map per container, from what a sync wrote. */
export function membersByContainer(p: PolicyDesired): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const byAddr = new Map([...p.map[4], ...p.map[6]].map((m) => [m.slice(0, m.indexOf(' : ')), m]));
  for (const a of p.assignments) {
    const mine = a.addresses.map((ip) => byAddr.get(ip)).filter((m): m is string => !!m);
    if (mine.length) out.set(a.id, mine);
  }
  return out;
}

export class PolicyFollower {
  private readonly model = new MapModel();
  private stream: EventStream | null = null;
  private chain: Promise<void> = Promise.resolve();
  private retryMs = 500;
  private timer: unknown;
  private stopped = false;
  /** start event -> map entry, ms (status, bench) */
  readonly latencies: number[] = [];

  constructor(private readonly deps: FollowDeps) {}

  /** What the last sync wrote: the model starts from it. */
  synced(p: PolicyDesired | null): void {
    if (p) this.model.reset(membersByContainer(p));
  }

  start(): void {
    this.stopped = false;
    this.open();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.deps.clearTimer(this.timer);
    this.stream?.close();
    this.stream = null;
    await this.chain;
  }

  /** Resolves when every event received so far is handled (tests). */
  idle(): Promise<void> {
    return this.chain;
  }

  private open(): void {
    if (this.stopped) return;
    this.stream = this.deps.watch({
      onOpen: () => {
        this.retryMs = 500;
        // anything may have happened while the stream was not open: read everything again
        this.enqueue(() => this.resync('events stream open'));
      },
      onEvent: (raw) => {
        const e = parseEvent(raw);
        if (!e) return;
        // A network connect comes before its container's start, while dockerd still holds the container (an inspect
        // then waits for the start to finish): only containers already mapped are read again; the start event maps the rest.
        if (e.action.startsWith('network') && !this.model.has(e.id)) return;
        if (e.action === 'container start') this.deps.onStart?.(e.id);
        // read the container at once, in parallel with the others; changes are applied one at a time, in order
        const read = e.kind === 'inspect' ? this.deps.inspect(e.id).then((c) => ({ c }), (err: Error) => ({ err })) : Promise.resolve({ c: null });
        this.enqueue(() => this.handle(e, read));
      },
      onClose: (why) => {
        this.stream = null;
        if (this.stopped) return;
        this.deps.log('docker-events', { state: 'lost', why, retryInMs: this.retryMs });
        this.timer = this.deps.setTimer(() => this.open(), this.retryMs);
        this.retryMs = Math.min(30_000, this.retryMs * 2);
      },
    });
  }

  private enqueue(job: () => Promise<void>): void {
    this.chain = this.chain.then(() => (this.stopped ? undefined : this.deps.exclusive(job))).catch((e: Error) => this.deps.log('error', { job: 'policy-map', error: e.message.split('\n')[0] }));
  }

  private async resync(why: string): Promise<void> {
    const p = await this.deps.resync();
    this.synced(p);
    this.deps.log('policy-map', { resync: why, addresses: this.model.size });
  }

  private async handle(e: MapEvent, read: Promise<{ c: InventoryContainer | null } | { err: Error }>): Promise<void> {
    const r = await read;
    if ('err' in r) throw r.err;
    const c = r.c;
    const next = c ? assignContainers(this.deps.config(), [c]) : null;
    const members = next ? [...next.map[4], ...next.map[6]] : [];
    const delta = this.model.update(e.id, members);
    const who = next?.assignments[0];
    // said at every start, like sync says it: an unknown policy name leaves the container with nothing
    if (who?.unknown !== undefined && e.action === 'container start') this.deps.log('warning', { container: who.name, by: who.by, unknown: who.unknown, gets: 'nothing' });
    if (emptyDelta(delta)) return;
    try {
      await this.deps.write(mapLine(delta));
    } catch (err) {
      // the kernel differs from the model (a hand edit, a flushed table): rebuild from scratch
      this.deps.log('error', { job: 'policy-map', error: (err as Error).message.split('\n')[0], then: 'full inventory' });
      await this.resync('a map update failed');
      return;
    }
    const ms = e.atMs ? Math.max(0, this.deps.nowMs() - e.atMs) : undefined;
    if (ms !== undefined && e.kind === 'inspect') {
      this.latencies.push(ms);
      if (this.latencies.length > 10_000) this.latencies.splice(0, 5000);
    }
    const a = next?.assignments[0];
    this.deps.log('policy-map', {
      docker: e.action,
      container: a?.name ?? e.id.slice(0, 12),
      ...(a ? { policy: a.policy, by: a.by } : {}),
      ...(a?.unknown !== undefined ? { unknown: a.unknown } : {}),
      added: delta.add[4].length + delta.add[6].length,
      removed: delta.delete[4].length + delta.delete[6].length,
      ...(ms !== undefined ? { ms } : {}),
    });
  }
}
