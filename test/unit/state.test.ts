import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { runPlan, type PlanDeps } from '../../src/commands/plan.js';
import { runStatus } from '../../src/commands/status.js';
import { syncOnce, type SyncDeps } from '../../src/commands/sync.js';
import { fixture } from '../support/files.js';
import { FakeKernel } from '../support/fake-kernel.js';
import { fakeFiles, kernelExec } from '../support/fake-exec.js';
import * as system from '../../src/system/state.js';
import { parseState, serializeState, type State } from '../../src/state-file.js';
import { readText } from '../../src/system/files.js';
import type { QueryFn } from '../../src/resolve/query.js';

// state.json is input like the config: whatever is in it must not widen the allowlist, crash or hang a command.
const NOW = 1_750_000_000;
const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});
let dir: string;
let stateDir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'efw-state-'));
  roots.push(dir);
  stateDir = path.join(dir, 'state');
  mkdirSync(stateDir);
});
const CONFIG = 'allow:\n  - domain: api.example.com\n  - domain: meta.example.com\n    allowPrivate: true\ndns:\n  servers: [198.51.100.53]\n  timeout: 100ms\n  attempts: 1\n';
const configFile = () => {
  const f = path.join(dir, 'egressfw.yml');
  writeFileSync(f, CONFIG);
  return f;
};
const dnsDown: QueryFn = async () => {
  throw new Error('timeout');
};
const ipState = (over: object = {}) => ({ firstSeen: NOW - 100, lastSeen: NOW - 10, ttl: 300, ...over });

function planDeps(over: Partial<PlanDeps> = {}) {
  const out: string[] = [];
  const warn: string[] = [];
  const k = new FakeKernel();
  const deps: PlanDeps = {
    query: dnsDown,
    readText,
    observe: async () => ({ observed: k.observe(), missingTools: [] }),
    now: () => NOW,
    isRoot: false,
    out: (t) => out.push(t),
    warn: (t) => warn.push(t),
    ...over,
  };
  return { deps, out, warn };
}

const writeState = (doc: unknown) => writeFileSync(path.join(stateDir, 'state.json'), typeof doc === 'string' ? doc : JSON.stringify(doc));

describe('state.json is validated before use', () => {
  it('networks, private/metadata IPs and far-future times never reach the ipset text (DNS down: saved IPs are used)', async () => {
    writeState({
      version: 1,
      domains: {
        'api.example.com': {
          status: 'ok',
          ips: {
            '0.0.0.0/1': ipState(),
            '::/1': ipState(),
            '169.254.169.254': ipState(),
            '10.1.2.3': ipState(),
            '203.0.113.7': ipState({ lastSeen: NOW + 10 * 365 * 86400 }), // would be kept for ten years
            '203.0.113.8': ipState({ ttl: 10 * 365 * 86400 }), // likewise, through the TTL
            '203.0.113.9': ipState(),
          },
        },
        // allowPrivate in the config: its private answer may stay
        'meta.example.com': { status: 'ok', ips: { '10.9.9.9': ipState() } },
      },
    });
    const p = planDeps();
    expect(await runPlan({ config: configFile(), stateDir, json: true, detailedExitcode: false }, p.deps)).toBe(0);
    const doc = JSON.parse(p.out.join(''));
    const ipset: string = doc.render.ipsetRestore;
    expect(ipset).toContain(' 203.0.113.9,tcp:443');
    expect(ipset).toContain(' 10.9.9.9,tcp:443');
    for (const bad of ['0.0.0.0', '::', '169.254.169.254', '10.1.2.3', '203.0.113.7']) expect(ipset).not.toContain(` ${bad}`);
    // the huge TTL is clamped to dns.maxTtl (1 day), not kept for ten years
    const kept8 = doc.domains.find((d: { name: string }) => d.name === 'api.example.com').ips.find((i: { ip: string }) => i.ip === '203.0.113.8');
    expect(kept8.until).toBeLessThanOrEqual(NOW + 86400);
    const warned = p.warn.join('\n');
    expect(warned).toMatch(/0\.0\.0\.0\/1.*not a host address/);
    expect(warned).toMatch(/169\.254\.169\.254.*link-local/);
    expect(warned).toMatch(/203\.0\.113\.7.*future/);
  });

  it('a junk IP key in an otherwise well-formed file: plan and status warn and go on, no stack trace', async () => {
    writeState({ version: 1, domains: { 'api.example.com': { status: 'ok', ips: { junk: ipState(), '203.0.113.10': ipState() } } } });
    const p = planDeps();
    expect(await runPlan({ config: configFile(), stateDir, json: false, detailedExitcode: false }, p.deps)).toBe(0);
    expect(p.out.join('')).toMatch(/203\.0\.113\.10 \(last-known-good\)/);
    expect(p.warn.join('\n')).toMatch(/"junk".*not a host address/);
    const s = planDeps({ isRoot: true });
    await runStatus({ config: configFile(), stateDir, json: false, verbose: true }, s.deps);
    expect(s.out.join('')).toMatch(/203\.0\.113\.10/);
  });

  it('junk keys and values everywhere: the good entries are kept, the rest dropped with a warning', async () => {
    writeState({
      version: 1,
      domains: {
        'api.example.com': { status: 'ok', ips: { junk: ipState(), '203.0.113.9': { firstSeen: 'x' }, '203.0.113.10': ipState() } },
        'not a name; rm -rf /': { status: 'ok', ips: {} },
        __proto__: { status: 'ok', ips: {} },
        'meta.example.com': 42,
      },
      lastSync: { at: 'yesterday', ok: true, message: 'x' },
      enforcedSince: -5,
      original: { ufwOutputPolicy: 'ACCEPT', ufwEnabled: 'yes', createdChains: ['DOCKER-USER/6', 'INPUT/4'] },
      extra: true,
    });
    const p = planDeps();
    expect(await runPlan({ config: configFile(), stateDir, json: true, detailedExitcode: false }, p.deps)).toBe(0);
    const doc = JSON.parse(p.out.join(''));
    expect(doc.render.ipsetRestore).toContain('203.0.113.10,tcp:443');
    expect(p.warn.join('\n')).toMatch(/junk/);

    const s = planDeps({ isRoot: true });
    await runStatus({ config: configFile(), stateDir, json: true }, s.deps);
    const status = JSON.parse(s.out.join(''));
    expect(status.domains[0].ips.map((i: { ip: string }) => i.ip)).toEqual(['203.0.113.10']);
    expect(status.lastSync).toBeNull();
  });

  it('a FIFO in place of state.json: plan refuses it at once instead of hanging', async () => {
    execFileSync('mkfifo', [path.join(stateDir, 'state.json')]);
    const p = planDeps();
    const t0 = Date.now();
    await expect(runPlan({ config: configFile(), stateDir, json: false, detailedExitcode: false }, p.deps)).rejects.toThrow(/state\.json is a FIFO, not a regular file/);
    expect(Date.now() - t0).toBeLessThan(5000);
  }, 10_000);
});

describe('a damaged state file', () => {
  function syncDeps(k: FakeKernel): SyncDeps {
    const files = fakeFiles(k, dir);
    return {
      query: dnsDown,
      exec: kernelExec(k).exec,
      ...files,
      onPath: async () => true,
      observe: async () => ({ observed: k.observe(), missingTools: [] }),
      acquireLock: async () => async () => {},
      setAside: system.setAsideDamaged,
      now: () => NOW,
      isRoot: true,
      out: () => {},
      warn: () => {},
    } as SyncDeps;
  }

  it('is moved aside (not overwritten), and the ufw policy uninstall needs is recovered from it', async () => {
    const k = new FakeKernel();
    k.ufw.files = { 4: fixture('before.rules'), 6: fixture('before6.rules') };
    k.ufw.outputPolicy = 'REJECT'; // what egressfw set; the original was ACCEPT
    const damaged = `{"version":1,"domains":{"api.example.com":{"ips":{"203.0.113.9":{"firstSeen":1,"lastSe`.concat(
      '\u0000\u0000 garbage',
      '"original":{"ufwOutputPolicy":"ACCEPT","ufwEnabled":true}',
    );
    writeState(damaged);
    const config = parseConfig(CONFIG, 'x');
    const r = await syncOnce(config, { stateDir }, syncDeps(k));
    const names = readdirSync(stateDir).sort();
    expect(names).toHaveLength(2);
    expect(names[0]).toBe('state.json');
    expect(names[1]).toMatch(/^state\.json\.damaged-\d{8}T\d{6}Z$/);
    expect(readFileSync(path.join(stateDir, names[1]!), 'utf8')).toBe(damaged);
    const saved = JSON.parse(readFileSync(path.join(stateDir, 'state.json'), 'utf8'));
    expect(saved.original).toMatchObject({ ufwOutputPolicy: 'ACCEPT', ufwEnabled: true });
    expect(r.warnings.join('\n')).toMatch(/damaged.*moved it to .*state\.json\.damaged-/);
  });
});

describe('parseState (pure) and the state dir', () => {
  it('round trip: what serializeState writes, parseState reads back unchanged, without a warning', () => {
    const state: State = {
      version: 1,
      domains: {
        'api.example.com': { ips: { '203.0.113.7': { firstSeen: NOW - 600, lastSeen: NOW, ttl: 300 }, '2001:db8::7': { firstSeen: NOW - 60, lastSeen: NOW - 30, ttl: 60 } }, status: 'ok', lastOk: NOW },
        'gone.example.com': { ips: {}, status: 'nxdomain' },
      },
      lastSync: { at: NOW, ok: true, message: 'applied 2 changes' },
      enforcedSince: NOW - 86400,
      original: { ufwOutputPolicy: 'ACCEPT', ufwEnabled: false, createdChains: ['DOCKER-USER/6'] },
    };
    const text = serializeState(state);
    expect(text.endsWith('}\n')).toBe(true);
    expect(parseState(text, { now: NOW })).toEqual({ state, warnings: [], damaged: null });
  });

  it('recovers the original ufw policy from a truncated file, and names the damage without quoting the text', () => {
    const text = '{"version":1,"original":{"ufwOutputPolicy":"DROP","ufwEnabled":false,"createdChains":["DOCKER-USER/6"]},"domains":{"a.example.com":{"ips":{"203.0.113.1":{"firstSe';
    const r = parseState(text, { now: NOW });
    expect(r.damaged).toMatch(/^not valid JSON/);
    expect(r.damaged).not.toContain('firstSe');
    expect(r.state).toEqual({ version: 1, domains: {}, original: { ufwOutputPolicy: 'DROP', ufwEnabled: false, createdChains: ['DOCKER-USER/6'] } });
    expect(parseState('[]', { now: NOW }).damaged).toMatch(/not an egressfw state document/);
  });

  it('re-applies the rebinding guard to IPv4-mapped IPv6, canonicalises keys, caps the warnings', () => {
    const ips: Record<string, object> = { '::ffff:169.254.169.254': ipState(), '2001:DB8:0:0::1': ipState() };
    for (let i = 0; i < 50; i++) ips[`bad-${i}`] = ipState();
    const r = parseState(JSON.stringify({ version: 1, domains: { 'a.example.com': { status: 'ok', ips } } }), { now: NOW });
    expect(Object.keys(r.state.domains['a.example.com']!.ips)).toEqual(['2001:db8::1']);
    expect(r.warnings.join('\n')).toMatch(/::ffff:169\.254\.169\.254.*IPv4-mapped/);
    expect(r.warnings.length).toBeLessThanOrEqual(21);
    expect(r.warnings.at(-1)).toMatch(/and \d+ more dropped entries/);
  });

  it('STATE_FILES covers every name egressfw writes in the state dir', async () => {
    const file = path.join(stateDir, 'state.json');
    writeFileSync(file, '{');
    const aside = await system.setAsideDamaged(file, NOW);
    writeFileSync(file, '{');
    const aside2 = await system.setAsideDamaged(file, NOW); // same second: a new name, the first copy kept
    expect(aside2).not.toBe(aside);
    for (const name of ['state.json', path.basename(aside), path.basename(aside2), '.state.json.egressfw-tmp-0123456789abcdef']) expect(system.isStateFile(name), name).toBe(true);
    for (const name of ['state.json.bak', 'other', 'state.jsonx', '.state.json.egressfw-tmp-../x']) expect(system.isStateFile(name), name).toBe(false);
  });
});
