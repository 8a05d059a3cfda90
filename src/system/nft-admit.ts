/**
 * The gate's kernel writer: adds `ip . proto . port timeout T` elements to
 * the gate4/gate6 sets of table inet egressfw, and says when they are in.
 *
 * One long-lived `nft -i` process fed over stdin, a line per transaction.
 * After each line goes `ack N`, a deliberate syntax error: nft reports it on
 * stderr with the offending line, so "ack N" there means the line before it
 * is done; any other "Error:" before it means that line failed.
 * Measured (scripts/bench/gate.ts, and by hand with 50,000 elements in the
 * set): 0.2 ms p50 / 0.5 ms p99 per insert, against 4-8 ms per spawned
 * `nft -f -`. Not `nft -e` (--echo) as the ack: echo makes nft fetch every
 * element of the set first, 300 ms per line at 50,000 elements.
 * Requests that arrive while a line is in flight share the next line.
 * After LINES_PER_NFT lines a fresh nft (started ahead) takes over: nft -i
 * keeps every line in its history, and its cost per line grows with it.
 *
 * Timeouts: since Linux 6.12 adding an element that exists refreshes its
 * timeout. Before, it keeps the old one: an element the gate may already
 * have written (`exists`) is then written as add + delete + add in one
 * (atomic) transaction; slower (nft reads the set's elements for a delete)
 * but only for refreshes.
 */
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import type { Family } from '../net/ip.js';
import type { AdmitEntry } from '../gate/gate.js';
import { GATE_SET_SIZE, NFT, NFT_TABLE_REF } from '../plan/kernel-names.js';
import { spawnTool, type Exec } from './exec.js';

const GATE_TABLE = NFT_TABLE_REF;
const GATE_SET: Record<Family, string> = NFT.gate;

interface Pending {
  entries: AdmitEntry[];
  /** other nft commands for the same line (the daemon's policy map updates) */
  raw?: string;
  resolve: () => void;
  reject: (e: Error) => void;
}

export interface NftAdmitterOptions {
  /** where `nft` is looked for (default the fixed system dirs; tests and the bench put a stand-in in a dir of their own) */
  toolDirs?: readonly string[];
  /** re-adding refreshes timeouts (reAddRefreshes(os.release())); default true */
  reAdd?: boolean;
  /** lines written before the oldest is acknowledged (more: less waiting, but more nft transactions under load) */
  maxInflight?: number;
  /** an unanswered line fails after this long (and nft is restarted) */
  timeoutMs?: number;
  /** nft stopped or failed: told once per restart */
  onProblem?: (what: string) => void;
  /** lines one nft process runs before a fresh one takes over (default LINES_PER_NFT; Infinity: never) */
  linesPerProcess?: number;
}

/** Does adding an existing element refresh its timeout on this kernel (`uname -r`)? Linux 6.12 and later. */
export function reAddRefreshes(release: string): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (!m) return false;
  const [maj, min] = [Number(m[1]), Number(m[2])];
  return maj > 6 || (maj === 6 && min >= 12);
}

/** Pure: the nft line (one transaction) that puts these elements in with their timeouts. */
export function admitLine(entries: readonly AdmitEntry[], reAdd = true): string {
  // One element once per line, with the longest timeout asked (a duplicate in one command is an error).
  const byKey = new Map<string, AdmitEntry>();
  for (const e of entries) {
    const k = `${e.set ?? ''}|${e.family}|${e.ip}|${e.proto}|${e.port}`;
    const prev = byKey.get(k);
    if (!prev || prev.timeoutSec < e.timeoutSec) byKey.set(k, e);
  }
  const cmds: string[] = [];
  const elem = (e: AdmitEntry) => `${e.ip} . ${e.proto} . ${e.port}`;
  const timed = (e: AdmitEntry) => `${elem(e)} timeout ${Math.max(1, Math.ceil(e.timeoutSec))}s`;
  // per set: the top-level gate4/gate6, or a policy's own (AdmitEntry.set)
  const sets = [...new Set([...byKey.values()].map((e) => `${e.family}|${e.set ?? GATE_SET[e.family]}`))].sort();
  for (const key of sets) {
    const [famText, name] = key.split('|') as [string, string];
    const fam = Number(famText) as Family;
    const es = [...byKey.values()].filter((e) => e.family === fam && (e.set ?? GATE_SET[fam]) === name);
    const set = `${GATE_TABLE} ${name}`;
    const refresh = reAdd ? [] : es.filter((e) => e.exists);
    if (refresh.length) {
      // add (so the delete cannot fail) + delete + add: the timeout is set anew on any kernel
      const list = refresh.map(elem).join(', ');
      cmds.push(`add element ${set} { ${list} }`, `delete element ${set} { ${list} }`);
    }
    cmds.push(`add element ${set} { ${es.map(timed).join(', ')} }`);
  }
  return cmds.join('; ');
}

/**
 * Pure: the nft line (one transaction) that takes these elements out of their gate sets. Each is
 * added (no timeout) and then deleted: an element that timed out meanwhile is no error, and the
 * net effect is the same either way (nft has no `destroy element` before 1.0.8 / Linux 6.3).
 */
export function removeLine(entries: readonly AdmitEntry[]): string {
  const bySet = new Map<string, Set<string>>();
  for (const e of entries) {
    const set = `${GATE_TABLE} ${e.set ?? GATE_SET[e.family]}`;
    let s = bySet.get(set);
    if (!s) bySet.set(set, (s = new Set()));
    s.add(`${e.ip} . ${e.proto} . ${e.port}`);
  }
  const cmds: string[] = [];
  for (const [set, elems] of [...bySet].sort(([a], [b]) => a.localeCompare(b))) {
    const all = [...elems];
    for (let i = 0; i < all.length; i += 500) {
      const list = all.slice(i, i + 500).join(', ');
      cmds.push(`add element ${set} { ${list} }`, `delete element ${set} { ${list} }`);
    }
  }
  return cmds.join('; ');
}

/**
 * Lines one `nft -i` runs before a fresh one takes over. nft keeps every line it reads in its
 * editline history, and looks the last one up by walking that list before each line: its CPU per
 * line grows with the lines behind it (measured: 0.18 ms per line and ack over the first 3,000,
 * 0.55 ms averaged over 20,000) and so does its memory, without end in a long-lived gate.
 */
export const LINES_PER_NFT = 1000;

/**
 * nft -i reads its history from $HOME/.nft.history at start and writes it back at exit. /dev/null
 * is no directory, so both fail and nothing is written: egressfw's answers never land in a file
 * (with no HOME at all, nft wrote /.nft.history) and a start reads nothing (a 7 MB history took 0.3 s).
 */
const NFT_HOME = '/dev/null';

/** One `nft -i` process and the lines it has been sent and not yet acknowledged (oldest first: nft runs them in order). */
interface NftChild {
  proc: ChildProcessWithoutNullStreams;
  err: string;
  inflight: { seq: number; batch: Pending[]; sentAt: number }[];
  /** lines written to it so far */
  lines: number;
  timer?: NodeJS.Timeout;
}

/** What nft printed up to an ack: the line's own error (an "Error:" line before the ack's own, the last one), or null. */
export function lineErrorOf(text: string): string | null {
  const starts: number[] = [];
  for (let i = text.startsWith('Error:') ? 0 : text.indexOf('\nError:'); i >= 0; i = text.indexOf('\nError:', i + 1)) starts.push(text[i] === '\n' ? i + 1 : i);
  if (starts.length < 2) return null;
  const end = text.indexOf('\n', starts[0]!);
  return text.slice(starts[0], end < 0 ? undefined : end);
}

export class NftAdmitter {
  /** the child new lines go to */
  private cur: NftChild | null = null;
  /** started ahead, so a hand-over never waits for nft to start */
  private spare: NftChild | null = null;
  /** handed over: finishing its last lines, then gone (stdin ended) */
  private readonly retiring = new Set<NftChild>();
  private queue: Pending[] = [];
  private flushing = false;
  private seq = 0;
  private closed = false;
  /** lines committed and failed since start, nft processes restarted after a failure and handed over after LINES_PER_NFT (status, bench) */
  readonly stats = { lines: 0, elements: 0, failures: 0, restarts: 0, handovers: 0 };

  constructor(private readonly opts: NftAdmitterOptions = {}) {}

  /**
   * Requests of one event-loop turn share a line; lines are pipelined (the
   * next one does not wait for the previous ack), so a slow line never holds
   * up the answers behind it by more than nft's own work.
   */
  admit = (entries: AdmitEntry[]): Promise<void> => {
    if (this.closed) return Promise.reject(new Error('the kernel writer is closed'));
    if (!entries.length) return Promise.resolve();
    return this.enqueue({ entries });
  };

  /**
   * Any nft commands, as one transaction with whatever shares the line (the daemon's policy map
   * updates, src/schedule/policy-follow.ts): resolves once nft has run them.
   */
  command = (cmds: string): Promise<void> => {
    if (this.closed) return Promise.reject(new Error('the kernel writer is closed'));
    if (!cmds) return Promise.resolve();
    return this.enqueue({ entries: [], raw: cmds });
  };

  /** Take gate elements out (a reload: no allowed name holds them), in the same pipeline as the inserts. */
  remove = (entries: AdmitEntry[]): Promise<void> => this.command(entries.length ? removeLine(entries) : '');

  close(): void {
    this.closed = true;
    for (const c of [this.cur, this.spare, ...this.retiring]) if (c) this.end(c, new Error('the kernel writer is closed'));
    this.cur = this.spare = null;
    this.retiring.clear();
    for (const p of this.queue.splice(0)) p.reject(new Error('the kernel writer is closed'));
  }

  private enqueue(p: Omit<Pending, 'resolve' | 'reject'>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ ...p, resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        queueMicrotask(() => this.flush());
      }
    });
  }

  private spawn(): NftChild {
    // through the one door: nft from the fixed dirs, a clean environment (no PATH, LD_PRELOAD of the caller)
    const proc = spawnTool(['nft', '-i'], { stdio: ['pipe', 'pipe', 'pipe'], env: { HOME: NFT_HOME }, ...(this.opts.toolDirs ? { dirs: this.opts.toolDirs } : {}) }) as ChildProcessWithoutNullStreams;
    const c: NftChild = { proc, err: '', inflight: [], lines: 0 };
    proc.stdout.resume(); // nothing is printed there without --echo; never let it fill up
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (d: string) => {
      c.err += d;
      this.scan(c);
    });
    proc.on('error', (e) => this.failed(c, `cannot run nft: ${e.message}`));
    proc.on('exit', (code, signal) => this.failed(c, `nft exited (${signal ?? code})`));
    proc.stdin.on('error', () => {}); // reported through 'exit'
    return c;
  }

  /** Each "ack <seq>" on stderr closes the oldest line in flight: its own errors, if any, come before the ack's. */
  private scan(c: NftChild): void {
    for (;;) {
      const head = c.inflight[0];
      if (!head) {
        if (c.err.length > 1 << 16) c.err = c.err.slice(-4096);
        break;
      }
      // its own line of stderr (nft echoes the input line it could not parse); indexOf, not a RegExp per ack (6.6 % of a busy gate)
      const needle = `ack ${head.seq}\n`;
      let at = c.err.startsWith(needle) ? 0 : c.err.indexOf(`\n${needle}`);
      if (at < 0) break;
      if (at > 0) at++;
      const before = c.err.slice(0, at);
      c.err = c.err.slice(at + needle.length);
      c.inflight.shift();
      this.settle(head.batch, lineErrorOf(before));
    }
    this.arm(c);
    if (this.retiring.has(c) && !c.inflight.length) this.retire(c);
    if (this.queue.length && !this.flushing) this.flush();
  }

  private settle(batch: Pending[], error: string | null): void {
    if (error === null) {
      this.stats.lines++;
      for (const b of batch) {
        this.stats.elements += b.entries.length;
        b.resolve();
      }
    } else {
      this.stats.failures++;
      // nft says ENFILE's text when a set with a size is full
      const why = /Too many open files/.test(error) ? `a gate set is full (${GATE_SET_SIZE} elements; they expire with their timeouts)` : error;
      for (const b of batch) b.reject(new Error(why));
    }
  }

  /** The oldest line in flight must be answered within timeoutMs. */
  private arm(c: NftChild): void {
    clearTimeout(c.timer);
    const head = c.inflight[0];
    if (!head) return;
    const ms = this.opts.timeoutMs ?? 2000;
    c.timer = setTimeout(() => this.failed(c, `nft did not answer within ${ms} ms`), Math.max(0, head.sentAt + ms - Date.now()));
  }

  private flush(): void {
    this.flushing = false;
    if (!this.queue.length || this.closed) return;
    // Lines run in the order written (a map update after an earlier one): a child that has had its
    // lines hands over once all of them are acknowledged, and only then does the next child get one.
    if (this.cur && this.cur.lines >= (this.opts.linesPerProcess ?? LINES_PER_NFT)) {
      if (this.cur.inflight.length) return;
      this.retiring.add(this.cur);
      this.retire(this.cur);
      this.cur = null;
      this.stats.handovers++;
    }
    for (const c of this.retiring) if (c.inflight.length) return;
    // Bounded pipelining: further requests wait (and share a line) until an ack frees a slot.
    if (this.cur && this.cur.inflight.length >= (this.opts.maxInflight ?? 2)) return;
    const batch = this.queue.splice(0);
    const entries = batch.flatMap((b) => b.entries);
    const line = [entries.length ? admitLine(entries, this.opts.reAdd ?? true) : '', ...batch.map((b) => b.raw ?? '')].filter(Boolean).join('; ');
    let c: NftChild;
    try {
      if (!this.cur) {
        const ready = this.spare && this.spare.proc.exitCode === null && this.spare.proc.signalCode === null ? this.spare : null;
        this.spare = null;
        this.cur = ready ?? this.spawn();
        // the next hand-over's child starts now, off the path of the line after it
        if (this.cur.lines === 0 && (this.opts.linesPerProcess ?? LINES_PER_NFT) < Infinity) this.spare = this.spawn();
      }
      c = this.cur;
    } catch (e) {
      // nft not installed (or not executable): these answers fail, the next ones try again
      this.opts.onProblem?.(`cannot run nft: ${(e as Error).message}`);
      this.stats.failures++;
      for (const b of batch) b.reject(e as Error);
      return;
    }
    const seq = ++this.seq;
    c.inflight.push({ seq, batch, sentAt: Date.now() });
    c.lines++;
    if (c.inflight.length === 1) this.arm(c);
    c.proc.stdin.write(`${line}\nack ${seq}\n`);
  }

  /** A handed-over child with nothing in flight: its stdin ends and nft exits (writing no history: NFT_HOME). */
  private retire(c: NftChild): void {
    if (c.inflight.length) return;
    this.retiring.delete(c);
    this.end(c, null);
  }

  /** Stop a child; what it still had in flight fails with `why`. */
  private end(c: NftChild, why: Error | null): void {
    clearTimeout(c.timer);
    c.proc.removeAllListeners('exit');
    c.proc.removeAllListeners('error');
    c.proc.on('error', () => {});
    c.proc.stderr.removeAllListeners('data');
    if (c.proc.exitCode === null && c.proc.signalCode === null) {
      c.proc.stdin.end();
      c.proc.kill('SIGTERM');
    }
    const lines = c.inflight.splice(0);
    for (const l of lines) {
      this.stats.failures++;
      for (const b of l.batch) b.reject(why ?? new Error('nft was stopped'));
    }
  }

  /** A child gone or stuck: what it had in flight fails; the next line starts a fresh nft (no stale output). */
  private failed(c: NftChild, why: string): void {
    if (this.closed) return;
    const wasUsed = c === this.cur || this.retiring.has(c);
    if (c === this.cur) this.cur = null;
    if (c === this.spare) this.spare = null;
    this.retiring.delete(c);
    this.end(c, new Error(why));
    if (!wasUsed) return; // an idle spare: the next hand-over starts another
    this.opts.onProblem?.(why);
    this.stats.restarts++;
    if (this.queue.length && !this.flushing) this.flush();
  }
}

/** Pure: elements of a gate set from `nft -j list set inet egressfw gateN` (a previous gate's answers), with seconds left. */
export function parseGateSet(jsonText: string): { ip: string; proto: 'tcp' | 'udp'; port: number; expiresInSec: number }[] {
  const out: { ip: string; proto: 'tcp' | 'udp'; port: number; expiresInSec: number }[] = [];
  const doc = JSON.parse(jsonText) as { nftables?: { set?: { elem?: unknown[] } }[] };
  for (const item of doc.nftables ?? []) {
    for (const raw of item.set?.elem ?? []) {
      const e = (raw as { elem?: { val?: unknown; expires?: number; timeout?: number } }).elem;
      const c = (e?.val as { concat?: unknown[] } | undefined)?.concat;
      if (!e || !c || c.length !== 3) continue;
      const [ip, proto, port] = c;
      if (typeof ip !== 'string' || (proto !== 'tcp' && proto !== 'udp') || typeof port !== 'number') continue;
      out.push({ ip, proto, port, expiresInSec: e.expires ?? e.timeout ?? 0 });
    }
  }
  return out;
}

/** The gate sets' current elements (for the ledger at start); [] when the table or set is missing. */
export async function readGateSets(exec: Exec): Promise<ReturnType<typeof parseGateSet>> {
  const out: ReturnType<typeof parseGateSet> = [];
  for (const fam of [4, 6] as Family[]) {
    const r = await exec(['nft', '-j', 'list', 'set', ...GATE_TABLE.split(' '), GATE_SET[fam]]);
    if (r.exitCode === 0 && r.stdout) out.push(...parseGateSet(r.stdout));
  }
  return out;
}
