// The single-file build on every Node it must run on: Debian 12's own node 18 (what the .deb depends on),
// this machine's node and node 22. For each: --version, `plan` on the example config, and every CLI case
// of test/unit/cli.test.ts. `npm test` builds the bundle first (npm run package).
import { execa } from 'execa';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliCases } from '../support/cli-cases.js';
import { nodeRuntimes } from '../support/node-runtimes.js';
import { describeWhere } from '../lab/requirements.js';

const BUNDLE = path.resolve('dist/pkg/egressfw.mjs');
const VERSION = (JSON.parse(fs.readFileSync('package.json', 'utf8')) as { version: string }).version;
const isRoot = process.getuid?.() === 0;
if (!fs.existsSync(BUNDLE)) throw new Error(`${BUNDLE} is missing: run \`npm run package\` (npm test does)`);

const runtimes = await nodeRuntimes();

const majors = runtimes.map((r) => Number(/^v(\d+)\./.exec(r.version)?.[1]));
describe('the Nodes the bundle is tested on', () => {
  it('end with 22 and include this machine\'s', () => {
    expect(majors.at(-1)).toBe(22);
    expect(runtimes.map((r) => r.version)).toContain(process.version);
  });
});
describeWhere('node 18 (Debian 12, what the .deb depends on)', isRoot ? [] : ['not root: Debian\'s node 18 runs in a private mount namespace; run the tests with sudo'], () => {
  it('is the first runtime', () => {
    expect(majors[0]).toBe(18);
  });
});

for (const rt of runtimes) {
  const run = (args: string[]) => execa(rt.argv[0]!, [...rt.argv.slice(1), BUNDLE, ...args], { reject: false, timeout: 60_000 });

  describe(`bundle on ${rt.name} ${rt.version}`, () => {
    it('--version prints the package version', async () => {
      const r = await run(['--version']);
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe(VERSION);
      expect(r.exitCode).toBe(0);
    });

    it('plan on the example config runs offline: every name reported, the plan printed, exit 0', async () => {
      const r = await run(['plan', '--config', 'examples/egressfw.yml', '--state-dir', '/nonexistent/egressfw-state']);
      expect(r.exitCode).toBe(0);
      expect(r.stdout).toMatch(/^egressfw plan: examples\/egressfw\.yml \(\d+ domains?, \d+ networks?\)/);
      for (const name of ['api.github.com', 'registry.npmjs.org', 'deb.debian.org', 'api.example.test']) expect(r.stdout).toContain(name);
      expect(r.stderr).not.toMatch(/unexpected error|ExperimentalWarning|DeprecationWarning/);
    });
  });

  cliCases(`CLI cases: bundle on ${rt.name} ${rt.version}`, () => [...rt.argv, BUNDLE]);
}
