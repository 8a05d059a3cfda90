import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runProxy, type ProxyDeps, type ProxyOptions } from '../../src/commands/proxy.js';
import { UsageError } from '../../src/errors.js';
import { golden } from '../support/files.js';

const here = path.dirname(new URL(import.meta.url).pathname);
const repo = path.resolve(here, '../..');

/** An in-memory file system for everything runProxy reads and writes through deps (the config is read from disk). */
function fakeFs(cwd: string, files: Record<string, string> = {}) {
  const fs = new Map(Object.entries(files).map(([k, v]) => [path.resolve(cwd, k), v]));
  const writes: string[] = [];
  const removed: string[] = [];
  const out: string[] = [];
  const warn: string[] = [];
  const deps: ProxyDeps = {
    readText: async (f) => fs.get(path.resolve(cwd, f)) ?? null,
    writeText: async (f, t) => {
      writes.push(f);
      fs.set(f, t);
    },
    removeFile: async (f) => {
      removed.push(f);
      fs.delete(f);
    },
    listDir: async (d) =>
      [...fs.keys()].filter((f) => path.dirname(f) === d).map((f) => path.basename(f)),
    cwd,
    out: (t) => out.push(t),
    warn: (t) => warn.push(t),
  };
  return { fs, writes, removed, out, warn, deps };
}

const tmpDirs: string[] = [];
afterAll(() => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

function configFile(yaml: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'efw-proxy-'));
  tmpDirs.push(dir);
  const f = path.join(dir, 'egressfw.yml');
  writeFileSync(f, yaml);
  return f;
}

const opts = (o: Partial<ProxyOptions>): ProxyOptions => ({ config: '', out: 'egress-proxy', force: false, ...o });
const BASE = 'services:\n  app: { image: busybox:1.36 }\n  db: { image: busybox:1.36 }\n';
const CONFIG = 'allow:\n  - domain: api.example.com\ndns:\n  servers: [192.0.2.53]\nproxy:\n  services: [app]\n';

describe('egressfw proxy (command)', () => {
  it('renders the example config next to the example compose file (the files docs/proxy.md shows)', async () => {
    const cwd = '/srv/app';
    const f = fakeFs(cwd, {
      '/etc/resolv.conf': 'nameserver 127.0.0.53\nnameserver 192.0.2.53\nnameserver 2001:db8::53\n',
      'compose.yml': readFileSync(path.join(repo, 'examples/compose.yml'), 'utf8'),
    });
    const code = await runProxy(opts({ config: path.join(repo, 'examples/egressfw.yml'), services: 'app' }), f.deps);
    expect(code).toBe(0);
    expect(f.writes.every((w) => w.startsWith('/srv/app/egress-proxy/'))).toBe(true);
    // resolv.conf's loopback stub and IPv6 server are not usable from the proxies: said, and skipped
    expect(f.warn[0]).toBe('note: the proxies do not use 127.0.0.53, 2001:db8::53 (IPv6 or loopback); they ask 192.0.2.53');
    const written = f.writes.map((w) => `==> ${path.relative(cwd, w)} <==\n${f.fs.get(w)}`).join('\n');
    golden('proxy-example.txt', `${f.out.join('')}\n${written}`);
  });

  it('docs/proxy.md shows exactly what the example renders (per-domain and sni)', async () => {
    const rendered = new Map<string, string>();
    for (const mode of ['per-domain', 'sni'] as const) {
      const f = fakeFs('/srv/app', {
        '/etc/resolv.conf': 'nameserver 192.0.2.53\n',
        'compose.yml': readFileSync(path.join(repo, 'examples/compose.yml'), 'utf8'),
      });
      expect(await runProxy(opts({ config: path.join(repo, 'examples/egressfw.yml'), services: 'app', mode }), f.deps)).toBe(0);
      for (const w of f.writes) rendered.set(`${mode} ${path.relative('/srv/app', w)}`, f.fs.get(w)!);
    }
    const docs = readFileSync(path.join(repo, 'docs/proxy.md'), 'utf8');
    const shown = [...docs.matchAll(/<!-- generated: (\S+ \S+) -->\n```\w*\n([\s\S]*?)```\n/g)];
    expect(shown.length).toBeGreaterThanOrEqual(3);
    for (const [, key, text] of shown) {
      expect(rendered.has(key!), `docs/proxy.md shows ${key}, which the example does not render`).toBe(true);
      expect(text, `docs/proxy.md: ${key} is stale; paste the output of the command shown there`).toBe(rendered.get(key!));
    }
  });

  it('writes only inside the out dir and refuses to overwrite files it did not generate, unless --force', async () => {
    const f = fakeFs('/p', { 'compose.yml': BASE, 'egress-proxy/compose.egress.yml': 'services: {}  # mine\n' });
    const config = configFile(CONFIG);
    await expect(runProxy(opts({ config }), f.deps)).rejects.toThrow(/not overwriting files egressfw did not generate[\s\S]*\/p\/egress-proxy\/compose\.egress\.yml/);
    expect(f.writes).toEqual([]);
    expect(await runProxy(opts({ config, force: true }), f.deps)).toBe(0);
    expect(f.writes.sort()).toEqual(['/p/egress-proxy/compose.egress.yml', '/p/egress-proxy/nginx/api.example.com.conf']);
    // generated now: a second run overwrites without --force
    expect(await runProxy(opts({ config }), f.deps)).toBe(0);
  });

  it('removes generated configs of domains no longer allowed, never other files', async () => {
    const f = fakeFs('/p', {
      'compose.yml': BASE,
      'egress-proxy/nginx/old.example.com.conf': '# Generated by egressfw proxy: ...\n',
      'egress-proxy/nginx/handmade.conf': 'stream {}\n',
    });
    expect(await runProxy(opts({ config: configFile(CONFIG) }), f.deps)).toBe(0);
    expect(f.removed).toEqual(['/p/egress-proxy/nginx/old.example.com.conf']);
    expect(f.fs.has('/p/egress-proxy/nginx/handmade.conf')).toBe(true);
    expect(f.out.join('')).toContain('removed egress-proxy/nginx/old.example.com.conf (no longer allowed)');
  });

  it('mounts the configs by their path from the compose project dir', async () => {
    const f = fakeFs('/p', { 'app/compose.yml': BASE });
    expect(await runProxy(opts({ config: configFile(CONFIG), compose: 'app/compose.yml', out: 'generated/egress' }), f.deps)).toBe(0);
    expect(f.fs.get('/p/generated/egress/compose.egress.yml')).toContain('"../generated/egress/nginx/api.example.com.conf:/etc/nginx/nginx.conf:ro"');
  });

  it('refuses what it cannot do safely (exit 2)', async () => {
    const cases: [string, Partial<ProxyOptions>, Record<string, string>, RegExp][] = [
      ['no services', {}, { 'compose.yml': BASE }, /no services to protect/],
      ['bad --services', { services: 'app,$(id)' }, { 'compose.yml': BASE }, /--services: not a compose service name/],
      ['service not in compose', { services: 'web' }, { 'compose.yml': BASE }, /service "web" \(proxy\.services \/ --services\) is not in compose\.yml/],
      ['service with its own networks', { services: 'app' }, { 'compose.yml': 'services:\n  app:\n    image: x\n    networks: [default]\n' }, /keep a route out/],
      ['out dir compose cannot take', { services: 'app', out: 'my dir' }, { 'compose.yml': BASE }, /--out: the out dir must be a simple path/],
    ];
    for (const [what, o, files, re] of cases) {
      const f = fakeFs('/p', files);
      const err = await runProxy(opts({ config: configFile('allow:\n  - domain: a.example.com\ndns:\n  servers: [192.0.2.53]\n'), ...o }), f.deps).catch((e) => e);
      expect(err, what).toBeInstanceOf(UsageError);
      expect(err.exitCode, what).toBe(2);
      expect(err.message, what).toMatch(re);
      expect(f.writes, what).toEqual([]);
    }
  });

  it('refuses a loopback-only resolver, and wildcards without sni mode', async () => {
    const f = fakeFs('/p', { 'compose.yml': BASE, '/etc/resolv.conf': 'nameserver 127.0.0.53\n' });
    await expect(runProxy(opts({ config: configFile('allow:\n  - domain: a.example.com\nproxy:\n  services: [app]\n') }), f.deps)).rejects.toThrow(
      /no IPv4 DNS server the proxies can reach in \/etc\/resolv\.conf \(127\.0\.0\.53\): set dns\.servers/,
    );
    const wild = configFile('dns:\n  servers: [192.0.2.53]\nproxy:\n  mode: sni\n  services: [app]\n  wildcards: ["*.example.com"]\n');
    await expect(runProxy(opts({ config: wild, mode: 'per-domain' }), f.deps)).rejects.toThrow(/need --mode sni/);
    expect(await runProxy(opts({ config: wild }), f.deps)).toBe(0);
  });

  it('without a compose file it still renders, and says what it could not check', async () => {
    const f = fakeFs('/p');
    expect(await runProxy(opts({ config: configFile(CONFIG), mode: 'sni' }), f.deps)).toBe(0);
    expect(f.warn.join('\n')).toMatch(/no compose file found in \/p \(pass --compose FILE\)/);
    expect([...f.fs.keys()]).toContain('/p/egress-proxy/nginx/sni.conf');
  });

  describe('the compose file as compose resolves it (issue 21 item 4)', () => {
    const config = () => configFile('allow:\n  - domain: a.example.com\ndns:\n  servers: [192.0.2.53]\nproxy:\n  services: [app]\n');
    const refusal = async (files: Record<string, string>, composeConfig?: ProxyDeps['composeConfig']) => {
      const f = fakeFs('/p', files);
      const err = await runProxy(opts({ config: config() }), { ...f.deps, ...(composeConfig ? { composeConfig } : {}) }).then(
        () => null,
        (e: Error) => e,
      );
      expect(f.writes).toEqual([]);
      return err;
    };

    it('without the compose CLI: merge keys, !!set and extends (same file, other file) are followed', async () => {
      const cases: [string, Record<string, string>, RegExp][] = [
        ['merge key', { 'compose.yml': 'x-net: &net\n  networks: [default]\nservices:\n  app:\n    image: x\n    <<: *net\n' }, /service "app" lists networks in compose\.yml \(default\)/],
        ['merge key, network_mode', { 'compose.yml': 'x-host: &host\n  network_mode: host\nservices:\n  app:\n    <<: *host\n    image: x\n' }, /service "app" sets network_mode: host/],
        ['!!set', { 'compose.yml': 'services:\n  app:\n    image: x\n    networks: !!set {default}\n' }, /service "app" lists networks in compose\.yml \(default\)/],
        ['extends, same file', { 'compose.yml': 'services:\n  base: { image: x, network_mode: host }\n  app:\n    extends: base\n' }, /service "app" sets network_mode: host/],
        ['extends, other file', { 'compose.yml': 'services:\n  app:\n    image: x\n    extends: { file: common/base.yml, service: web }\n', 'common/base.yml': 'services:\n  web:\n    networks: [default, front]\n' }, /service "app" lists networks in compose\.yml \(default, front\)/],
        ['extends, chained', { 'compose.yml': 'services:\n  a: { image: x, networks: [default] }\n  b: { extends: a }\n  app: { extends: { service: b } }\n' }, /service "app" lists networks/],
      ];
      for (const [what, files, re] of cases) {
        const err = await refusal(files);
        expect(err, what).toBeInstanceOf(UsageError);
        expect(err!.message, what).toMatch(re);
      }
    });

    it('without the compose CLI: what cannot be resolved is refused, saying what and how to fix it', async () => {
      const cases: [string, Record<string, string>, RegExp][] = [
        ['missing file', { 'compose.yml': 'services:\n  app:\n    image: x\n    extends: { file: gone.yml, service: web }\n' }, /compose\.yml: service "app": extends web: .*cannot read \/p\/gone\.yml/],
        ['missing service', { 'compose.yml': 'services:\n  app:\n    extends: nope\n' }, /extends service "nope", which is not in compose\.yml/],
        ['loop', { 'compose.yml': 'services:\n  a: { extends: app }\n  app: { extends: a }\n' }, /`extends` loops back/],
        ['compose-only tag', { 'compose.yml': 'services:\n  app:\n    image: x\n    networks: !reset []\n' }, /Unresolved tag: !reset.*install the compose CLI/],
        ['include', { 'compose.yml': 'include: [other.yml]\nservices:\n  app: { image: x }\n' }, /uses `include:`.*install the compose CLI/],
      ];
      for (const [what, files, re] of cases) {
        const err = await refusal(files);
        expect(err, what).toBeInstanceOf(UsageError);
        expect(err!.message, what).toMatch(re);
      }
    });

    it("with the compose CLI, its own `config` of the file and the override has the last word", async () => {
      const asked: (string | null)[] = [];
      // what compose says the merged project is: app still on default (say, through an include egressfw cannot see)
      const cli: ProxyDeps['composeConfig'] = async (base, override) => {
        asked.push(override === null ? `${base} alone` : `${base} + override`);
        return { cli: 'docker compose', text: 'services:\n  app:\n    image: x\n    networks:\n      default: null\n      egressfw-internal: null\nnetworks:\n  egressfw-internal: { internal: true }\n' };
      };
      const err = await refusal({ 'compose.yml': 'services:\n  app: { image: x }\n' }, cli);
      expect(err!.message).toMatch(/service "app" ends up on default as `docker compose config` resolves compose\.yml with the override/);
      expect(asked).toEqual(['/p/compose.yml + override']);
      // a tag only compose knows: egressfw's own reading gives way to the CLI's
      const ok: ProxyDeps['composeConfig'] = async (_b, override) => ({ cli: 'docker compose', text: override === null ? 'services:\n  app: { image: x }\n' : 'services:\n  app:\n    networks: { egressfw-internal: {} }\nnetworks:\n  egressfw-internal: { internal: true }\n' });
      const f = fakeFs('/p', { 'compose.yml': 'services:\n  app:\n    image: x\n    networks: !reset []\n' });
      expect(await runProxy(opts({ config: config() }), { ...f.deps, composeConfig: ok })).toBe(0);
      // the CLI refusing the file stops everything
      const broken = await refusal({ 'compose.yml': BASE }, async () => ({ cli: 'docker-compose', error: 'ERROR: yaml.scanner.ScannerError' }));
      expect(broken!.message).toMatch(/`docker-compose config` refuses compose\.yml with the override \(nothing written\): ERROR: yaml\.scanner/);
    });
  });
});
