/**
 * Issue 21 items 2, 7, 8: one door each, so no command forgets. Every spawn goes through
 * src/system/exec.ts (fixed tool dirs, clean environment), every file read through
 * src/system/read-file.ts (non-blocking, fstat-checked), every byte a command prints through
 * the sinks of src/deps.ts and src/cli.ts (printText). This test reads the sources and names
 * the file that opens another door.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const src = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../src');
const files = (readdirSync(src, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'));
const text = new Map(files.map((f) => [f, readFileSync(path.join(src, f), 'utf8')]));
const offenders = (re: RegExp, allowed: string[]) => files.filter((f) => !allowed.includes(f) && re.test(text.get(f)!));

describe('one door each', () => {
  it('processes: only src/system/exec.ts imports child_process or execa for real', () => {
    expect(offenders(/^import (?!type )[^;]*from '(node:child_process|child_process|execa)'/m, ['system/exec.ts'])).toEqual([]);
    expect(offenders(/await import\('(node:)?child_process'\)/, [])).toEqual([]);
  });

  it('reads: only src/system/read-file.ts opens files to read them (the lock reads its own descriptor)', () => {
    expect(offenders(/\breadFile(Sync)?\(|createReadStream\(/, ['system/read-file.ts', 'system/lock.ts'])).toEqual([]);
    expect(offenders(/\bopen\([^)]*(O_RDONLY|'r')/, ['system/read-file.ts', 'system/files.ts'])).toEqual([]);
    // files.ts opens only directories (fsync) that way
    expect(text.get('system/files.ts')!.match(/open\([^)]*O_RDONLY[^)]*\)/g)).toEqual(['open(dir, O_RDONLY)']);
  });

  it('output: only the sinks of src/deps.ts and src/cli.ts write to stdout/stderr, through printText', () => {
    expect(offenders(/process\.(stdout|stderr)\.write|console\.(log|error|warn|info)/, ['deps.ts', 'cli.ts'])).toEqual([]);
    for (const f of ['deps.ts', 'cli.ts']) {
      for (const m of text.get(f)!.matchAll(/process\.(stdout|stderr)\.write\((.*)$/gm)) expect([f, m[2]]).toEqual([f, expect.stringMatching(/^(`\$\{)?printText\(/)]);
    }
  });
});
