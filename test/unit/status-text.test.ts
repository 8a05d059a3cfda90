import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { runStatus } from '../../src/commands/status.js';
import { FakeKernel } from '../support/fake-kernel.js';

const dir = mkdtempSync(path.join(tmpdir(), 'egressfw-status-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('status escapes control characters that come from the state file', async () => {
  const config = path.join(dir, 'c.yml');
  writeFileSync(config, 'allow:\n  - domain: api.example.com\ndns:\n  servers: [192.0.2.53]\n');
  const state = {
    version: 1,
    lastSync: { at: 1000, ok: true, message: 'ok\x1b]0;owned\x07\x1b[2J' },
    domains: { 'api.example.com': { status: 'ok\r\x1b[32mENFORCED', ips: { '203.0.113.9': { firstSeen: 1000, lastSeen: 1000, ttl: 60 } } } },
  };
  let text = '';
  await runStatus(
    { config, stateDir: dir, json: false },
    {
      query: () => Promise.reject(new Error('no DNS in status')),
      readText: async (f) => (f === path.join(dir, 'state.json') ? JSON.stringify(state) : null),
      observe: async () => ({ observed: new FakeKernel().observe(), missingTools: [] }),
      now: () => 1010,
      isRoot: true,
      out: (t) => (text += t),
      warn: () => {},
    },
  );
  expect(text).toContain('ok\\x1b]0;owned\\x07\\x1b[2J');
  // a status that is not a plain word is dropped by the state validation before it gets here
  expect(text).not.toContain('ENFORCED\n');
  expect(text).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f]/);
});
