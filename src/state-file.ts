/**
 * The state.json contract: the type, the writer (serializeState) and the
 * reader (parseState), with the notes people get about a file. Pure; the
 * file operations are in src/system/state.ts.
 */
import path from 'node:path';
import { z } from 'zod';
import { checkDomain } from './config/name-checks.js';
import { forbiddenReason, parseIp } from './net/ip.js';

/** What egressfw remembers between syncs (saved as JSON). Times are unix seconds. */
export interface State {
  version: 1;
  domains: Record<string, DomainState>;
  lastSync?: { at: number; ok: boolean; message: string };
  /** first successful sync: from then on, containers stay enforced even if ufw is switched off */
  enforcedSince?: number;
  /** what egressfw found before its first change, for `uninstall` */
  original?: { ufwOutputPolicy?: string; ufwEnabled?: boolean; createdChains?: string[] };
}
export interface DomainState {
  ips: Record<string, IpState>;
  /** last resolution status word (ok, nxdomain, timeout, ...) */
  status: string;
  lastOk?: number;
}
export interface IpState {
  firstSeen: number;
  lastSeen: number;
  ttl: number;
}

export const emptyState = (): State => ({ version: 1, domains: {} });

export const STATE_NAME = 'state.json';
export const stateFile = (dir: string) => path.join(dir, STATE_NAME);

/** The writer: what sync saves (parseState reads it back unchanged). */
export const serializeState = (s: State): string => `${JSON.stringify(s, null, 2)}\n`;

/** Saved times may run ahead of the clock by this much (clock steps at boot), not more. */
export const MAX_CLOCK_SKEW = 86400;
/** DNS's own limit (RFC 2181); a config's dns.maxTtl clamps further. */
const MAX_TTL = 2 ** 31 - 1;

export interface StateCheck {
  /** unix seconds: no saved time may be later than now + MAX_CLOCK_SKEW */
  now: number;
  /** dns.maxTtl: saved TTLs are clamped to it */
  maxTtl?: number;
  /** names whose config entry sets allowPrivate (the rebinding guard is re-applied to everything else) */
  allowPrivate?: (domain: string) => boolean;
}

export interface LoadedState {
  state: State;
  /** entries dropped, one line each (capped) */
  warnings: string[];
  /** why the file as a whole is unusable (then `state` is empty but for a recovered `original`), or null */
  damaged: string | null;
}

const POLICIES = ['ACCEPT', 'DROP', 'REJECT'] as const;
const CHAINS = ['DOCKER-USER/4', 'DOCKER-USER/6'] as const;
const top = z.object({
  version: z.literal(1),
  domains: z.record(z.string(), z.unknown()),
  lastSync: z.unknown().optional(),
  enforcedSince: z.unknown().optional(),
  original: z.unknown().optional(),
});
const MAX_WARNINGS = 20;

/** What egressfw found before its first change, field by field: a bad field does not cost the others. */
function checkOriginal(raw: unknown, warn: (w: string) => void): State['original'] | undefined {
  if (raw === undefined) return undefined;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    warn('original: not an object; dropped');
    return undefined;
  }
  const o = raw as Record<string, unknown>;
  const out: NonNullable<State['original']> = {};
  if (o.ufwOutputPolicy !== undefined) {
    const p = z.enum(POLICIES).safeParse(o.ufwOutputPolicy);
    if (p.success) out.ufwOutputPolicy = p.data;
    else warn(`original.ufwOutputPolicy: ${JSON.stringify(o.ufwOutputPolicy)} is not ACCEPT, DROP or REJECT; dropped`);
  }
  if (o.ufwEnabled !== undefined) {
    if (typeof o.ufwEnabled === 'boolean') out.ufwEnabled = o.ufwEnabled;
    else warn('original.ufwEnabled: not true or false; dropped');
  }
  if (o.createdChains !== undefined) {
    const list = Array.isArray(o.createdChains) ? o.createdChains : [];
    const good = list.filter((c): c is (typeof CHAINS)[number] => (CHAINS as readonly unknown[]).includes(c));
    if (good.length !== list.length || !Array.isArray(o.createdChains)) warn(`original.createdChains: kept only ${CHAINS.join(' / ')} entries`);
    if (good.length) out.createdChains = [...new Set(good)];
  }
  return out;
}

/**
 * The `original` of a file too damaged to parse (truncated, garbage): found
 * by its own keys, so `uninstall` can still put ufw back as it was.
 */
export function recoverOriginal(text: string): State['original'] | undefined {
  try {
    const doc = JSON.parse(text) as { original?: unknown };
    if (doc && typeof doc === 'object') {
      const o = checkOriginal(doc.original, () => {});
      return o && Object.keys(o).length ? o : undefined;
    }
  } catch {
    /* scan the text */
  }
  const out: NonNullable<State['original']> = {};
  const policy = /"ufwOutputPolicy"\s*:\s*"(ACCEPT|DROP|REJECT)"/.exec(text);
  if (policy) out.ufwOutputPolicy = policy[1]!;
  const enabled = /"ufwEnabled"\s*:\s*(true|false)\b/.exec(text);
  if (enabled) out.ufwEnabled = enabled[1] === 'true';
  const chains = /"createdChains"\s*:\s*\[([^\]]*)\]/.exec(text);
  const found = chains ? CHAINS.filter((c) => chains[1]!.includes(`"${c}"`)) : [];
  if (found.length) out.createdChains = found;
  return Object.keys(out).length ? out : undefined;
}

/**
 * Pure: saved text -> State, validated like the config. The file is input:
 * whatever is in it must not widen the allowlist. Host addresses only (no
 * networks), the rebinding guard re-applied, times not in the future, TTLs
 * clamped; a bad entry is dropped with a warning and the rest kept. A file
 * that is not a version-1 state document at all is `damaged`: the caller
 * starts from scratch (keeping a recovered `original`) and, if it writes,
 * moves the file aside first. A missing file is a first run.
 */
export function parseState(text: string | null, check: StateCheck): LoadedState {
  if (text === null) return { state: emptyState(), warnings: [], damaged: null };
  const warnings: string[] = [];
  let dropped = 0;
  const warn = (w: string) => {
    if (warnings.length < MAX_WARNINGS) warnings.push(w);
    else dropped++;
  };
  const damaged = (why: string): LoadedState => {
    const original = recoverOriginal(text);
    return { state: { ...emptyState(), ...(original ? { original } : {}) }, warnings: [], damaged: why };
  };
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    // the parser's message quotes the text; say where only
    const at = /position (\d+)/.exec((e as Error).message);
    return damaged(`not valid JSON${at ? ` (at byte ${at[1]})` : ''}`);
  }
  const parsed = top.safeParse(doc);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    return damaged(`not an egressfw state document (${issue.path.join('.') || 'top level'}: ${issue.message})`);
  }
  const raw = parsed.data;
  const latest = check.now + MAX_CLOCK_SKEW;
  const time = z.number().int().min(0).max(latest);
  const timeProblem = (v: unknown) => (typeof v === 'number' && Number.isInteger(v) && v > latest ? 'in the future' : 'not a unix time');
  const maxTtl = Math.min(MAX_TTL, check.maxTtl ?? MAX_TTL);
  const ipSchema = z.object({ firstSeen: time, lastSeen: time, ttl: z.number().int().min(0).max(MAX_TTL) });
  const domainSchema = z.object({ ips: z.record(z.string(), z.unknown()), status: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/), lastOk: time.optional() });

  const domains: Record<string, DomainState> = {};
  for (const [name, value] of Object.entries(raw.domains)) {
    const show = JSON.stringify(name.slice(0, 80));
    const n = checkDomain(name);
    if (!n.ok || n.name !== name) {
      warn(`domain ${show}: not a hostname egressfw writes; dropped`);
      continue;
    }
    const d = domainSchema.safeParse(value);
    if (!d.success) {
      const i = d.error.issues[0]!;
      warn(`domain ${name}: ${i.path.join('.') || 'entry'}: ${i.path[0] === 'lastOk' ? timeProblem((value as { lastOk?: unknown }).lastOk) : i.message}; dropped`);
      continue;
    }
    const ips: Record<string, IpState> = {};
    for (const [key, v] of Object.entries(d.data.ips)) {
      const ip = parseIp(key);
      const where = `${name} ${JSON.stringify(key.slice(0, 60))}`;
      if (!ip) {
        warn(`${where}: not a host address; dropped`);
        continue;
      }
      const why = forbiddenReason(ip);
      if (why && !check.allowPrivate?.(name)) {
        warn(`${where}: ${why} range (DNS rebinding guard; allowPrivate is not set for ${name}); dropped`);
        continue;
      }
      const s = ipSchema.safeParse(v);
      if (!s.success) {
        const i = s.error.issues[0]!;
        const field = i.path[0];
        const val = v && typeof v === 'object' ? (v as Record<string, unknown>)[String(field)] : undefined;
        warn(`${where}: ${field === 'firstSeen' || field === 'lastSeen' ? `${String(field)} ${timeProblem(val)}` : `${i.path.join('.') || 'entry'}: ${i.message}`}; dropped`);
        continue;
      }
      if (s.data.firstSeen > s.data.lastSeen) {
        warn(`${where}: firstSeen after lastSeen; dropped`);
        continue;
      }
      ips[ip.text] = { ...s.data, ttl: Math.min(s.data.ttl, maxTtl) };
    }
    domains[name] = { ips, status: d.data.status, ...(d.data.lastOk !== undefined ? { lastOk: d.data.lastOk } : {}) };
  }

  const state: State = { version: 1, domains };
  if (raw.lastSync !== undefined) {
    const l = z.object({ at: time, ok: z.boolean(), message: z.string().max(4000) }).safeParse(raw.lastSync);
    if (l.success) state.lastSync = l.data;
    else warn('lastSync: not a valid record; dropped');
  }
  if (raw.enforcedSince !== undefined) {
    const e = time.safeParse(raw.enforcedSince);
    if (e.success) state.enforcedSince = e.data;
    else warn(`enforcedSince: ${timeProblem(raw.enforcedSince)}; dropped`);
  }
  const original = checkOriginal(raw.original, warn);
  if (original) state.original = original;
  if (dropped) warnings.push(`... and ${dropped} more dropped entries`);
  return { state, warnings, damaged: null };
}

/** The StateCheck for a config: its maxTtl and its allowPrivate entries. */
export function stateCheck(config: { dns: { maxTtl: number }; domains: { name: string; allowPrivate: boolean }[]; policies?: { domains: { name: string; allowPrivate: boolean }[] }[] }, now: number): StateCheck {
  // policies' names too: one state entry per name, whichever lists allow it (src/plan/policies.ts)
  const allow = new Set([config, ...(config.policies ?? [])].flatMap((l) => l.domains).filter((d) => d.allowPrivate).map((d) => d.name));
  return { now, maxTtl: config.dns.maxTtl, allowPrivate: (n) => allow.has(n) };
}

/** One line for people about a damaged file that was (or would be) set aside. */
export function damagedNote(file: string, why: string, original: State['original'] | undefined, aside: string | null): string {
  return (
    `${file} is damaged (${why}); ${aside ? `moved it to ${aside}` : '`egressfw sync` moves it aside'} and started without last-known-good IPs; ` +
    (original?.ufwOutputPolicy
      ? `the ufw policy found before egressfw's first change (${original.ufwOutputPolicy}) was recovered from it`
      : 'no ufw policy from before egressfw\'s first change could be recovered from it: after `egressfw uninstall`, check `ufw status verbose`')
  );
}

/** Everything to tell people about a loaded state file, one line each. */
export function stateNotes(file: string, loaded: LoadedState, aside: string | null = null): string[] {
  return [...loaded.warnings.map((w) => `${file}: ${w}`), ...(loaded.damaged ? [damagedNote(file, loaded.damaged, loaded.state.original, aside)] : [])];
}

