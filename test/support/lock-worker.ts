// A separate process for the lock race test: on each message, try the lock once and hold it briefly.
import { unlinkSync, writeFileSync } from 'node:fs';
import { acquireLock } from '../../src/system/lock.js';
import { PreconditionError } from '../../src/errors.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

process.on('message', (m: { trial: number; file: string; inside: string; holdMs: number }) => {
  void (async () => {
    let got = false;
    let overlap = false;
    let error = '';
    try {
      const release = await acquireLock(m.file);
      got = true;
      try {
        // exclusive create: fails if the other process is inside at the same time
        writeFileSync(m.inside, String(process.pid), { flag: 'wx' });
      } catch {
        overlap = true;
      }
      await sleep(m.holdMs);
      if (!overlap) unlinkSync(m.inside);
      await release();
    } catch (e) {
      if (!(e instanceof PreconditionError)) error = String((e as Error).stack ?? e);
      else if (!/another egressfw sync is running/.test(e.message)) error = e.message;
    }
    process.send!({ trial: m.trial, got, overlap, error });
  })();
});
process.send!('ready');
