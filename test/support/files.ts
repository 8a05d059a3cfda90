import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';

const unitDir = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../unit');

/** A file under test/unit/fixtures (stock ufw before.rules, ...). */
export const fixture = (name: string): string => readFileSync(path.join(unitDir, 'fixtures', name), 'utf8');

/**
 * Compare with test/unit/golden/NAME. UPDATE_GOLDEN=1 writes the file: review
 * the diff before committing (each golden test also pins a few lines by hand).
 * A missing file fails: otherwise a renamed or deleted golden would pass by
 * writing whatever the code produces today.
 */
export function golden(name: string, actual: string): void {
  const file = path.join(unitDir, 'golden', name);
  if (process.env.UPDATE_GOLDEN === '1') writeFileSync(file, actual);
  else if (!existsSync(file)) throw new Error(`golden file test/unit/golden/${name} is missing: run with UPDATE_GOLDEN=1 to create it, then review it`);
  expect(actual).toBe(readFileSync(file, 'utf8'));
}
