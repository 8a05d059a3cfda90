import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { golden } from '../support/files.js';

const goldenDir = path.resolve(path.dirname(new URL(import.meta.url).pathname), 'golden');
const name = `missing-${process.pid}.txt`;

afterEach(() => {
  vi.unstubAllEnvs();
  rmSync(path.join(goldenDir, name), { force: true });
});

describe('golden files', () => {
  it('a missing golden file fails the test and is not created', () => {
    vi.stubEnv('UPDATE_GOLDEN', '');
    expect(() => golden(name, 'text\n')).toThrow(/UPDATE_GOLDEN=1/);
    expect(existsSync(path.join(goldenDir, name))).toBe(false);
  });

  it('UPDATE_GOLDEN=1 writes it', () => {
    vi.stubEnv('UPDATE_GOLDEN', '1');
    golden(name, 'text\n');
    expect(existsSync(path.join(goldenDir, name))).toBe(true);
  });
});
