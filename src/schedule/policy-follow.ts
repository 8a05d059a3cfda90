/**
 * The daemon's share of per-workload policies: it follows Docker's events and keeps the source ->
 * policy map right between syncs over the long-lived `nft -i` writer. After a gap (the stream broke,
 * dockerd restarted) it has a full inventory read again (an offline sync). Never while a sync runs
 * (`exclusive`).
 *
 * Events are coalesced: those that arrive while a batch is read and written wait, and go together
 * as the next batch: one Docker API call for every container started in it (the list, filtered by
 * id: served from dockerd's snapshot, without waiting on each container's lock as an inspect does),
 * then one nft transaction for the batch's net change. 100 containers started at once were 100
 * inspects and 100 transactions one after another (p99 215 ms); see docs/bench-policies.md.
 */
import type { Config } from '../config/load.js';
import { assignContainers, type InventoryContainer, type PolicyDesired } from '../plan/policies.js';
import { emptyDelta, keyOf, mapLine, MapModel, parseEvent, type MapEvent } from '../policy/follow.js';
import type { EventStream, EventStreamHandlers } from '../system/docker-events.js';

export interface FollowDeps {
  watch: (h: EventStreamHandlers) => EventStream;
  /** the container now (null: gone or not running); for network events, and a start the list did not show running */
  inspect: (id: string) => Promise<InventoryContainer | null>;
  /** the running containers among these ids, in one API call (GET /containers/json filtered by id) */
  list: (ids: string[]) => Promise<InventoryContainer[]>;
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

/** ids per list call: 256 full ids keep the request line near 20 KB, well inside dockerd's header limit */
const LIST_IDS = 256;

export class PolicyFollower {
  private readonly model = new MapModel();
  private stream: EventStream | null = null;
  private chain: Promise<void> = Promise.resolve();
  private retryMs = 500;
  private timer: unknown;
  private stopped = false;
  /** events received, not yet taken by a batch */
  private pending: MapEvent[] = [];
  /** when each pending event came off the stream (its delay after Docker's own stamp is dockerd's, or the CPU's) */
  private received = new WeakMap<MapEvent, number>();
  /** a batch job is queued that has not started yet: later events join it */
  private queued = false;
  /** start event -> map entry, ms (status, bench) */
  readonly latencies: number[] = [];
  /** batches handled, and Docker API calls they made (bench, tests) */
  readonly counts = { batches: 0, lists: 0, inspects: 0, writes: 0 };

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
  async idle(): Promise<void> {
    let c: Promise<void>;
    do {
      c = this.chain;
      await c;
    } while (c !== this.chain);
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
        this.pending.push(e);
        this.received.set(e, this.deps.nowMs());
        if (this.queued) return;
        this.queued = true;
        this.enqueue(() => {
          this.queued = false;
          return this.batch(this.pending.splice(0));
        });
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

  /** The containers the batch must read, as they are now (null: gone or not running). */
  private async read(events: MapEvent[]): Promise<Map<string, InventoryContainer | null>> {
    // the list takes full ids only (events carry them); anything else is inspected
    const started = [...new Set(events.filter((e) => e.action === 'container start' && e.id.length === 64).map((e) => e.id))];
    const others = [...new Set(events.filter((e) => e.kind === 'inspect' && !started.includes(e.id)).map((e) => e.id))];
    const inspect = (id: string) => {
      this.counts.inspects++;
      return this.deps.inspect(id);
    };
    const out = new Map<string, InventoryContainer | null>();
    const lists: Promise<InventoryContainer[]>[] = [];
    for (let i = 0; i < started.length; i += LIST_IDS) {
      this.counts.lists++;
      lists.push(this.deps.list(started.slice(i, i + LIST_IDS)));
    }
    const [listed, inspected] = await Promise.all([Promise.all(lists), Promise.all(others.map(inspect))]);
    for (const c of listed.flat()) out.set(c.id, c);
    others.forEach((id, i) => out.set(id, inspected[i]!));
    // The list shows a container from dockerd's snapshot, saved before the start event is sent; one not
    // shown running has died since (or a dockerd saves later): its inspect says which, under its lock.
    const missing = started.filter((id) => !out.has(id));
    const late = await Promise.all(missing.map(inspect));
    missing.forEach((id, i) => out.set(id, late[i]!));
    return out;
  }

  private async batch(events: MapEvent[]): Promise<void> {
    if (!events.length) return;
    this.counts.batches++;
    const t0 = this.deps.nowMs();
    let now: Map<string, InventoryContainer | null>;
    try {
      now = await this.read(events);
    } catch (err) {
      // events of this batch are lost with the answer: only a full inventory brings the map right again
      this.deps.log('error', { job: 'policy-map', error: (err as Error).message.split('\n')[0], then: 'full inventory' });
      await this.resync('a container read failed');
      return;
    }
    // each event in order: a die removes the container's members; the others give it what it has now
    const config = this.deps.config();
    const assigned = new Map<string, ReturnType<typeof assignContainers> | null>();
    const assign = (id: string) => {
      if (!assigned.has(id)) {
        const c = now.get(id) ?? null;
        assigned.set(id, c ? assignContainers(config, [c]) : null);
      }
      return assigned.get(id)!;
    };
    const updates = events.map((e) => {
      const next = e.kind === 'remove' ? null : assign(e.id);
      return [e.id, next ? [...next.map[4], ...next.map[6]] : []] as const;
    });
    const held = new Map(events.map((e) => [e.id, this.model.membersOf(e.id)]));
    const delta = this.model.apply(updates);
    for (const e of events) {
      const who = e.action === 'container start' ? assign(e.id)?.assignments[0] : undefined;
      // said at every start, like sync says it: an unknown policy name leaves the container with nothing
      if (who?.unknown !== undefined) this.deps.log('warning', { container: who.name, by: who.by, unknown: who.unknown, gets: 'nothing' });
    }
    if (emptyDelta(delta)) return;
    const t1 = this.deps.nowMs();
    try {
      this.counts.writes++;
      await this.deps.write(mapLine(delta));
    } catch (err) {
      // the kernel differs from the model (a hand edit, a flushed table): rebuild from scratch
      this.deps.log('error', { job: 'policy-map', error: (err as Error).message.split('\n')[0], then: 'full inventory' });
      await this.resync('a map update failed');
      return;
    }
    const doneMs = this.deps.nowMs();
    const added = new Set([...delta.add[4], ...delta.add[6]]);
    const deleted = new Set([...delta.delete[4], ...delta.delete[6]]);
    const lastOf = new Map(events.map((e, i) => [e.id, i]));
    // one line per container the change moved, from its last event in the batch
    for (const [id, i] of lastOf) {
      const e = events[i]!;
      const members = updates[i]![1];
      const nAdded = members.filter((m) => added.has(m)).length;
      const nRemoved = held.get(id)!.filter((m) => deleted.has(keyOf(m)) && !members.includes(m)).length;
      if (!nAdded && !nRemoved) continue;
      const a = e.kind === 'remove' ? undefined : assigned.get(id)?.assignments[0];
      const ms = e.atMs ? Math.max(0, doneMs - e.atMs) : undefined;
      const got = this.received.get(e) ?? t0;
      if (ms !== undefined && e.kind === 'inspect' && nAdded) {
        this.latencies.push(ms);
        if (this.latencies.length > 10_000) this.latencies.splice(0, 5000);
      }
      this.deps.log('policy-map', {
        docker: e.action,
        container: a?.name ?? id.slice(0, 12),
        ...(a ? { policy: a.policy, by: a.by } : {}),
        ...(a?.unknown !== undefined ? { unknown: a.unknown } : {}),
        added: nAdded,
        removed: nRemoved,
        ...(events.length > 1 ? { batch: events.length } : {}),
        ...(ms !== undefined ? { ms } : {}),
        // where the time went: Docker's stamp to the stream, waiting for the batch, reading, writing (and the rest)
        ...(ms !== undefined ? { streamMs: Math.max(0, got - e.atMs) } : {}),
        waitMs: t0 - got,
        readMs: t1 - t0,
        writeMs: doneMs - t1,
      });
    }
  }
}
