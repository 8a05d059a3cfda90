/**
 * The one way egressfw opens a file to read it (config, state, audit history,
 * gate log, /proc, system files): non-blocking, so a FIFO or device in a
 * file's place is refused at once instead of waited on; checked with fstat on
 * the same descriptor, so nothing can be swapped in between; and, for files in
 * egressfw's own directories, without following a symlink at the name.
 */
import { constants, type Stats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';

/** The file exists but is not something to read as text: the reason, for a message. */
export class NotReadable extends Error {}

export interface ReadOptions {
  /**
   * Follow a symlink at the name (default true: /etc/resolv.conf and configs are often links).
   * false for files egressfw itself writes (the state dir): a link there was not put by egressfw.
   */
  follow?: boolean;
}

const KIND: [string, (s: Stats) => boolean][] = [
  ['a directory', (s) => s.isDirectory()],
  ['a FIFO', (s) => s.isFIFO()],
  ['a character device', (s) => s.isCharacterDevice()],
  ['a block device', (s) => s.isBlockDevice()],
  ['a socket', (s) => s.isSocket()],
];

/** Open for reading, a regular file only. Errno errors (ENOENT, EACCES) pass through; anything else is NotReadable. */
async function openRegular(file: string, { follow = true }: ReadOptions): Promise<{ fh: FileHandle; st: Stats }> {
  let fh;
  try {
    fh = await open(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY | (follow ? 0 : constants.O_NOFOLLOW));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // A UNIX socket cannot be opened at all.
    if (code === 'ENXIO') throw new NotReadable('not a regular file (a socket or device without a reader)');
    if (code === 'ELOOP' && !follow) throw new NotReadable('not a regular file (a symlink, which egressfw does not follow here)');
    throw e;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new NotReadable(`not a regular file (${KIND.find(([, is]) => is(st))?.[0] ?? 'a special file'})`);
    return { fh, st };
  } catch (e) {
    await fh.close();
    throw e;
  }
}

/** Read from `at` to EOF, at most `limit` bytes (+1, to notice more). Files in /proc report size 0: grow as needed. */
async function readUpTo(fh: FileHandle, at: number, sizeHint: number, limit: number): Promise<Buffer> {
  let buf = Buffer.alloc(Math.min(limit + 1, Math.max(sizeHint + 1, 4096)));
  let n = 0;
  for (;;) {
    if (n === buf.length) {
      if (buf.length > limit) break;
      const bigger = Buffer.alloc(Math.min(limit + 1, buf.length * 2));
      buf.copy(bigger, 0, 0, n);
      buf = bigger;
    }
    const { bytesRead } = await fh.read(buf, n, buf.length - n, at + n);
    if (bytesRead === 0) break;
    n += bytesRead;
  }
  return buf.subarray(0, n);
}

/**
 * Text of a regular file of at most maxBytes; never reads more than maxBytes + 1
 * bytes (the file may grow after fstat). Throws NotReadable for anything else;
 * errno errors (ENOENT, EACCES) pass through.
 */
export async function readRegularFile(file: string, maxBytes: number, opts: ReadOptions = {}): Promise<string> {
  return (await readRegularBytes(file, maxBytes, opts)).toString('utf8');
}

/** The same, the exact bytes (backups). */
export async function readRegularBytes(file: string, maxBytes: number, opts: ReadOptions = {}): Promise<Buffer> {
  const { fh, st } = await openRegular(file, opts);
  try {
    if (st.size > maxBytes) throw new NotReadable(tooLarge(st.size, maxBytes));
    const buf = await readUpTo(fh, 0, st.size, maxBytes);
    if (buf.length > maxBytes) throw new NotReadable(tooLarge(buf.length, maxBytes));
    return buf;
  } finally {
    await fh.close();
  }
}

/** The last `bytes` of a regular file (whole lines only), or null when it does not exist. */
export async function readTail(file: string, bytes: number, opts: ReadOptions = {}): Promise<string | null> {
  let opened;
  try {
    opened = await openRegular(file, opts);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  const { fh, st } = opened;
  try {
    const start = Math.max(0, st.size - bytes);
    const text = (await readUpTo(fh, start, st.size - start, bytes)).subarray(0, bytes).toString('utf8');
    return start > 0 ? text.slice(text.indexOf('\n') + 1) : text;
  } finally {
    await fh.close();
  }
}

/** The first `bytes` of a regular file. */
export async function readHead(file: string, bytes: number, opts: ReadOptions = {}): Promise<string> {
  const { fh } = await openRegular(file, opts);
  try {
    return (await readUpTo(fh, 0, bytes, bytes)).subarray(0, bytes).toString('utf8');
  } finally {
    await fh.close();
  }
}

export function tooLarge(size: number, maxBytes: number): string {
  return `the file is larger than ${maxBytes >= 1 << 20 ? `${maxBytes / (1 << 20)} MiB` : `${maxBytes} bytes`} (${thousands(size)} bytes)`;
}

/** 52428803 -> "52,428,803" (no Intl: the distribution's Node may lack full ICU) */
export const thousands = (n: number): string => String(n).replace(/\B(?=(\d{3})+$)/g, ',');
