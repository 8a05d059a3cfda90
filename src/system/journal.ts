import { fstatSync } from 'node:fs';

/**
 * Whether this fd (1: stdout, 2: stderr) is connected to systemd's journal:
 * systemd sets JOURNAL_STREAM to that stream's "device:inode"
 * (systemd.exec(5)); matching it, not only its presence, keeps a child whose
 * output was redirected elsewhere from printing `<N>` prefixes.
 */
export function journalStream(fd: 1 | 2, env: NodeJS.ProcessEnv = process.env): boolean {
  const m = /^([0-9]+):([0-9]+)$/.exec(env.JOURNAL_STREAM ?? '');
  if (!m) return false;
  try {
    const st = fstatSync(fd, { bigint: true });
    return st.dev === BigInt(m[1]!) && st.ino === BigInt(m[2]!);
  } catch {
    return false;
  }
}
