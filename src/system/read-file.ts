import { constants } from 'node:fs';
import { open } from 'node:fs/promises';

/** The file exists but is not something to read as text: the reason, for a message. */
export class NotReadable extends Error {}

const KIND: [string, (s: import('node:fs').Stats) => boolean][] = [
  ['a directory', (s) => s.isDirectory()],
  ['a FIFO', (s) => s.isFIFO()],
  ['a character device', (s) => s.isCharacterDevice()],
  ['a block device', (s) => s.isBlockDevice()],
  ['a socket', (s) => s.isSocket()],
];

/**
 * Text of a regular file of at most maxBytes. Never blocks on a FIFO (opened
 * non-blocking, then checked with fstat on the same descriptor, so it cannot be
 * swapped in between) and never reads more than maxBytes + 1 bytes. Throws
 * NotReadable for anything else; errno errors (ENOENT, EACCES) pass through.
 */
export async function readRegularFile(file: string, maxBytes: number): Promise<string> {
  let fh;
  try {
    fh = await open(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    // A UNIX socket cannot be opened at all.
    if ((e as NodeJS.ErrnoException).code === 'ENXIO') throw new NotReadable('not a regular file (a socket or device without a reader)');
    throw e;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new NotReadable(`not a regular file (${KIND.find(([, is]) => is(st))?.[0] ?? 'a special file'})`);
    if (st.size > maxBytes) throw new NotReadable(tooLarge(st.size, maxBytes));
    // The file may grow after fstat: read up to one byte more than allowed, to notice.
    const buf = Buffer.alloc(maxBytes + 1);
    let n = 0;
    while (n < buf.length) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    if (n > maxBytes) throw new NotReadable(tooLarge(n, maxBytes));
    return buf.subarray(0, n).toString('utf8');
  } finally {
    await fh.close();
  }
}

export function tooLarge(size: number, maxBytes: number): string {
  return `the file is larger than ${maxBytes >= 1 << 20 ? `${maxBytes / (1 << 20)} MiB` : `${maxBytes} bytes`} (${thousands(size)} bytes)`;
}

/** 52428803 -> "52,428,803" (no Intl: the distribution's Node may lack full ICU) */
export const thousands = (n: number): string => String(n).replace(/\B(?=(\d{3})+$)/g, ',');
