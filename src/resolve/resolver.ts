import { forbiddenReason, parseIp, compareIp, type Family } from '../net/ip.js';
import { realTimers, type TimerHandle, type Timers } from '../timers.js';
import { QueryError, type QueryFn, type QueryResult, type RecordType, type Server } from './query.js';

export type FailureKind = 'nxdomain' | 'servfail' | 'refused' | 'timeout' | 'malformed' | 'network' | 'cname-loop' | 'cname-too-long' | 'not-asked';

export interface Address {
  ip: string;
  family: Family;
  /** seconds, already raised to minTtl / lowered to maxTtl */
  ttl: number;
}

/** One family of one name: addresses (possibly none: NODATA) or a typed failure. */
export type FamilyResult =
  /** dropped: addresses beyond the per-name cap (maxAddresses), present only when > 0 */
  | { ok: true; addresses: Address[]; cnames: string[]; dropped?: number }
  | { ok: false; kind: FailureKind; detail: string };

export interface DomainResolution {
  name: string;
  v4: FamilyResult;
  /** null when IPv6 resolution is turned off in the config */
  v6: FamilyResult | null;
  /** answers dropped as DNS rebinding (private, loopback, metadata, ...) */
  refused: { ip: string; reason: string }[];
}

export interface ResolverOptions {
  query: QueryFn;
  servers: Server[];
  timeoutMs: number;
  attempts: number;
  concurrency: number;
  minTtl: number;
  maxTtl: number;
  ipv6: boolean;
  /** addresses kept per name and family (the lowest, for stable output); at most MAX_ADDRESSES */
  maxAddresses?: number;
  /** overall time for one name (both families, every server, round and CNAME hop) */
  deadlineMs?: number;
  /** the deadline's clock and timer; default the real ones */
  timers?: Timers;
}

const MAX_CNAME_HOPS = 8;
/** Hard ceiling on addresses kept per name and family: bounds the ipset and the state file whatever a server sends. */
export const MAX_ADDRESSES = 256;
export const DEFAULT_DEADLINE_MS = 20_000;

/** When one name's lookup must end (monotonic clock). */
interface Deadline {
  at: number;
  ms: number;
  timers: Timers;
}
const deadlineOf = (opts: ResolverOptions): Deadline => {
  const timers = opts.timers ?? realTimers;
  const ms = opts.deadlineMs ?? DEFAULT_DEADLINE_MS;
  return { at: timers.monoMs() + ms, ms, timers };
};
/** ms left; under 1 ms counts as none (no query fits in it) */
const remaining = (d: Deadline) => {
  const left = d.at - d.timers.monoMs();
  return left < 1 ? 0 : left;
};

class ResolveFailure extends Error {
  constructor(
    readonly kind: FailureKind,
    message: string,
  ) {
    super(message);
  }
}

const pastDeadline = (d: Deadline) => new ResolveFailure('timeout', `no answer within the ${d.ms} ms deadline for this name (dns.deadline)`);

/** One query, never past the deadline, even if the query function ignores its timeout. */
async function queryBefore(opts: ResolverOptions, deadline: Deadline, server: Server, name: string, type: RecordType): Promise<QueryResult> {
  const left = remaining(deadline);
  if (left <= 0) throw pastDeadline(deadline);
  let timer: TimerHandle;
  const cut = new Promise<never>((_, reject) => {
    timer = deadline.timers.setTimeout(() => reject(pastDeadline(deadline)), left + 50);
  });
  try {
    return await Promise.race([opts.query(server, name, type, Math.max(1, Math.min(opts.timeoutMs, Math.ceil(left)))), cut]);
  } catch (e) {
    // A query cut short by the deadline that times out has met the deadline (timers may fire a hair early).
    if (left < opts.timeoutMs && e instanceof QueryError && e.kind === 'timeout') throw pastDeadline(deadline);
    throw e;
  } finally {
    deadline.timers.clearTimeout(timer);
  }
}

/** Ask each server in turn, `attempts` rounds; NOERROR and NXDOMAIN are final answers, the rest moves on. */
async function ask(opts: ResolverOptions, deadline: Deadline, name: string, type: RecordType): Promise<QueryResult> {
  // An Error captures a stack trace: build one only when a query actually fails.
  let last: ResolveFailure | undefined;
  for (let round = 0; round < opts.attempts; round++) {
    for (const server of opts.servers) {
      const where = `${server.host}${server.port === 53 ? '' : `:${server.port}`}`;
      if (remaining(deadline) <= 0) throw pastDeadline(deadline);
      try {
        const r = await queryBefore(opts, deadline, server, name, type);
        if (r.rcode === 'NOERROR' || r.rcode === 'NXDOMAIN') return r;
        const kind: FailureKind = r.rcode === 'REFUSED' ? 'refused' : 'servfail';
        last = new ResolveFailure(kind, `${where} answered ${r.rcode}`);
      } catch (e) {
        if (e instanceof ResolveFailure) throw e; // the deadline
        const kind: FailureKind = e instanceof QueryError ? e.kind : 'network';
        last = new ResolveFailure(kind, `${where}: ${(e as Error).message}`);
      }
    }
  }
  throw last ?? new ResolveFailure('network', 'no DNS servers configured');
}

/** Resolve one type for one name, following CNAME chains (bounded, loop-safe). */
async function resolveType(opts: ResolverOptions, deadline: Deadline, name: string, type: RecordType): Promise<{ records: { data: string; ttl: number }[]; cnames: string[] }> {
  const cnames: string[] = [];
  const visited = new Set([name]);
  let target = name;
  let chainTtl = Infinity;
  for (let hop = 0; hop <= MAX_CNAME_HOPS; hop++) {
    const r = await ask(opts, deadline, target, type);
    if (r.rcode === 'NXDOMAIN') {
      throw new ResolveFailure('nxdomain', target === name ? 'no such domain (NXDOMAIN)' : `CNAME target ${target} does not exist (NXDOMAIN)`);
    }
    // Walk the chain the server sent, starting at the name we asked for.
    let cur = target;
    for (;;) {
      const records = r.answers.filter((a) => a.type === type && a.name === cur);
      if (records.length > 0) {
        return { records: records.map((a) => ({ data: a.data, ttl: Math.min(a.ttl, chainTtl) })), cnames };
      }
      const c = r.answers.find((a) => a.type === 'CNAME' && a.name === cur);
      if (!c) break;
      const next = c.data.toLowerCase().replace(/\.$/, '');
      if (visited.has(next)) throw new ResolveFailure('cname-loop', `CNAME loop: ${[...cnames, next].join(' -> ')}`);
      if (cnames.length >= MAX_CNAME_HOPS) throw new ResolveFailure('cname-too-long', `CNAME chain longer than ${MAX_CNAME_HOPS}`);
      visited.add(next);
      cnames.push(next);
      chainTtl = Math.min(chainTtl, c.ttl);
      cur = next;
    }
    if (cur === target) return { records: [], cnames }; // NODATA
    target = cur; // chain ends in a name without data in this answer: ask for it
  }
  throw new ResolveFailure('cname-too-long', `CNAME chain longer than ${MAX_CNAME_HOPS}`);
}

async function resolveFamily(opts: ResolverOptions, deadline: Deadline, name: string, family: Family, refused: DomainResolution['refused'], allowPrivate: boolean): Promise<FamilyResult> {
  const type: RecordType = family === 4 ? 'A' : 'AAAA';
  try {
    const { records, cnames } = await resolveType(opts, deadline, name, type);
    const byIp = new Map<string, Address>();
    for (const rec of records) {
      const ip = parseIp(rec.data);
      if (!ip || ip.family !== family) throw new ResolveFailure('malformed', `bad ${type} record data ${JSON.stringify(rec.data)}`);
      const why = forbiddenReason(ip);
      if (why && !allowPrivate) {
        refused.push({ ip: ip.text, reason: why });
        continue;
      }
      const ttl = Math.min(opts.maxTtl, Math.max(opts.minTtl, rec.ttl));
      const prev = byIp.get(ip.text);
      byIp.set(ip.text, { ip: ip.text, family, ttl: prev ? Math.min(prev.ttl, ttl) : ttl });
    }
    const all = [...byIp.values()].sort((a, b) => compareIp(a.ip, b.ip));
    const max = Math.min(MAX_ADDRESSES, opts.maxAddresses ?? MAX_ADDRESSES);
    if (all.length <= max) return { ok: true, addresses: all, cnames };
    return { ok: true, addresses: all.slice(0, max), cnames, dropped: all.length - max };
  } catch (e) {
    if (e instanceof ResolveFailure) return { ok: false, kind: e.kind, detail: e.message };
    throw e;
  }
}

export async function resolveDomain(opts: ResolverOptions, name: string, allowPrivate: boolean): Promise<DomainResolution> {
  const refused: DomainResolution['refused'] = [];
  const deadline = deadlineOf(opts);
  const [v4, v6] = await Promise.all([
    resolveFamily(opts, deadline, name, 4, refused, allowPrivate),
    opts.ipv6 ? resolveFamily(opts, deadline, name, 6, refused, allowPrivate) : Promise.resolve(null),
  ]);
  refused.sort((a, b) => compareIp(a.ip, b.ip));
  return { name, v4, v6, refused };
}

/** Resolve every name with at most `concurrency` names in flight; results keep the input order. */
export async function resolveAll(opts: ResolverOptions, names: { name: string; allowPrivate: boolean }[]): Promise<DomainResolution[]> {
  const out: DomainResolution[] = new Array(names.length);
  let next = 0;
  const worker = async () => {
    while (next < names.length) {
      const i = next++;
      out[i] = await resolveDomain(opts, names[i]!.name, names[i]!.allowPrivate);
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, names.length) }, worker));
  return out;
}

/** No DNS this round (drift repair, boot): every name keeps its saved IPs, as after a failed lookup. */
export function notAsked(name: string, ipv6: boolean): DomainResolution {
  const f: FamilyResult = { ok: false, kind: 'not-asked', detail: 'not resolved this round (saved IPs used)' };
  return { name, v4: f, v6: ipv6 ? f : null, refused: [] };
}

/** A short status word for people: ok, nodata, or the first failure. */
export function domainStatus(r: DomainResolution): string {
  const fams = [r.v4, r.v6].filter((f): f is FamilyResult => f !== null);
  const failed = fams.find((f) => !f.ok);
  if (failed && !failed.ok) return failed.kind;
  const n = fams.reduce((s, f) => s + (f.ok ? f.addresses.length : 0), 0);
  return n > 0 ? 'ok' : r.refused.length > 0 ? 'refused-private' : 'nodata';
}

/** One family of one name (the DNS gate asks per question): the addresses after the rebinding guard, or a typed failure. */
export async function resolveOneFamily(
  opts: ResolverOptions,
  name: string,
  family: Family,
  allowPrivate: boolean,
): Promise<{ result: FamilyResult; refused: DomainResolution['refused'] }> {
  const refused: DomainResolution['refused'] = [];
  const result = await resolveFamily(opts, deadlineOf(opts), name, family, refused, allowPrivate);
  return { result, refused };
}
