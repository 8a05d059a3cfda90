/**
 * <state dir>/gate.log: the gate's query lines, appended in batches and
 * rotated by size (gate.log -> gate.log.1 -> ... -> gate.log.N, the oldest
 * dropped), so a busy or attacked host never fills its disk.
 */
import { mkdir, open, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { GATE_LOG } from '../gate/log.js';
import { readTail } from './read-file.js';

export class RotatingLog {
  private buf: string[] = [];
  private bytes = -1;
  /** kept open between batches (an open + close per batch showed in profiles) */
  private fh: FileHandle | null = null;
  private writing: Promise<void> | null = null;

  constructor(
    readonly file: string,
    private readonly maxBytes: number,
    private readonly keep: number,
    private readonly onError: (e: Error) => void = () => {},
  ) {}

  /**
   * Written at once when no write is in flight; lines that come meanwhile go
   * together in the next one. Held text stays short-lived: text kept for a
   * timer outlives the young generation and costs a full GC later (profiled).
   */
  write(line: string): void {
    this.buf.push(line);
    if (!this.writing) void this.flush();
  }

  /** Write what is buffered (also on shutdown). */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
    if (!this.buf.length) return;
    const text = `${this.buf.join('\n')}\n`;
    this.buf = [];
    this.writing = this.append(text).catch(this.onError).finally(() => {
      this.writing = null;
      if (this.buf.length) void this.flush();
    });
    await this.writing;
  }

  private async append(text: string): Promise<void> {
    if (this.bytes < 0) {
      await mkdir(path.dirname(this.file), { recursive: true });
      this.bytes = await stat(this.file).then((s) => s.size, () => 0);
    }
    if (this.bytes > 0 && this.bytes + Buffer.byteLength(text) > this.maxBytes) await this.rotate();
    this.fh ??= await open(this.file, 'a', 0o640);
    try {
      await this.fh.write(text);
    } catch (e) {
      await this.closeFile();
      throw e;
    }
    this.bytes += Buffer.byteLength(text);
  }

  /** Flush and close (shutdown). */
  async close(): Promise<void> {
    await this.flush();
    await this.closeFile();
  }

  private async closeFile(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    await fh?.close().catch(() => {});
  }

  private async rotate(): Promise<void> {
    await this.closeFile();
    await unlink(`${this.file}.${this.keep}`).catch(() => {});
    for (let i = this.keep - 1; i >= 1; i--) await rename(`${this.file}.${i}`, `${this.file}.${i + 1}`).catch(() => {});
    await rename(this.file, `${this.file}.1`).catch(() => {});
    this.bytes = 0;
  }
}

/**
 * Query lines collected as bytes, handed on as one text per batch (the gate's
 * stdout and gate.log). Thousands of lines a second kept as strings until a
 * flush outlive the young generation and are promoted: old-space garbage, GC
 * time and RSS. Written into one Buffer, each line's string dies at once.
 */
export class LineBatch {
  private buf: Buffer;
  private len = 0;

  constructor(private readonly bytes = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(bytes);
  }

  /** false: the batch is full (take() it); a line larger than the batch grows it */
  push(line: string): boolean {
    const need = this.len + line.length * 3 + 1; // UTF-8: at most 3 bytes per UTF-16 unit
    if (need > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, need));
      this.buf.copy(grown, 0, 0, this.len);
      this.buf = grown;
    }
    this.len += this.buf.write(line, this.len, 'utf8');
    this.buf[this.len++] = 0x0a;
    return this.len < this.bytes - 1024;
  }

  /** The lines so far, newline-separated without the last newline ('' when none); resets. */
  take(): string {
    const text = this.len ? this.buf.toString('utf8', 0, this.len - 1) : '';
    this.len = 0;
    if (this.buf.length > this.bytes) this.buf = Buffer.allocUnsafe(this.bytes); // a grown batch does not stay grown
    return text;
  }
}

/** Read at most the last this much of each log file (the writer rotates at dns.gate.logMaxBytes, 10 MiB by default). */
const MAX_LOG_READ = 64 * 1024 * 1024;

/** The lines of gate.log and its rotated files (oldest first); missing files, and anything that is not a regular file, are skipped. */
export async function readGateLogs(stateDir: string, keep = 20): Promise<string[]> {
  const file = path.join(stateDir, GATE_LOG);
  const out: string[] = [];
  for (let i = keep; i >= 0; i--) {
    const text = await readTail(i ? `${file}.${i}` : file, MAX_LOG_READ, { follow: false }).catch(() => null);
    if (text) out.push(...text.split('\n'));
  }
  return out;
}
