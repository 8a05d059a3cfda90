/**
 * Follows `nft monitor tables` so the daemon learns at once that egressfw's table was deleted
 * (`flush ruleset`, as Debian's nftables.service runs on start and reload): the kernel reports it
 * as it happens, where a poll would have to run every few hundred ms to repair within 1 s.
 * Restarts the monitor when it exits (a missed event is still caught by the periodic drift check).
 */
import type { ChildProcess } from 'node:child_process';
import readline from 'node:readline';
import { tableDeleted } from '../plan/nft.js';
import { spawnTool, toolPath } from './exec.js';

export interface TableWatch {
  stop(): Promise<void>;
}

export async function watchTableDeletion(onDeleted: () => void, onEvent: (event: string, fields: Record<string, unknown>) => void): Promise<TableWatch> {
  const nft = toolPath('nft');
  let child: ChildProcess | null = null;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const start = () => {
    if (!nft || stopped) return;
    const c = spawnTool(['nft', 'monitor', 'tables'], { stdio: ['ignore', 'pipe', 'ignore'] });
    child = c;
    readline.createInterface({ input: c.stdout! }).on('line', (line) => {
      if (tableDeleted(line)) onDeleted();
    });
    c.on('error', (e) => onEvent('table-watch-error', { error: e.message }));
    c.on('exit', (code, signal) => {
      child = null;
      if (stopped) return;
      onEvent('table-watch-exited', { code, signal, restartInMs: 1000 });
      timer = setTimeout(start, 1000);
    });
  };
  if (!nft) onEvent('table-watch-error', { error: 'nft not installed: a deleted table is repaired at the next drift check' });
  start();
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      const c = child;
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      const exited = new Promise<void>((r) => c.once('exit', () => r()));
      c.kill('SIGTERM');
      await exited;
    },
  };
}
