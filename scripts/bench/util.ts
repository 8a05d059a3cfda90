// Small helpers shared by the benchmark sections: process runs, statistics, a seeded PRNG.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { execa } from 'execa';
import { procAlive as alive, waitForLine, type Lab } from '../../test/lab/lab.js';

export const ENV_PATH = [...new Set([...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'])].join(':');

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
  ms: number;
}

/** Run argv (never a shell string), never throw on a non-zero exit; `ms` is the wall time seen from here. */
export async function run(argv: string[], opts: { input?: string; timeoutMs?: number; env?: Record<string, string> } = {}): Promise<RunResult> {
  const [file, ...args] = argv;
  if (!file) throw new Error('run: empty argv');
  const t0 = process.hrtime.bigint();
  const r = await execa(file, args, {
    reject: false,
    env: { ...opts.env, PATH: ENV_PATH },
    ...(opts.input !== undefined ? { input: opts.input } : { stdin: 'ignore' as const }),
    timeout: opts.timeoutMs ?? 120_000,
  });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  let exitCode = r.exitCode ?? -1;
  if (r.timedOut) exitCode = 124;
  else if (r.exitCode === undefined && r.signal) exitCode = 128 + (os.constants.signals[r.signal] ?? 0);
  return { stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? ''), exitCode, ms };
}

/** Like run, but throws with the output when the exit code is not 0. */
export async function must(argv: string[], opts: Parameters<typeof run>[1] = {}): Promise<RunResult> {
  const r = await run(argv, opts);
  if (r.exitCode !== 0) throw new Error(`\`${argv.join(' ').slice(0, 200)}\` exited ${r.exitCode}: ${(r.stderr.trim() || r.stdout.trim()).slice(0, 2000)}`);
  return r;
}

/** A long-running process (its own session, output to a log); the caller kills it by pid. */
export function spawnLogged(argv: string[], log: string, stdoutPipe = false): ChildProcess {
  const fd = fs.openSync(log, 'a');
  const [file, ...args] = argv;
  const child = spawn(file!, args, { detached: true, stdio: ['ignore', stdoutPipe ? 'pipe' : fd, fd], env: { ...process.env, PATH: ENV_PATH } });
  fs.closeSync(fd);
  child.on('error', () => {});
  child.unref();
  return child;
}

export { alive, waitForLine };

/** Kill one process we started, by pid, and wait (bounded) until it is gone. */
export async function killPid(pid: number | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!pid) return;
  try {
    process.kill(pid, signal);
  } catch {
    return;
  }
  for (let i = 0; i < 100 && alive(pid); i++) await sleep(20);
  if (alive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));


export function median(xs: number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function min(xs: number[]): number {
  return xs.length ? Math.min(...xs) : NaN;
}
export function max(xs: number[]): number {
  return xs.length ? Math.max(...xs) : NaN;
}

/** mulberry32: a small seeded PRNG, so the same seed gives the same allowlist on every machine. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Number formatting for the tables. */
export function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return '–';
  if (ms >= 100_000) return `${(ms / 1000).toFixed(0)} s`;
  if (ms >= 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 10) return `${ms.toFixed(0)} ms`;
  return `${ms.toFixed(1)} ms`;
}
export function fmtNum(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return '–';
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}
export function fmtRatio(r: number): string {
  if (!Number.isFinite(r)) return '–';
  if (r >= 100) return `${r.toFixed(0)}x`;
  if (r >= 10) return `${r.toFixed(1)}x`;
  return `${r.toFixed(2)}x`;
}
export function fmtPct(r: number): string {
  return Number.isFinite(r) ? `${(r * 100).toFixed(0)} %` : '–';
}

/** Log a progress line to stderr (the table goes to stdout). */
export function progress(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

/** A markdown table (also readable as plain text). */
export function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(w[i]!)).join(' | ')} |`;
  return [line(head), `|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

/** The client ("container") side of the packet benches, behind the lab host's docker0. */
export const CLIENT = { v4: '198.51.100.66/26', gw4: '198.51.100.65', v6: '2001:db8:1::2/64', gw6: '2001:db8:1::1' };

/** A `sleep` in a network namespace of its own, started inside the lab host's mount namespace (so lab.stop() sweeps it). */
export function spawnClientHolder(lab: Lab, log: string): ChildProcess {
  return spawnLogged(lab.hostArgv(['unshare', '--net', '--', 'sh', '-c', 'echo "ready $$"; exec sleep infinity']), log, true);
}

/**
 * Wire the holder's namespace to the lab host as a container would be: a veth made inside the
 * host (the machine never sees it) named docker0 there, addresses, default routes, forwarding on.
 * Returns a runner for commands inside the client namespace.
 */
export async function wireClient(lab: Lab, holder: ChildProcess): Promise<(argv: string[], o?: { timeoutMs?: number }) => Promise<RunResult>> {
  const m = await waitForLine(holder, /^ready (\d+)$/m, 10_000, 'client namespace holder');
  const cpid = Number(m[1]);
  if (cpid !== holder.pid) throw new Error(`client holder pid mismatch (${cpid} vs ${holder.pid})`);
  if (fs.readlinkSync(`/proc/${cpid}/ns/net`) === fs.readlinkSync('/proc/self/ns/net')) throw new Error('client holder is not in its own network namespace');
  const client = (argv: string[], o: { timeoutMs?: number } = {}) => run(['nsenter', '-t', String(cpid), '-n', '-m', '--', ...argv], o);
  await must(lab.hostArgv(['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']));
  await must(lab.hostArgv(['ip', '-batch', '-']), {
    input: [`link add docker0 type veth peer name eth0 netns ${cpid}`, `addr add ${CLIENT.gw4}/26 dev docker0`, `addr add ${CLIENT.gw6}/64 dev docker0 nodad`, 'link set docker0 up', ''].join('\n'),
  });
  const c = await client(['sh', '-c', [
    'set -e',
    'sysctl -q -w net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 net.ipv4.ip_local_port_range="1024 65000"',
    'ip link set lo up',
    `ip addr add ${CLIENT.v4} dev eth0`,
    `ip addr add ${CLIENT.v6} dev eth0 nodad`,
    'ip link set eth0 up',
    `ip route add default via ${CLIENT.gw4}`,
    `ip -6 route add default via ${CLIENT.gw6}`,
  ].join('\n')]);
  if (c.exitCode !== 0) throw new Error(`client setup: ${c.stderr}`);
  return client;
}
