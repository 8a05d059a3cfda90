/**
 * Issue 21 item 4 against the real compose CLI (Debian's docker-compose 1.29, or `docker compose`):
 * its own `config` of the user's file with the override judges the isolation. Needs no Docker daemon.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runProxy } from '../../src/commands/proxy.js';
import { checkResolvedCompose } from '../../src/proxy/base.js';
import { composeConfig } from '../../src/system/compose.js';
import { realExec, toolPath } from '../../src/system/exec.js';
import { confinedFiles } from '../../src/system/files.js';

const hasCli = toolPath('docker-compose') !== null;
/** in CI the CLI is installed (scripts/install-deps.sh): the test must run there */
const inCi = () => !!process.env.CI && !['0', 'false'].includes(process.env.CI.toLowerCase());
const dir = mkdtempSync(path.join(os.tmpdir(), 'efw-compose-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!hasCli && !inCi())('the compose CLI judges the compose file (real docker-compose)', () => {
  const project = path.join(dir, 'shop');
  mkdirSync(path.join(project, 'common'), { recursive: true });
  writeFileSync(
    path.join(project, 'compose.yml'),
    'version: "3.9"\nx-net: &net\n  networks: [default]\nservices:\n  app:\n    image: busybox\n    <<: *net\n  worker:\n    image: busybox\n    extends: { file: common/base.yml, service: hostnet }\n  clean:\n    image: busybox\n',
  );
  writeFileSync(path.join(project, 'common/base.yml'), 'version: "3.9"\nservices:\n  hostnet:\n    image: busybox\n    network_mode: host\n');
  // (an override that gives worker networks too is refused by compose itself: network_mode and networks cannot be combined)
  const override = 'version: "3.9"\nservices:\n  app:\n    networks: [egressfw-internal]\n  clean:\n    networks: [egressfw-internal]\nnetworks:\n  egressfw-internal: { internal: true }\n';

  it('a merge key and an extends from another file keep the route out: compose says so, egressfw refuses', async () => {
    const r = await composeConfig(realExec)(path.join(project, 'compose.yml'), override, project);
    expect(r).toMatchObject({ text: expect.any(String) });
    const problems = checkResolvedCompose((r as { text: string }).text, (r as { cli: string }).cli, 'compose.yml', ['app', 'worker', 'clean'], []);
    expect(problems).toEqual([
      expect.stringMatching(/^service "app" ends up on default as `docker(-| )compose config` resolves compose\.yml/),
      expect.stringMatching(/^service "worker" ends up with network_mode: host/),
    ]);
    // the override went to a private temp dir only, and is gone
    expect(readdirSync(os.tmpdir()).filter((n) => n.startsWith('egressfw-compose-'))).toEqual([]);
  });

  it('egressfw proxy: the isolated service passes, nothing is written for the others', async () => {
    const config = path.join(dir, 'egressfw.yml');
    writeFileSync(config, 'allow:\n  - domain: a.example.com\ndns:\n  servers: [192.0.2.53]\nproxy:\n  services: [clean]\n');
    const deps = { ...confinedFiles(path.join(project, 'egress-proxy')), composeConfig: composeConfig(realExec), cwd: project, out: () => {}, warn: () => {} };
    expect(await runProxy({ config, out: 'egress-proxy', force: false }, deps)).toBe(0);
    writeFileSync(config, 'allow:\n  - domain: a.example.com\ndns:\n  servers: [192.0.2.53]\nproxy:\n  services: [app]\n');
    rmSync(path.join(project, 'egress-proxy'), { recursive: true });
    await expect(runProxy({ config, out: 'egress-proxy', force: false }, deps)).rejects.toThrow(/service "app" lists networks in compose\.yml \(default\)/);
  });
});
