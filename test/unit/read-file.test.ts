/**
 * Issue 21 item 7: every file egressfw reads goes through one reader (src/system/read-file.ts):
 * non-blocking (a FIFO never hangs a command), fstat-checked, no-follow in the state dir.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { collectAudit } from '../../src/system/audit-io.js';
import { readGateLogs } from '../../src/system/gate-log.js';
import { NotReadable, readHead, readRegularFile, readTail } from '../../src/system/read-file.js';
import { firstLine, readText } from '../../src/system/files.js';

const dir = mkdtempSync(path.join(tmpdir(), 'egressfw-read-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Resolves with what `p` gave, or 'HUNG' after 1.5 s; a blocked open is then released (a writer appears) so no thread stays stuck. */
async function withoutHanging<T>(fifo: string, p: Promise<T>): Promise<T | 'HUNG'> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([p, new Promise<'HUNG'>((resolve) => (timer = setTimeout(() => resolve('HUNG'), 1500)))]);
  clearTimeout(timer);
  if (r === 'HUNG') {
    closeSync(openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK));
    await p.catch(() => {});
  }
  return r;
}

describe('a FIFO named gate.log in the state dir', () => {
  const stateDir = path.join(dir, 'state');
  execFileSync('mkdir', ['-p', stateDir]);
  const fifo = path.join(stateDir, 'gate.log');
  execFileSync('mkfifo', [fifo]);
  writeFileSync(path.join(stateDir, 'gate.log.1'), '{"a":1}\n');

  it('status (readGateLogs) reads the other files and skips it at once', async () => {
    expect(await withoutHanging(fifo, readGateLogs(stateDir))).toEqual(['{"a":1}', '']);
  });

  it('report and suggest (collectAudit) go on without the gate names and say why', async () => {
    const r = await withoutHanging(
      fifo,
      collectAudit(stateDir, { exec: async () => ({ stdout: '', stderr: '', exitCode: 0 }), readText: async () => null, writeFileAtomic: async () => {}, listContainers: async () => [], acquireLock: async () => ({ release: () => {} }) as never, now: () => 1000, isRoot: false }),
    );
    expect(r).not.toBe('HUNG');
    expect((r as { notes: string[] }).notes.join('\n')).toMatch(/gate\.log not read \(not a regular file \(a FIFO\)\)/);
  });

  it('every reader refuses it without waiting', async () => {
    for (const read of [() => readRegularFile(fifo, 100), () => readTail(fifo, 100), () => readHead(fifo, 10)]) {
      const r = await withoutHanging(fifo, read().catch((e: Error) => e));
      expect(r).toBeInstanceOf(NotReadable);
    }
    expect(await withoutHanging(fifo, firstLine(fifo))).toBeNull();
    expect(await withoutHanging(fifo, readText(fifo).catch((e: Error) => e.message))).toMatch(/is a FIFO, not a regular file/);
  });
});

describe('the one reader', () => {
  it('does not follow a symlink where egressfw wrote the file itself; follows one elsewhere', async () => {
    const target = path.join(dir, 'target');
    writeFileSync(target, 'secret\n');
    const link = path.join(dir, 'link');
    symlinkSync(target, link);
    await expect(readTail(link, 100, { follow: false })).rejects.toThrow(/a symlink/);
    await expect(readRegularFile(link, 100, { follow: false })).rejects.toBeInstanceOf(NotReadable);
    expect(await readRegularFile(link, 100)).toBe('secret\n');
  });

  it('reads /proc files (size 0) to the end, and never more than the limit + 1', async () => {
    expect(await readRegularFile('/proc/self/status', 1 << 20)).toMatch(/^Name:/);
    const big = path.join(dir, 'big');
    writeFileSync(big, 'x'.repeat(10_000));
    await expect(readRegularFile(big, 9_999)).rejects.toThrow(/larger than 9999 bytes/);
    expect(await readTail(big, 5)).toBe('xxxxx');
  });
});
