/**
 * The compose CLI's `config`: how compose itself resolves the user's compose file
 * with egressfw's override (merge keys, `extends`, `include`, `!reset`, ...).
 * `docker compose` (v2) when the docker CLI has the plugin, else `docker-compose`.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Exec } from './exec.js';

export type ComposeConfigResult = { cli: string; text: string } | { cli: string; error: string };
/** `override` null: the user's file alone. null: no compose CLI on this machine */
export type ComposeConfig = (baseFile: string, override: string | null, projectDir: string) => Promise<ComposeConfigResult | null>;

export function composeConfig(exec: Exec): ComposeConfig {
  return async (baseFile, override, projectDir) => {
    const v2 = (await exec(['docker', 'compose', 'version'])).exitCode === 0;
    const cli = v2 ? ['docker', 'compose'] : (await exec(['docker-compose', 'version'])).exitCode === 0 ? ['docker-compose'] : null;
    if (!cli) return null;
    // the override is not written to the out dir before it is judged: a private temp copy
    const dir = await mkdtemp(path.join(tmpdir(), 'egressfw-compose-'));
    try {
      const file = path.join(dir, 'compose.egress.yml');
      if (override !== null) await writeFile(file, override, { mode: 0o600, flag: 'wx' });
      const r = await exec([...cli, '--project-directory', projectDir, '-f', baseFile, ...(override !== null ? ['-f', file] : []), 'config']);
      const name = cli.join(' ');
      return r.exitCode === 0 ? { cli: name, text: r.stdout } : { cli: name, error: (r.stderr || r.stdout).trim().split('\n').slice(-5).join(' ') || `exit ${r.exitCode}` };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };
}
