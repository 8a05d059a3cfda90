import { readFile } from 'node:fs/promises';

/** File text, or null when it does not exist or cannot be read. */
export async function readText(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch {
    return null;
  }
}
