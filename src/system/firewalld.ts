/**
 * Is firewalld running on this host? Read from /proc, so it needs no D-Bus
 * (`firewall-cmd --state` does) and spawns nothing. firewalld owns the host
 * firewall and its reloads drop rules other programs added, so egressfw must
 * know before it writes anything.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { PreconditionError } from '../errors.js';
import { readRegularFile } from './read-file.js';

/** /proc/PID/cmdline and comm are short; a longer one is not firewalld's */
const MAX_PROC_READ = 64 * 1024;

/** The slice of /proc this check reads; tests inject a fake. */
export interface ProcFs {
  /** numeric entries of /proc */
  pids(): Promise<number[]>;
  /** file content, or null when it cannot be read (the process exited meanwhile) */
  read(file: string): Promise<string | null>;
  readlink(file: string): Promise<string | null>;
}

export const realProcFs: ProcFs = {
  async pids() {
    return (await fs.readdir('/proc')).filter((e) => /^\d+$/.test(e)).map(Number);
  },
  async read(file) {
    return readRegularFile(file, MAX_PROC_READ).catch(() => null);
  },
  async readlink(file) {
    try {
      return await fs.readlink(file);
    } catch {
      return null;
    }
  },
};

export interface FirewalldProcess {
  pid: number;
  argv: string[];
}

/** argv of a firewalld daemon: run directly (`/usr/sbin/firewalld --nofork`) or by its interpreter (`python3 -s /usr/sbin/firewalld`). */
function isFirewalld(argv: string[]): boolean {
  const base = (s: string | undefined) => (s ? path.basename(s) : '');
  if (base(argv[0]) === 'firewalld') return true;
  if (!/^python[0-9.]*$/.test(base(argv[0]))) return false;
  const script = argv.slice(1).find((a) => !a.startsWith('-'));
  return base(script) === 'firewalld';
}

/**
 * The first live firewalld process in our network namespace, or null. A firewalld
 * in another namespace (a container's) does not touch this host's firewall.
 */
export async function findFirewalld(proc: ProcFs = realProcFs): Promise<FirewalldProcess | null> {
  const myNet = await proc.readlink('/proc/self/ns/net');
  for (const pid of (await proc.pids()).sort((a, b) => a - b)) {
    // comm first: short, and rules out almost every process without reading its cmdline
    const comm = (await proc.read(`/proc/${pid}/comm`))?.trim();
    if (!comm || !(comm === 'firewalld' || /^python[0-9.]*$/.test(comm))) continue;
    const cmdline = await proc.read(`/proc/${pid}/cmdline`);
    if (!cmdline) continue; // exited, or a kernel thread
    const argv = cmdline.split('\0').filter((a, i, all) => a !== '' || i < all.length - 1);
    if (!isFirewalld(argv)) continue;
    const stat = await proc.read(`/proc/${pid}/stat`);
    const state = stat?.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (!stat || state === 'Z' || state === 'X') continue; // exited, not yet reaped
    const net = await proc.readlink(`/proc/${pid}/ns/net`);
    if (myNet && net && net !== myNet) continue;
    return { pid, argv };
  }
  return null;
}

/** What is wrong with a running firewalld and what to do about it. */
export function firewalldMessage(f: FirewalldProcess): string {
  return (
    `firewalld is running (pid ${f.pid}: ${f.argv.join(' ')}): egressfw does not support it yet ` +
    '(firewalld owns the host firewall, and its reloads remove rules other programs added). ' +
    'Stop and mask it (`systemctl disable --now firewalld && systemctl mask firewalld`) and use ufw, then retry.'
  );
}

/** The blocker for a running firewalld: what is wrong and what to do, nothing changed. */
export function firewalldError(f: FirewalldProcess): PreconditionError {
  return new PreconditionError(`${firewalldMessage(f)} Nothing was changed.`);
}
