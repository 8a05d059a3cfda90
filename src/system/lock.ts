import { open, readFile, unlink } from 'node:fs/promises';
import { PreconditionError } from '../errors.js';

export const DEFAULT_LOCK_FILE = '/run/egressfw.lock';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * One sync at a time (cron, daemon and a person at the keyboard): an
 * exclusive-create lock file holding our pid. A lock left by a dead process
 * (crash, kill -9) is taken over.
 */
export async function acquireLock(file = DEFAULT_LOCK_FILE): Promise<() => Promise<void>> {
  for (let tries = 0; tries < 2; tries++) {
    try {
      const fh = await open(file, 'wx', 0o644);
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return async () => {
        await unlink(file).catch(() => {});
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new PreconditionError(`cannot create the lock ${file}: ${(e as Error).message}`);
      const pid = Number((await readFile(file, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(pid) && pid > 0 && alive(pid)) {
        throw new PreconditionError(`another egressfw sync is running (pid ${pid}, lock ${file}); wait for it, it finishes on its own`);
      }
      await unlink(file).catch(() => {}); // stale: its owner is gone
    }
  }
  throw new PreconditionError(`could not take the lock ${file}; remove it if no egressfw is running`);
}
