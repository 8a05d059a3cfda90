import { closeSync, constants, fstatSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { PreconditionError } from '../errors.js';
import { spawnTool, toolPath } from './exec.js';

export const DEFAULT_LOCK_FILE = '/run/egressfw.lock';

/** Take flock(2) on the open file `fd` without blocking: util-linux `flock -n FD` run on our descriptor. */
function flockOn(fd: number): Promise<'locked' | 'busy' | string> {
  return new Promise((resolve) => {
    // The child gets our descriptor as its fd 3 and locks the open file it refers to. flock(2) locks
    // belong to that open file, not to the process: the lock stays after the child exits, as long as
    // we keep `fd` open, and the kernel drops it when we close it or die (even by kill -9).
    const child = spawnTool(['flock', '--nonblock', '--exclusive', '--conflict-exit-code', '75', '3'], { stdio: ['ignore', 'ignore', 'pipe', fd] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (e) => resolve(e.message));
    child.on('close', (code) => resolve(code === 0 ? 'locked' : code === 75 ? 'busy' : `flock exited ${code}: ${stderr.trim()}`));
  });
}

/**
 * One sync at a time (cron, daemon and a person at the keyboard): a kernel
 * file lock (flock(2)) on `file`, which also holds the owner's pid for
 * messages. Race-free, and released by the kernel when the owner exits or
 * crashes, so there is no stale lock to detect or take over. Node has no
 * flock(): util-linux's `flock` (Essential on Debian/Ubuntu) takes it on our
 * descriptor, which keeps it. The file is never unlinked: a process that
 * opened the old inode would otherwise lock a file nobody else sees.
 */
export async function acquireLock(file = DEFAULT_LOCK_FILE): Promise<() => Promise<void>> {
  if (!toolPath('flock')) throw new PreconditionError('`flock` (util-linux) is not installed; it provides the lock that keeps syncs from running at once: `apt-get install util-linux`');
  let fd: number;
  try {
    // no O_TRUNC: the pid in it belongs to the holder until we have the lock
    fd = openSync(file, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK, 0o644);
  } catch (e) {
    throw new PreconditionError(`cannot open the lock ${file}: ${(e as Error).message}`);
  }
  try {
    if (!fstatSync(fd).isFile()) throw new PreconditionError(`the lock ${file} is not a regular file; remove it`);
    const got = await flockOn(fd);
    if (got === 'busy') {
      const pid = readFileSync(fd, 'utf8').trim();
      throw new PreconditionError(`another egressfw sync is running (${/^[0-9]+$/.test(pid) ? `pid ${pid}, ` : ''}lock ${file}); wait for it, it finishes on its own`);
    }
    if (got !== 'locked') throw new PreconditionError(`could not take the lock ${file}: ${got}`);
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`, 0);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  let held = true;
  return async () => {
    if (!held) return;
    held = false;
    try {
      ftruncateSync(fd, 0);
    } finally {
      closeSync(fd); // releases the lock
    }
  };
}
