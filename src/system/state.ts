import { link, lstat, readdir, rmdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { AUDIT_LOCK, HISTORY_FILE } from '../audit/history.js';
import { FileError, PreconditionError } from '../errors.js';
import { STATE_NAME } from '../state-file.js';
import { TMP_INFIX } from './files.js';

/** The state dir's files on disk: which are egressfw's, setting a damaged state aside, removing them (uninstall). */

const re = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/**
 * Every file egressfw writes in the state dir, and only those: `uninstall`
 * removes exactly what matches here and leaves everything else. A new file
 * egressfw keeps in the state dir must be added here.
 */
export const STATE_FILES: readonly { what: string; name: RegExp }[] = [
  { what: 'the state', name: new RegExp(`^${re(STATE_NAME)}$`) },
  { what: 'a damaged state file set aside', name: new RegExp(`^${re(STATE_NAME)}\\.damaged-\\d{8}T\\d{6}Z(-\\d+)?$`) },
  { what: 'an unfinished write', name: new RegExp(`^\\.${re(STATE_NAME)}${re(TMP_INFIX)}[0-9a-f]{16}$`) },
  { what: 'the audit history', name: new RegExp(`^${re(HISTORY_FILE)}$`) },
  { what: 'an unfinished write of the audit history', name: new RegExp(`^\\.${re(HISTORY_FILE)}${re(TMP_INFIX)}[0-9a-f]{16}$`) },
  { what: 'the audit history lock', name: new RegExp(`^${re(AUDIT_LOCK)}$`) },
  { what: 'how egressfw is scheduled (daemon or cron)', name: /^scheduler$/ },
  { what: 'an unfinished write of the scheduler marker', name: new RegExp(`^\\.scheduler${re(TMP_INFIX)}[0-9a-f]{16}$`) },
];
export const isStateFile = (name: string) => STATE_FILES.some((f) => f.name.test(name));

/**
 * Move a damaged state file to state.json.damaged-<UTC time> (never over an
 * existing one: link() fails instead of replacing), so the next save does
 * not destroy what it held. Returns the new path.
 */
export async function setAsideDamaged(file: string, now: number): Promise<string> {
  const stamp = new Date(now * 1000).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  for (let i = 0; i < 100; i++) {
    const aside = `${file}.damaged-${stamp}${i ? `-${i}` : ''}`;
    try {
      await link(file, aside);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw new FileError('write', aside, e);
    }
    await unlink(file).catch((e: unknown) => {
      throw new FileError('write', file, e);
    });
    return aside;
  }
  throw new PreconditionError(`cannot set ${file} aside: 100 damaged copies of it are there already; remove the old ${path.basename(file)}.damaged-* files`);
}

export interface StateDirCleanup {
  /** paths of egressfw's files that were (or, dry run, would be) removed */
  removed: string[];
  /** names of other entries, left in place */
  left: string[];
  /** the directory itself was (would be) removed */
  dirRemoved: boolean;
}

/**
 * Remove egressfw's own files from the state dir (STATE_FILES; regular files
 * only, symlinks themselves, never what they point to), then the directory if
 * that left it empty. Anything else in it stays, and is reported.
 */
export async function removeStateFiles(dir: string, dryRun: boolean): Promise<StateDirCleanup> {
  let names: string[];
  try {
    const st = await lstat(dir);
    if (!st.isDirectory()) return { removed: [], left: [], dirRemoved: false };
    names = (await readdir(dir)).sort();
  } catch {
    return { removed: [], left: [], dirRemoved: false };
  }
  const removed: string[] = [];
  const left: string[] = [];
  for (const name of names) {
    const file = path.join(dir, name);
    const st = await lstat(file).catch(() => null);
    if (!st) continue;
    if (!isStateFile(name) || !(st.isFile() || st.isSymbolicLink())) {
      left.push(name);
      continue;
    }
    removed.push(file);
    if (!dryRun) await unlink(file);
  }
  // An empty dir goes only if egressfw had files in it or it is egressfw's own: `--state-dir /var/lib/foo` is not ours.
  const ours = removed.length > 0 || path.basename(path.resolve(dir)) === 'egressfw';
  let dirRemoved = false;
  if (left.length === 0 && ours) {
    if (!dryRun) await rmdir(dir);
    dirRemoved = true;
  }
  return { removed, left, dirRemoved };
}
