import { chmod, copyFile, mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';

/** File text, or null when it does not exist or cannot be read. */
export async function readText(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch {
    return null;
  }
}

/**
 * Write a file so that readers see the old text or the new one, never a
 * mix: temp file in the same directory, fsync, rename. Keeps the old mode.
 */
export async function writeFileAtomic(file: string, text: string, mode = 0o644): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const keep = await stat(file).then((s) => s.mode & 0o7777, () => mode);
  const tmp = `${file}.egressfw-tmp-${process.pid}`;
  const fh = await open(tmp, 'w', keep);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await chmod(tmp, keep);
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
}

/** Copy `file` to `backup` unless a backup already exists (the first one is the pristine original). */
export async function backupOnce(file: string, backup: string): Promise<void> {
  try {
    await stat(backup);
  } catch {
    await copyFile(file, backup);
  }
}

/** The first line of a file (at most 256 bytes), or null when it cannot be read. */
export async function firstLine(file: string): Promise<string | null> {
  try {
    const fh = await open(file, 'r');
    try {
      const buf = Buffer.alloc(256);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      return buf.subarray(0, bytesRead).toString('utf8').split('\n')[0]!;
    } finally {
      await fh.close();
    }
  } catch {
    return null;
  }
}
