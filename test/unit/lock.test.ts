import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquireLock } from '../../src/system/lock.js';

const here = path.dirname(new URL(import.meta.url).pathname);
const worker = path.resolve(here, '../support/lock-worker.ts');
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'efw-lock-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Reply = { trial: number; got: boolean; overlap: boolean; error: string };

function start(): Promise<ChildProcess> {
  const child = fork(worker, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    child.once('message', (m) => (m === 'ready' ? resolve(child) : reject(new Error(String(m)))));
    child.once('error', reject);
  });
}

function ask(child: ChildProcess, msg: object): Promise<Reply> {
  return new Promise((resolve) => {
    child.once('message', (m) => resolve(m as Reply));
    child.send(msg);
  });
}

describe('lock: one sync at a time', () => {
  it('two processes racing for it, 50 trials: exactly one gets it each time, never both at once', async () => {
    const [a, b] = await Promise.all([start(), start()]);
    try {
      const file = path.join(dir, 'race.lock');
      const inside = path.join(dir, 'inside');
      const results: Reply[][] = [];
      for (let trial = 0; trial < 50; trial++) {
        const msg = { trial, file, inside, holdMs: 150 };
        results.push(await Promise.all([ask(a!, msg), ask(b!, msg)]));
      }
      const errors = results.flat().filter((r) => r.error);
      expect(errors).toEqual([]);
      const both = results.filter((r) => r[0]!.got && r[1]!.got).length;
      const overlaps = results.filter((r) => r[0]!.overlap || r[1]!.overlap).length;
      const none = results.filter((r) => !r[0]!.got && !r[1]!.got).length;
      expect({ both, overlaps, none }).toEqual({ both: 0, overlaps: 0, none: 0 });
    } finally {
      a!.kill();
      b!.kill();
    }
  }, 60_000);

  it('a lock left by a process that died (kill -9) does not block the next one', async () => {
    const file = path.join(dir, 'dead.lock');
    const child = await start();
    const held = ask(child, { trial: 0, file, inside: path.join(dir, 'inside-dead'), holdMs: 60_000 });
    await new Promise((r) => setTimeout(r, 500)); // it holds the lock now
    await expect(acquireLock(file)).rejects.toThrow(/another egressfw sync is running \(pid \d+/);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    void held;
    const release = await acquireLock(file);
    expect(readFileSync(file, 'utf8').trim()).toBe(String(process.pid));
    await release();
  });

  it('a stale pid file from an older egressfw (pid of a dead process) is no obstacle', async () => {
    const file = path.join(dir, 'old.lock');
    writeFileSync(file, '999999999\n');
    const release = await acquireLock(file);
    await release();
    expect(existsSync(file)).toBe(true); // the file stays: unlinking a flock file lets a third process lock another inode
  });
});
