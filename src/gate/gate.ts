/**
 * The DNS gate's decision core: parse, judge, answer from cache or upstream,
 * and put every answered IP into the kernel before the answer is released.
 * No sockets, no processes, no clock of its own: upstream, admit (the kernel
 * insert) and the clock are injected, so it is unit-tested with fakes.
 */
import type { Proto } from '../config/schema.js';
import type { Family } from '../net/ip.js';
import type { FailureKind } from '../resolve/resolver.js';
import { GatePolicy, type Match } from './policy.js';
import { AnswerCache } from './answer-cache.js';
import { GateShare } from './share.js';
import { GateStats } from './stats.js';
import { addressRdata, answerBlock, buildError, buildResponse, parseQuery, respondBlock, TYPE, typeName, type Query, type Rcode, type WireRecord } from './wire.js';

/** One kernel set element: `ip . proto . port timeout T` in gate4/gate6. */
export interface AdmitEntry {
  family: Family;
  ip: string;
  proto: Proto;
  port: number;
  /** seconds, whole */
  timeoutSec: number;
  /** the gate wrote it before (it may still be in the set): kernels before 6.12 need delete + add to refresh it */
  exists?: boolean;
  /** the gate set it goes into when not the top-level gate4/gate6: a policy's own (per-workload policies) */
  set?: string;
}

/** Resolves once every entry is in the kernel (or rejects: then the answer is not released). */
export type Admit = (entries: AdmitEntry[]) => Promise<void>;

export type UpstreamResult =
  | { ok: true; addresses: { ip: string; ttl: number }[]; refused: { ip: string; reason: string }[] }
  | { ok: false; kind: FailureKind; detail: string };

/** Resolve one family of an allowed name (rebinding guard applied; TTLs lowered to dns.maxTtl, not raised). */
export type Upstream = (name: string, family: Family, allowPrivate: boolean) => Promise<UpstreamResult>;

/** shed: over an in-flight cap, answered SERVFAIL at once (nothing sent upstream) */
export type Verdict = 'allowed' | 'refused' | 'failed' | 'shed' | 'malformed';

export interface QueryEvent {
  /** unix ms */
  at: number;
  client: string;
  transport: 'udp' | 'tcp';
  name: string;
  type: string;
  verdict: Verdict;
  rcode: Rcode;
  /** the addresses in the answer */
  ips: string[];
  cached: boolean;
  /** config entries that allowed the name */
  rules?: string[];
  /** time in the gate (upstream + kernel included) */
  ms: number;
  /** fresh answers: from the upstream answer to the release (kernel insert included), high resolution */
  releaseMs?: number;
  /** of which waiting for the kernel insert */
  kernelMs?: number;
  detail?: string;
}

export interface GateOptions {
  minTtl: number;
  maxTtl: number;
  staleGrace: number;
  ipv6: boolean;
  /** answers kept, by all the gates of the process together (GateShare); 0 = no cache */
  cacheSize: number;
  /** distinct names being fetched upstream at once, by all the gates of the process together; over it: shed */
  maxInflight?: number;
  /** queries of one client waiting on upstream at once; over it that client is shed, the others are not */
  maxInflightPerClient?: number;
}

/** Defaults of the in-flight caps: a silent upstream holds each fetch up to 4 s. */
export const MAX_INFLIGHT = 512;
export const MAX_INFLIGHT_PER_CLIENT = 64;

/** Takes elements out of the kernel (a reload: no name the config allows holds them any more). */
export type Remove = (entries: AdmitEntry[]) => Promise<void>;

export interface GateDeps {
  upstream: Upstream;
  admit: Admit;
  /** absent: nothing is taken out at a reload (the elements time out) */
  remove?: Remove;
  nowMs: () => number;
  onQuery: (e: QueryEvent) => void;
  /** a monotonic clock in ms with sub-ms resolution (performance.now); default nowMs */
  hrMs?: () => number;
}

/** NXDOMAIN and NODATA carry no SOA through our client: they are kept this long. */
export const NEGATIVE_TTL = 5;
/** A cache hit re-writes its kernel elements when their last write is older than this (a flushed set heals). */
const REWRITE_AFTER_MS = 30_000;

/**
 * A cached answer, compact (10,000 names are 20,000 of these): the records as wire bytes, the IPs as
 * text; rules and ports are the policy's own Match (shared by every answer it opened). A class, so
 * every answer has one shape: object literals spread from a base each got a hidden class of their own
 * (8 MiB of maps and descriptors at 20,000 answers).
 */
class Entry {
  constructor(
    readonly rcode: Rcode,
    /** answerBlock of the records (TTLs written per answer) */
    readonly answers: string,
    readonly count: number,
    readonly family: Family,
    /** the addresses in the answer (shared by every hit's log line: never mutated) */
    readonly ips: string[],
    /** the TTL as answered upstream (lowered to maxTtl) */
    readonly ttl: number,
    readonly storedAt: number,
    readonly expiresAt: number,
    readonly match: Match,
    readonly detail: string | undefined,
    /** until then a cache hit needs no look at the kernel ledger (checked at most once a second per answer) */
    public checkAfter: number,
  ) {}
}

const RELOADED = 'the config was reloaded meanwhile and no longer opens this name';

/** How often a cached answer re-checks whether its kernel elements need a refresh. */
const CHECK_EVERY_MS = 1000;

type Outcome = { entry: Entry; answeredAt: number; kernelMs?: number } | { fail: string };

/** Does the config (now) open this name on this port? (a reload asks it of every name on record) */
export type StillAllowed = (name: string, proto: Proto, port: number) => boolean;

/**
 * Kernel elements the gate has written, with their expiry: skips redundant writes, keeps the promise of T.
 * And for which names: the elements themselves record only `ip . proto . port`, so this is the one
 * record of which names opened an element (each name with the expiry its own answer asked). A reload
 * takes out the elements no name the new config allows holds any more (`release`).
 */
export class KernelLedger {
  /**
   * By address (the answer's own IP string, shared with the cache: no key string per element), then
   * one slot per proto and port (one, mostly). 20,000 answers' elements were 9 MiB as `ip|proto|port` keys.
   */
  private readonly seen = new Map<string, Slot | Slot[]>();
  private count = 0;

  /** entries of `want` whose kernel element would expire before `now + timeout` (minus slack), or was last written long ago */
  stale(want: AdmitEntry[], now: number): AdmitEntry[] {
    return this.mark(want, now).filter((e) => {
      const s = this.find(e.ip, e.proto, e.port);
      if (!s) return true;
      const slack = Math.max(1000, Math.min(60_000, e.timeoutSec * 100));
      return s.expiresAt < now + e.timeoutSec * 1000 - slack || s.writtenAt < now - REWRITE_AFTER_MS;
    });
  }

  /** `exists` set on entries the kernel may hold (written before and not expired) */
  mark(want: AdmitEntry[], now: number): AdmitEntry[] {
    return want.map((e) => {
      const s = this.find(e.ip, e.proto, e.port);
      return s && s.expiresAt > now ? { ...e, exists: true } : e;
    });
  }

  /** What the set holds at start (a previous gate's elements): their expiry, so refreshes treat them as existing. */
  seed(present: { ip: string; proto: Proto; port: number; expiresInSec: number }[], now: number): void {
    for (const p of present) this.put(p.ip, p.proto, p.port, now + p.expiresInSec * 1000, -Infinity, undefined);
  }

  record(done: AdmitEntry[], now: number, name?: string): void {
    for (const e of done) {
      const prev = this.find(e.ip, e.proto, e.port);
      const expiresAt = now + e.timeoutSec * 1000;
      const names = name !== undefined ? withName(prev?.names, name, expiresAt) : prev?.names;
      // the kernel's timeout is the one written last (a re-add sets it anew), so is this expiry
      if (prev) [prev.expiresAt, prev.writtenAt, prev.names] = [expiresAt, now, names];
      else this.put(e.ip, e.proto, e.port, expiresAt, now, names);
    }
  }

  /** Note that `name` no longer holds these (its admission was overtaken by a reload); returns the elements nobody holds now. */
  drop(entries: AdmitEntry[], name: string): AdmitEntry[] {
    const out: AdmitEntry[] = [];
    for (const e of entries) {
      const s = this.find(e.ip, e.proto, e.port);
      if (!s?.names) continue;
      s.names = keepNames(s.names, (n) => n !== name);
      if (!s.names) {
        this.remove(e.ip, s);
        out.push(e);
      }
    }
    return out;
  }

  /**
   * After a reload: forget the names the config no longer opens (and the ones whose own answer expired);
   * the elements left with none are forgotten and returned, to be taken out of the kernel. Elements
   * with no names on record (written by an earlier gate process) are kept: they time out as before.
   */
  release(allowed: StillAllowed, now: number): { ip: string; proto: Proto; port: number }[] {
    const out: { ip: string; proto: Proto; port: number }[] = [];
    for (const [ip, s] of this.all()) {
      if (!s.names) continue;
      s.names = keepNames(s.names, (n, until) => until > now && allowed(n, s.proto, s.port));
      if (!s.names) {
        this.remove(ip, s);
        if (s.expiresAt > now) out.push({ ip, proto: s.proto, port: s.port });
      }
    }
    return out;
  }

  /** Every element is written again at its next answer (the table may have been re-created meanwhile); names and expiries stay. */
  rewriteAll(): void {
    for (const [, s] of this.all()) s.writtenAt = -Infinity;
  }

  /** forget expired elements (bounded memory) */
  prune(now: number): void {
    for (const [ip, s] of this.all()) if (s.expiresAt <= now) this.remove(ip, s);
  }

  get size(): number {
    return this.count;
  }

  private find(ip: string, proto: Proto, port: number): Slot | undefined {
    const v = this.seen.get(ip);
    if (!v) return undefined;
    if (!Array.isArray(v)) return v.proto === proto && v.port === port ? v : undefined;
    return v.find((s) => s.proto === proto && s.port === port);
  }

  private put(ip: string, proto: Proto, port: number, expiresAt: number, writtenAt: number, names: Names | undefined): void {
    const old = this.find(ip, proto, port);
    if (old) {
      [old.expiresAt, old.writtenAt, old.names] = [expiresAt, writtenAt, names];
      return;
    }
    const slot = new Slot(proto, port, expiresAt, writtenAt, names);
    const v = this.seen.get(ip);
    this.seen.set(ip, v === undefined ? slot : Array.isArray(v) ? [...v, slot] : [v, slot]);
    this.count++;
  }

  private remove(ip: string, slot: Slot): void {
    const v = this.seen.get(ip);
    if (v === slot) this.seen.delete(ip);
    else if (Array.isArray(v) && v.includes(slot)) {
      const rest = v.filter((s) => s !== slot);
      this.seen.set(ip, rest.length === 1 ? rest[0]! : rest);
    } else return;
    this.count--;
  }

  /** a snapshot of every slot (removing while iterating it is safe) */
  private all(): [string, Slot][] {
    const out: [string, Slot][] = [];
    for (const [ip, v] of this.seen) {
      if (Array.isArray(v)) for (const s of v) out.push([ip, s]);
      else out.push([ip, v]);
    }
    return out;
  }
}

/** One kernel element on record: one shape for all (a class). */
class Slot {
  constructor(
    readonly proto: Proto,
    readonly port: number,
    public expiresAt: number,
    public writtenAt: number,
    public names: Names | undefined,
  ) {}
}

/** The names an element was admitted for, each with its own expiry: one name (the common case, kept small) or several. */
type Names = { name: string; until: number } | Map<string, number>;

function withName(names: Names | undefined, name: string, until: number): Names {
  if (!names) return { name, until };
  if (!(names instanceof Map)) {
    if (names.name === name) return { name, until: Math.max(names.until, until) };
    return new Map([[names.name, names.until], [name, until]]);
  }
  names.set(name, Math.max(names.get(name) ?? 0, until));
  return names;
}

/** the names `keep` accepts; undefined when none is left */
function keepNames(names: Names, keep: (name: string, until: number) => boolean): Names | undefined {
  if (!(names instanceof Map)) return keep(names.name, names.until) ? names : undefined;
  for (const [n, until] of names) if (!keep(n, until)) names.delete(n);
  if (names.size === 0) return undefined;
  if (names.size === 1) {
    const [[name, until]] = [...names] as [[string, number]];
    return { name, until };
  }
  return names;
}

export class Gate {
  private policy: GatePolicy;
  private readonly cache = new AnswerCache<Entry>();
  private readonly inflight = new Map<string, Promise<Outcome>>();
  readonly ledger = new KernelLedger();
  readonly stats: GateStats;
  /** queries waiting on upstream, per client (coalesced ones included) */
  private readonly waiting = new Map<string, number>();
  private waitingTotal = 0;
  private lastPrune = 0;
  /**
   * bumped by each reload: a fetch that began before one checks its name again before answering, and
   * its answer is not cached (a warm hit skips the policy: the cache holds only what the current one allows)
   */
  private generation = 0;

  /**
   * share: the caps of the process (the gates of every policy use one); a gate alone has its own.
   */
  constructor(
    policy: GatePolicy,
    private opts: GateOptions,
    private readonly deps: GateDeps,
    private readonly share: GateShare = new GateShare(),
  ) {
    this.policy = policy;
    this.stats = new GateStats(deps.nowMs());
    share.join(this.cache);
  }

  /** No longer used (its policy left the config): its answers stop counting against the process's cap. */
  retire(): void {
    this.share.leave(this.cache);
  }

  /** For status and metrics: the counters plus what is in flight now. */
  snapshot() {
    return this.stats.snapshot(this.deps.nowMs(), {
      upstream: this.inflight.size,
      waiting: this.waitingTotal,
      limit: this.maxInflight,
      perClientLimit: this.maxPerClient,
      cacheEntries: this.cache.size,
      cacheLimit: this.opts.cacheSize,
    });
  }

  private get maxInflight(): number {
    return this.opts.maxInflight ?? MAX_INFLIGHT;
  }

  private get maxPerClient(): number {
    return this.opts.maxInflightPerClient ?? MAX_INFLIGHT_PER_CLIENT;
  }

  /**
   * New allowlist (SIGHUP). Cached answers stay only for names the new config opens exactly as before
   * (same entries, ports and rebinding guard), so an allowed name keeps its answer and its addresses.
   * Kernel elements no allowed name holds any more are taken out (deps.remove) and returned: until
   * then they would have stayed open for up to their timeout (max(TTL, minTtl) + staleGrace). Every
   * element is written again at its next answer (the table may have been re-created meanwhile).
   */
  async reload(policy: GatePolicy, opts: GateOptions): Promise<{ removed: AdmitEntry[]; cacheDropped: number }> {
    this.policy = policy;
    this.opts = opts;
    this.generation++;
    let cacheDropped = 0;
    for (const [qtype, name, e] of this.cache.entries()) {
      const m = policy.match(name);
      const was = e.match;
      const same = m && m.allowPrivate === was.allowPrivate && m.rules.join() === was.rules.join() && JSON.stringify(m.ports) === JSON.stringify(was.ports);
      if (!same || (!opts.ipv6 && qtype === TYPE.AAAA)) {
        this.cache.delete(qtype, name);
        cacheDropped++;
      }
    }
    cacheDropped += this.share.trim(opts.cacheSize);
    this.ledger.rewriteAll();
    const now = this.deps.nowMs();
    const removed: AdmitEntry[] = this.ledger
      .release((name, proto, port) => this.opensPort(name, proto, port), now)
      .map((e) => ({ ...e, family: e.ip.includes(':') ? 6 : 4, timeoutSec: 0 }));
    if (removed.length && this.deps.remove) await this.deps.remove(removed);
    return { removed, cacheDropped };
  }

  /**
   * A reload came while this admission was in flight: what the new config does not open for the name
   * is taken back out (unless another name holds it). True: the answer must not be released.
   */
  private async undoIfRemoved(name: string, admitted: AdmitEntry[]): Promise<boolean> {
    const gone = admitted.filter((e) => !this.opensPort(name, e.proto, e.port));
    if (!gone.length) return false;
    const orphans = this.ledger.drop(gone, name);
    if (orphans.length && this.deps.remove) await this.deps.remove(orphans).catch(() => {});
    return true;
  }

  /** the current config answers this name and opens its addresses on this port */
  private opensPort(name: string, proto: Proto, port: number): boolean {
    return this.policy.match(name)?.ports.some((p) => p.proto === proto && p.port === port) ?? false;
  }

  get cached(): number {
    return this.cache.size;
  }

  /** Kernel element timeout for an answer TTL: max(TTL, minTtl) + staleGrace. */
  timeoutFor(ttl: number): number {
    return Math.ceil(Math.max(ttl, this.opts.minTtl) + this.opts.staleGrace);
  }

  /**
   * One query in, one response out (null: not answerable, e.g. a stray
   * response packet). Synchronous for refusals and warm cache hits.
   */
  handle(msg: Buffer, client: string, transport: 'udp' | 'tcp'): Buffer | null | Promise<Buffer | null> {
    const t0 = this.deps.nowMs();
    const parsed = parseQuery(msg);
    if (!parsed.ok) {
      if (parsed.id === null) return null;
      this.emit(t0, client, transport, '', '', 'malformed', parsed.rcode, [], false);
      return buildError(msg, parsed.id, parsed.questionEnd, parsed.rcode);
    }
    const q = parsed.q;
    // Only answers the current policy allows are in the cache (a reload keeps only those it opens exactly as
    // before): a warm hit needs no policy look-up.
    const fast = q.qclass === 1 && !q.oddName && (q.qtype === TYPE.A || q.qtype === TYPE.AAAA) ? this.cache.get(q.qtype, q.name) : undefined;
    if (fast && fast.expiresAt > t0 && t0 < fast.checkAfter) return this.respond(msg, q, fast, t0, client, transport, true);
    const match = q.qclass === 1 && !q.oddName ? this.policy.match(q.name) : null;
    if (!match) {
      // Not allowed: answered here, nothing goes upstream.
      this.emit(t0, client, transport, q.name, typeName(q.qtype), 'refused', 'REFUSED', [], false);
      return buildResponse(msg, q, 'REFUSED', [], 0, transport === 'udp');
    }
    const family: Family | null = q.qtype === TYPE.A ? 4 : q.qtype === TYPE.AAAA ? 6 : null;
    if (family === null || (family === 6 && !this.opts.ipv6)) {
      // Only addresses are answered (and only those open anything): other types get NODATA.
      const detail = family === null ? 'only A and AAAA are answered' : 'ipv6 is off in the config';
      this.emit(t0, client, transport, q.name, typeName(q.qtype), 'allowed', 'NOERROR', [], false, match.rules, detail);
      return buildResponse(msg, q, 'NOERROR', [], 0, transport === 'udp');
    }
    const hit = this.cache.get(q.qtype, q.name);
    if (hit && hit.expiresAt > t0) {
      if (t0 < hit.checkAfter) return this.respond(msg, q, hit, t0, client, transport, true);
      const remaining = Math.ceil((hit.expiresAt - t0) / 1000);
      const stale = this.ledger.stale(this.entriesOf(hit, remaining), t0);
      hit.checkAfter = t0 + CHECK_EVERY_MS;
      if (stale.length === 0) return this.respond(msg, q, hit, t0, client, transport, true);
      const gen = this.generation;
      return this.deps.admit(stale).then(
        async () => {
          this.ledger.record(stale, this.deps.nowMs(), q.name);
          if (gen !== this.generation && (await this.undoIfRemoved(q.name, stale))) return this.failed(msg, q, t0, client, transport, RELOADED, match.rules);
          return this.respond(msg, q, hit, t0, client, transport, true);
        },
        (e: Error) => this.failed(msg, q, t0, client, transport, `kernel: ${e.message}`, match.rules),
      );
    }
    if (hit) this.cache.delete(q.qtype, q.name);
    const ck = `${q.qtype}:${q.name}`;
    // Bounded: a client over its share, or a gate at its overall cap, is answered SERVFAIL now (no queue, nothing upstream).
    const mine = this.waiting.get(client) ?? 0;
    let p = this.inflight.get(ck);
    if (mine >= this.maxPerClient || (!p && this.share.inflight >= this.maxInflight)) {
      const why = mine >= this.maxPerClient ? `this client has ${mine} queries waiting on upstream (cap ${this.maxPerClient})` : `${this.share.inflight} names being fetched upstream (cap ${this.maxInflight})`;
      this.emit(t0, client, transport, q.name, typeName(q.qtype), 'shed', 'SERVFAIL', [], false, match.rules, why);
      return buildResponse(msg, q, 'SERVFAIL', [], 0, transport === 'udp');
    }
    if (!p) {
      p = this.fetch(q.name, family, match).finally(() => {
        this.inflight.delete(ck);
        this.share.inflight--;
      });
      this.inflight.set(ck, p);
      this.share.inflight++;
    }
    this.waiting.set(client, mine + 1);
    this.waitingTotal++;
    const done = () => {
      this.waitingTotal--;
      const n = (this.waiting.get(client) ?? 1) - 1;
      if (n > 0) this.waiting.set(client, n);
      else this.waiting.delete(client);
    };
    const generation = this.generation;
    return p.finally(done).then((o) => {
      if ('fail' in o) return this.failed(msg, q, t0, client, transport, o.fail, match.rules);
      if (o.entry.expiresAt > o.entry.storedAt && this.opts.cacheSize > 0 && generation === this.generation) this.store(q.qtype, q.name, o.entry);
      return this.respond(msg, q, o.entry, t0, client, transport, false, o.answeredAt, o.kernelMs);
    });
  }

  /** Upstream, then the kernel, then (the caller) the answer. */
  private async fetch(name: string, family: Family, match: Match): Promise<Outcome> {
    const gen = this.generation;
    let r: UpstreamResult;
    const u0 = this.hr();
    try {
      r = await this.deps.upstream(name, family, match.allowPrivate);
    } catch (e) {
      this.stats.upstreamDone(this.hr() - u0, false);
      return { fail: `upstream: ${(e as Error).message}` };
    }
    const answeredAt = this.hr();
    this.stats.upstreamDone(answeredAt - u0, r.ok || r.kind === 'nxdomain');
    const now = this.deps.nowMs();
    if (!r.ok) {
      if (r.kind === 'nxdomain') return { answeredAt, entry: new Entry('NXDOMAIN', answerBlock([]), 0, family, [], NEGATIVE_TTL, now, now + NEGATIVE_TTL * 1000, match, undefined, Infinity) };
      return { fail: `upstream ${r.kind}: ${r.detail}` };
    }
    const ttl = Math.min(this.opts.maxTtl, ...r.addresses.map((a) => a.ttl), r.addresses.length ? Infinity : NEGATIVE_TTL);
    const records: WireRecord[] = [];
    const ips: string[] = [];
    for (const a of r.addresses) {
      const rec = addressRdata(a.ip);
      if (rec) {
        records.push(rec);
        ips.push(a.ip);
      }
    }
    const detail = r.refused.length ? `dropped (rebinding guard): ${r.refused.map((x) => `${x.ip} ${x.reason}`).join(', ')}` : undefined;
    const entry = new Entry('NOERROR', answerBlock(records), records.length, family, ips, ttl, now, now + ttl * 1000, match, detail, ips.length ? now + CHECK_EVERY_MS : Infinity);
    const want = this.ledger.mark(this.entriesOf(entry, ttl), now);
    let kernelMs: number | undefined;
    if (want.length) {
      const k0 = this.hr();
      try {
        await this.deps.admit(want);
      } catch (e) {
        return { fail: `kernel: ${(e as Error).message}` };
      }
      kernelMs = Math.round((this.hr() - k0) * 1000) / 1000;
      this.ledger.record(want, this.deps.nowMs(), name);
      if (gen !== this.generation && (await this.undoIfRemoved(name, want))) return { fail: RELOADED };
    }
    return { entry, answeredAt, ...(kernelMs !== undefined ? { kernelMs } : {}) };
  }

  private entriesOf(e: Entry, ttl: number): AdmitEntry[] {
    const timeoutSec = this.timeoutFor(ttl);
    const out: AdmitEntry[] = [];
    for (const ip of e.ips) for (const p of e.match.ports) out.push({ family: e.family, ip, proto: p.proto, port: p.port, timeoutSec });
    return out;
  }

  private store(qtype: number, name: string, e: Entry): void {
    this.cache.set(qtype, name, e);
    this.share.trim(this.opts.cacheSize);
    if (e.storedAt - this.lastPrune > 60_000) {
      this.lastPrune = e.storedAt;
      this.ledger.prune(e.storedAt);
      this.cache.prune(e.storedAt);
    }
  }

  private respond(msg: Buffer, q: Query, e: Entry, t0: number, client: string, transport: 'udp' | 'tcp', cached: boolean, answeredAt?: number, kernelMs?: number): Buffer {
    const now = this.deps.nowMs();
    const ttl = Math.max(0, Math.ceil((e.expiresAt - now) / 1000));
    const res = respondBlock(msg, q, e.rcode, e.answers, e.count, ttl, transport === 'udp');
    const releaseMs = answeredAt === undefined ? undefined : Math.round((this.hr() - answeredAt) * 1000) / 1000;
    this.emit(t0, client, transport, q.name, typeName(q.qtype), 'allowed', e.rcode, e.ips, cached, e.match.rules, e.detail, releaseMs, kernelMs);
    return res;
  }

  private hr(): number {
    return (this.deps.hrMs ?? this.deps.nowMs)();
  }

  private failed(msg: Buffer, q: Query, t0: number, client: string, transport: 'udp' | 'tcp', detail: string, rules: string[]): Buffer {
    // Fail closed: no answer that the kernel does not back. SERVFAIL makes the client retry.
    this.emit(t0, client, transport, q.name, typeName(q.qtype), 'failed', 'SERVFAIL', [], false, rules, detail);
    return buildResponse(msg, q, 'SERVFAIL', [], 0, transport === 'udp');
  }

  private emit(t0: number, client: string, transport: 'udp' | 'tcp', name: string, type: string, verdict: Verdict, rcode: Rcode, ips: string[], cached: boolean, rules?: string[], detail?: string, releaseMs?: number, kernelMs?: number): void {
    const now = this.deps.nowMs();
    this.stats.decision(verdict, client, cached, now);
    const e: QueryEvent = { at: now, client, transport, name, type, verdict, rcode, ips, cached, ms: now - t0 };
    if (rules) e.rules = rules;
    if (releaseMs !== undefined) e.releaseMs = releaseMs;
    if (kernelMs !== undefined) e.kernelMs = kernelMs;
    if (detail) e.detail = detail;
    this.deps.onQuery(e);
  }
}
