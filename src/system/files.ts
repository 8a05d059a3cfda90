import { randomBytes } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { link, lstat, mkdir, mkdtemp, open, readdir, realpath, rename, rm, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { FileError, isErrno, PreconditionError } from '../errors.js';
import { NotReadable, readHead, readRegularBytes, readRegularFile, type ReadOptions } from './read-file.js';

const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = constants;
/** Exclusive create that never follows a link at the name: a planted symlink makes it fail (EEXIST/ELOOP). */
const CREATE_NEW = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW;
/** Reads are capped: no config, state or ufw file is anywhere near this. */
export const MAX_READ_BYTES = 64 * 1024 * 1024;
/** Temp files: hidden, random, next to the target (so rename is atomic). Listed in STATE_FILES too. */
export const TMP_INFIX = '.egressfw-tmp-';

const isRoot = () => process.geteuid?.() === 0;

function kind(st: Stats): string {
  if (st.isSymbolicLink()) return 'a symlink';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

async function lstatOrNull(p: string): Promise<Stats | null> {
  try {
    return await lstat(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/**
 * File text, or null when it does not exist (a file that exists but cannot be
 * read, permission denied say, is a FileError, never "missing"). Never hangs:
 * read through the one reader (src/system/read-file.ts), so a FIFO, device or
 * directory in its place is refused with a message instead of read.
 */
export async function readText(file: string, maxBytes = MAX_READ_BYTES, opts: ReadOptions = {}): Promise<string | null> {
  try {
    return await readRegularFile(file, maxBytes, opts);
  } catch (e) {
    if (e instanceof NotReadable) {
      throw new PreconditionError(
        e.message.startsWith('the file is larger')
          ? `${file}: ${e.message}, more than egressfw reads; it is not a file egressfw wrote: move it away`
          : `${file} is ${e.message.replace(/^not a regular file \((.*)\)$/, '$1')}, not a regular file; egressfw reads only regular files there: remove or replace it`,
      );
    }
    return missingOrThrow(file, e);
  }
}

/** Missing (null) is a first run; anything else (permission denied, I/O) is the user's to fix, never "missing". */
function missingOrThrow(file: string, e: unknown): null {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return null;
  throw new FileError('read', file, e);
}

/** The directory must be a real one, not a symlink (created when missing and `create`). */
async function realDirectory(dir: string, create: boolean): Promise<boolean> {
  let st = await lstatOrNull(dir);
  if (!st) {
    if (!create) return false;
    await mkdir(dir, { recursive: true, mode: 0o755 });
    st = await lstat(dir);
  }
  if (st.isSymbolicLink()) {
    throw new PreconditionError(`${dir} is a symlink; egressfw (often run as root) does not write through symlinked directories: use the real path, or replace the link with a directory`);
  }
  if (!st.isDirectory()) throw new PreconditionError(`${dir} is ${kind(st)}, not a directory`);
  return true;
}

/** An existing target must be a regular file: a symlink there is refused, never replaced or followed. */
async function regularOrMissing(file: string): Promise<Stats | null> {
  const st = await lstatOrNull(file);
  if (st && !st.isFile()) throw new PreconditionError(`${file} is ${kind(st)}; egressfw only replaces regular files: remove it and retry`);
  return st;
}

async function syncDir(dir: string): Promise<void> {
  const d = await open(dir, O_RDONLY);
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

/** A new file with `text` at a random hidden name in `dir`: exclusive create, mode (and owner) set on the open file, fsync. */
async function writeTemp(dir: string, base: string, text: string | Buffer, mode: number, owner?: { uid: number; gid: number }): Promise<string> {
  const tmp = path.join(dir, `.${base}${TMP_INFIX}${randomBytes(8).toString('hex')}`);
  const fh = await open(tmp, CREATE_NEW, 0o600);
  try {
    await fh.writeFile(text);
    if (owner && isRoot() && (owner.uid !== 0 || owner.gid !== 0)) await fh.chown(owner.uid, owner.gid);
    await fh.chmod(mode);
    await fh.sync();
  } catch (e) {
    await fh.close();
    await unlink(tmp).catch(() => {});
    throw e;
  }
  await fh.close();
  return tmp;
}

/**
 * Write a file so that readers see the old text or the new one, never a
 * mix: temp file in the same directory, fsync, rename. Keeps the old mode
 * and owner. As root in directories others may write to, nothing planted
 * ahead is followed: the temp name is random and created exclusively without
 * following links, its mode is set through the open handle, and a symlinked
 * directory or target is refused.
 */
export async function writeFileAtomic(file: string, text: string, mode = 0o644): Promise<void> {
  try {
    await writeAtomic(file, text, mode);
  } catch (e) {
    throw isErrno(e) ? new FileError('write', file, e) : e;
  }
}

async function writeAtomic(file: string, text: string, mode: number): Promise<void> {
  const dir = path.dirname(file);
  await realDirectory(dir, true);
  const old = await regularOrMissing(file);
  const tmp = await writeTemp(dir, path.basename(file), text, old ? old.mode & 0o7777 : mode, old ?? undefined);
  try {
    await rename(tmp, file); // replaces the name itself, never what a link there would point to
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
  await syncDir(dir);
}

/** Copy `file` to `backup` unless a backup already exists (the first one is the pristine original). */
export async function backupOnce(file: string, backup: string): Promise<void> {
  const src = await regularOrMissing(file);
  if (!src) return;
  if (await lstatOrNull(backup)) return;
  const data = await readRegularBytes(file, MAX_READ_BYTES, { follow: false }).catch((e: unknown) => {
    throw e instanceof NotReadable ? new PreconditionError(`${file}: ${e.message}; egressfw backs up only regular files: remove or replace it`) : e;
  });
  const dir = path.dirname(backup);
  await realDirectory(dir, false);
  const tmp = await writeTemp(dir, path.basename(backup), data, src.mode & 0o7777, src);
  try {
    // link() never replaces: if a backup (or anything) appeared at the name meanwhile, the first one stays
    await link(tmp, backup).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e;
    });
  } finally {
    await unlink(tmp).catch(() => {});
  }
}

/** Delete a regular file (or a symlink itself, never its target); missing is fine. */
export async function removeFile(file: string): Promise<void> {
  const st = await lstatOrNull(file);
  if (!st) return;
  if (!st.isFile() && !st.isSymbolicLink()) throw new PreconditionError(`${file} is ${kind(st)}; egressfw removes only files`);
  await unlink(file).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
}

/**
 * File access confined to `root` (`proxy --out`): paths under it are resolved
 * from its real path one component at a time, and a symlinked directory or
 * target below it is refused, so reads, writes and deletes never leave it.
 * `root` itself may be a symlink: the user chose it. Paths outside `root`
 * (the compose file, resolv.conf) are only read.
 */
export function confinedFiles(root: string) {
  const base = path.resolve(root);
  const under = (file: string): string[] | null => {
    const rel = path.relative(base, path.resolve(file));
    if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) return null;
    return rel.split(path.sep);
  };
  /** real path of `parts` below the real root; null when a directory on the way does not exist (and !create) */
  const resolve = async (parts: string[], create: boolean): Promise<string | null> => {
    if (!(await lstatOrNull(base))) {
      if (!create) return null;
      await mkdir(base, { recursive: true, mode: 0o755 });
    }
    let at = await realpath(base);
    for (const part of parts.slice(0, -1)) {
      at = path.join(at, part);
      if (!(await realDirectory(at, create))) return null;
    }
    return path.join(at, parts.at(-1)!);
  };
  const inside = (file: string): string[] => {
    const parts = under(file);
    if (!parts) throw new Error(`internal: ${file} is outside ${base}`);
    return parts;
  };
  return {
    readText: async (file: string): Promise<string | null> => {
      const parts = under(file);
      if (!parts) return readText(file);
      const real = await resolve(parts, false);
      if (!real || !(await regularOrMissing(real))) return null;
      return readText(real);
    },
    writeText: async (file: string, text: string): Promise<void> => {
      const real = (await resolve(inside(file), true))!;
      await regularOrMissing(real);
      await writeFileAtomic(real, text);
    },
    removeFile: async (file: string): Promise<void> => {
      const real = await resolve(inside(file), false);
      if (real && (await regularOrMissing(real))) await unlink(real);
    },
    /** file names in a directory under root ([] when it does not exist) */
    listDir: async (dir: string): Promise<string[]> => {
      const real = await resolve([...inside(dir), ''], false); // every component a real directory
      return real ? readdir(real) : [];
    },
  };
}

/** The first line of a file (at most 256 bytes), or null when it cannot be read. */
export async function firstLine(file: string): Promise<string | null> {
  return readHead(file, 256).then((t) => t.split('\n')[0]!, () => null);
}

/**
 * Run `fn` with a private (0600, in a fresh 0700 dir) temp file holding `text`, removed after.
 * For tools that read a batch only from a file they open by name (`nft -j -f`, `conntrack -R`):
 * their `-` means /dev/stdin, which a socket-backed stdin cannot be opened as.
 */
export async function withPrivateFile<T>(name: string, text: string, fn: (file: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'egressfw-'));
  try {
    const file = path.join(dir, name);
    await writeFile(file, text, { flag: 'wx', mode: 0o600 });
    return await fn(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
