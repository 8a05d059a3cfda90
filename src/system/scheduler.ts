/**
 * The scheduler marker, <state dir>/scheduler: how egressfw runs on this host
 * ("daemon" or "cron"), so that plan, sync by hand, cron and the daemon agree
 * on whether an unset dns.gate.enabled is on (withScheduler in
 * src/config/load.ts). Written by `egressfw daemon` when it starts and by
 * `install --systemd` / `--cron`; kept when the daemon stops (a restart must
 * not flip the rules); removed by `install --remove` and `uninstall`.
 */
import path from 'node:path';
import type { Scheduler } from '../config/load.js';

export const SCHEDULER_NAME = 'scheduler';
export const schedulerFile = (stateDir: string) => path.join(stateDir, SCHEDULER_NAME);

/** Pure: the marker's text. */
export const schedulerText = (s: Exclude<Scheduler, null>) => `${s}\n`;

/** Pure: the scheduler a marker's text names; anything else (missing, damaged) is none. */
export function parseScheduler(text: string | null): Scheduler {
  const t = text?.trim();
  return t === 'daemon' || t === 'cron' ? t : null;
}

export async function readScheduler(stateDir: string, readText: (file: string) => Promise<string | null>): Promise<Scheduler> {
  return parseScheduler(await readText(schedulerFile(stateDir)).catch(() => null));
}
