/**
 * The gate's kernel writer: adds `ip . proto . port timeout T` elements to
 * the gate4/gate6 sets of table inet egressfw, and says when they are in.
 *
 * One long-lived `nft -e -i` process fed over stdin: each line is one
 * transaction, and with --echo nft prints "# new generation N" once it is
 * committed: that line is the ack. Measured in scripts/bench/gate.ts against
 * spawning `nft -f -` per answer (a spawn costs milliseconds; a line to the
 * running process well under one). Requests that arrive while a line is in
 * flight are batched into the next line.
 *
 * Each element is written as add + delete + add in one transaction: before
 * Linux 6.10 re-adding an existing element keeps its old timeout, so the
 * refresh an answer owes would not happen; the transaction is atomic, so
 * packets never see the element missing.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { Family } from '../net/ip.js';
import type { AdmitEntry } from '../gate/gate.js';

export const GATE_TABLE = 'inet egressfw';
export const GATE_SET: Record<Family, string> = { 4: 'gate4', 6: 'gate6' };

interface Pending {
  entries: AdmitEntry[];
  resolve: () => void;
  reject: (e: Error) => void;
}

export interface NftAdmitterOptions {
  /** the nft binary (tests put a fake one here) */
  nft?: string;
  /** an unanswered line fails after this long (and nft is restarted) */
  timeoutMs?: number;
  /** nft stopped or failed: told once per restart */
  onProblem?: (what: string) => void;
}

/** Pure: the nft line (one transaction) that puts these elements in with their timeouts. */
export function admitLine(entries: readonly AdmitEntry[]): string {
  // One element once per line, with the longest timeout asked (a duplicate in one command is an error).
  const byKey = new Map<string, AdmitEntry>();
  for (const e of entries) {
    const k = `${e.family}|${e.ip}|${e.proto}|${e.port}`;
    const prev = byKey.get(k);
    if (!prev || prev.timeoutSec < e.timeoutSec) byKey.set(k, e);
  }
  const cmds: string[] = [];
  for (const fam of [4, 6] as Family[]) {
    const es = [...byKey.values()].filter((e) => e.family === fam);
    if (!es.length) continue;
    const elems = es.map((e) => `${e.ip} . ${e.proto} . ${e.port}`).join(', ');
    const timed = es.map((e) => `${e.ip} . ${e.proto} . ${e.port} timeout ${Math.max(1, Math.ceil(e.timeoutSec))}s`).join(', ');
    const set = `${GATE_TABLE} ${GATE_SET[fam]}`;
    cmds.push(`add element ${set} { ${elems} }`, `delete element ${set} { ${elems} }`, `add element ${set} { ${timed} }`);
  }
  return cmds.join('; ');
}

const GENERATION = /^# new generation \d+ by process \d+/m;

export class NftAdmitter {
  private proc: ChildProcessWithoutNullStreams | null = null;
  private queue: Pending[] = [];
  private inflight: Pending[] | null = null;
  private out = '';
  private err = '';
  private timer: NodeJS.Timeout | undefined;
  private errTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** lines committed and failed since start (status, bench) */
  readonly stats = { lines: 0, elements: 0, failures: 0, restarts: 0 };

  constructor(private readonly opts: NftAdmitterOptions = {}) {}

  admit = (entries: AdmitEntry[]): Promise<void> => {
    if (this.closed) return Promise.reject(new Error('the kernel writer is closed'));
    if (!entries.length) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ entries, resolve, reject });
      if (!this.inflight) this.flush();
    });
  };

  close(): void {
    this.closed = true;
    this.failInflight(new Error('the kernel writer is closed'));
    for (const p of this.queue.splice(0)) p.reject(new Error('the kernel writer is closed'));
    this.stop();
  }

  private start(): ChildProcessWithoutNullStreams {
    const p = spawn(this.opts.nft ?? 'nft', ['-e', '-i'], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    p.stdout.setEncoding('utf8');
    p.stderr.setEncoding('utf8');
    p.stdout.on('data', (d: string) => {
      if (p !== this.proc) return;
      this.out += d;
      if (GENERATION.test(this.out)) {
        this.out = '';
        this.done(null);
      } else if (this.out.length > 1 << 20) this.out = this.out.slice(-4096);
    });
    p.stderr.on('data', (d: string) => {
      if (p !== this.proc) return;
      this.err += d;
      // nft prints "Error: ...", the line, then a caret line; give the rest a moment to arrive.
      clearTimeout(this.errTimer);
      this.errTimer = setTimeout(() => this.failed(this.err.trim().split('\n')[0] ?? 'nft failed'), 20);
    });
    p.on('error', (e) => {
      if (p === this.proc) this.failed(`cannot run nft: ${e.message}`);
    });
    p.on('exit', (code, signal) => {
      if (p === this.proc) this.failed(`nft exited (${signal ?? code})`);
    });
    p.stdin.on('error', () => {}); // reported through 'exit'
    this.proc = p;
    return p;
  }

  private stop(): void {
    clearTimeout(this.timer);
    clearTimeout(this.errTimer);
    const p = this.proc;
    this.proc = null;
    this.out = '';
    this.err = '';
    if (p && p.exitCode === null && p.signalCode === null) {
      p.stdin.end();
      p.kill('SIGTERM');
    }
  }

  private flush(): void {
    if (this.inflight || !this.queue.length || this.closed) return;
    const batch = this.queue.splice(0);
    this.inflight = batch;
    const line = admitLine(batch.flatMap((b) => b.entries));
    const p = this.proc ?? this.start();
    this.timer = setTimeout(() => this.failed(`nft did not answer within ${this.opts.timeoutMs ?? 2000} ms`), this.opts.timeoutMs ?? 2000);
    p.stdin.write(`${line}\n`);
  }

  private done(error: string | null): void {
    clearTimeout(this.timer);
    const batch = this.inflight;
    this.inflight = null;
    if (batch) {
      if (error === null) {
        this.stats.lines++;
        for (const b of batch) {
          this.stats.elements += b.entries.length;
          b.resolve();
        }
      } else {
        this.stats.failures++;
        for (const b of batch) b.reject(new Error(error));
      }
    }
    this.flush();
  }

  /** A failed line, or nft gone: fail what is in flight and start a fresh nft for the next line (no stale output). */
  private failed(why: string): void {
    this.opts.onProblem?.(why);
    this.stop();
    this.stats.restarts++;
    this.done(why);
  }

  private failInflight(e: Error): void {
    const batch = this.inflight;
    this.inflight = null;
    for (const b of batch ?? []) b.reject(e);
  }
}
