import { execa } from 'execa';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';

const dir = mkdtempSync(path.join(tmpdir(), 'egressfw-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function refusal(file: string): Promise<string[]> {
  try {
    await loadConfig(file);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig: only a regular file of sane size', () => {
  it('refuses a FIFO at once instead of waiting for a writer', async () => {
    const fifo = path.join(dir, 'fifo.yml');
    await execa('mkfifo', [fifo]);
    expect(await refusal(fifo)).toEqual(['not a regular file (a FIFO): give the path of the config file']);
  }, 3000);

  it('refuses a character device and a directory', async () => {
    expect(await refusal('/dev/zero')).toEqual(['not a regular file (a character device): give the path of the config file']);
    expect(await refusal(dir)).toEqual(['not a regular file (a directory): give the path of the config file']);
  }, 3000);

  it('refuses a file over 1 MiB without reading it all', async () => {
    const big = path.join(dir, 'big.yml');
    writeFileSync(big, `# ${'x'.repeat(50 * 1024 * 1024)}\n`);
    expect(await refusal(big)).toEqual([expect.stringMatching(/^the file is larger than 1 MiB \(52,428,803 bytes\)/)]);
  });

  it('reads an ordinary file, through a symlink too', async () => {
    const f = path.join(dir, 'ok.yml');
    writeFileSync(f, 'allow:\n  - domain: api.example.com\n');
    await execa('ln', ['-s', f, path.join(dir, 'link.yml')]);
    expect((await loadConfig(path.join(dir, 'link.yml'))).domains.map((d) => d.name)).toEqual(['api.example.com']);
  });
});
