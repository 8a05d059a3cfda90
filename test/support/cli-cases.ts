import { execa } from 'execa';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { A, AAAA, CNAME, FakeDns, zone } from './dns-server.js';

/**
 * The command-line cases, end to end against a real DNS server on 127.0.0.1, for any way of
 * starting the CLI: `argv` is the command before egressfw's own arguments (e.g. [node, dist/cli.js],
 * or a Node 18 wrapper and the bundle). test/unit/cli.test.ts runs them on the built CLI,
 * test/pkg/runtimes.test.ts on the bundle under each Node.
 */
export function cliCases(label: string, argv: () => string[]): void {
  describe(label, () => {
    let dns: FakeDns;
    let dir: string;

    beforeAll(async () => {
      dns = await new FakeDns(
        zone({
          'api.example.com': [A('api.example.com', '203.0.113.10', 120), AAAA('api.example.com', '2001:db8:10::10', 120)],
          'www.example.com': [CNAME('www.example.com', 'api.example.com'), A('api.example.com', '203.0.113.10', 120)],
          'evil.example.com': [A('evil.example.com', '169.254.169.254')],
          // a CNAME target with a terminal escape and a newline in a label
          'esc.example.com': [CNAME('esc.example.com', 'x\x1b[2J\nfake.example.net')],
        }),
      ).start();
      dir = mkdtempSync(path.join(tmpdir(), 'egressfw-cli-'));
    });
    afterAll(async () => {
      await dns.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    function config(body: string): string {
      const file = path.join(dir, `c${Math.random().toString(36).slice(2)}.yml`);
      writeFileSync(file, body);
      return file;
    }

    const good = () =>
      config(`allow:
  - domain: api.example.com
    ports: [443, "53/udp"]
  - domain: www.example.com
  - domain: evil.example.com
  - domain: missing.example.com
  - cidr: 192.0.2.0/24
dns:
  servers: [127.0.0.1]
  port: ${dns.port}
  timeout: 500ms
  attempts: 1
`);

    const run = (args: string[], opts: { timeout?: number } = {}) => {
      const [file, ...pre] = argv();
      return execa(file!, [...pre, ...args], { reject: false, ...opts });
    };

    describe('egressfw plan (CLI)', () => {
      it('prints per-domain results, the changes and the exact restore text', async () => {
        const stateDir = path.join(dir, 'state-text');
        const r = await run(['plan', '--config', good(), '--state-dir', stateDir]);
        expect(r.exitCode).toBe(0);
        expect(r.stdout).toMatch(/api\.example\.com\s+ok\s+443\/tcp 53\/udp\s+203\.0\.113\.10, 2001:db8:10::10/);
        expect(r.stdout).toMatch(/missing\.example\.com\s+nxdomain/);
        expect(r.stdout).toMatch(/evil\.example\.com -> 169\.254\.169\.254 refused: link-local \(incl\. 169\.254\.169\.254 metadata\)/);
        expect(r.stdout).toContain('add egressfw-v4 203.0.113.10,udp:53');
        expect(r.stdout).toContain('add egressfw-v6 2001:db8:10::10,tcp:443');
        expect(r.stdout).toContain(`add egressfw-v4 127.0.0.1,udp:${dns.port}`);
        expect(r.stdout).toContain('add element inet egressfw allow4 { 127.0.0.1 . tcp');
        expect(r.stdout).toMatch(/add rule inet egressfw forward ip daddr \. meta l4proto \. th dport @allow4 meta mark set meta mark or 0x10000000 accept comment "egressfw allowed [0-9a-f]{8}"/);
        // plan writes nothing: not even the state directory
        expect(() => readdirSync(stateDir)).toThrow();
      });

      it('--json prints one document with domains, changes and render text', async () => {
        const r = await run(['plan', '--config', good(), '--state-dir', path.join(dir, 'none'), '--json']);
        expect(r.exitCode).toBe(0);
        const doc = JSON.parse(r.stdout);
        expect(Object.keys(doc)).toEqual(['version', 'config', 'configWarnings', 'observed', 'dnsServers', 'domains', 'networks', 'mode', 'docker', 'coverage', 'pending', 'changes', 'scope', 'blockers', 'render', 'dnsOpen']);
        expect(doc.domains.map((d: { name: string; status: string }) => `${d.name}=${d.status}`)).toEqual([
          'api.example.com=ok',
          'evil.example.com=refused-private',
          'missing.example.com=nxdomain',
          'www.example.com=ok',
        ]);
        expect(doc.domains[0].ips.map((i: { ip: string }) => i.ip)).toEqual(['203.0.113.10', '2001:db8:10::10']);
        expect(doc.networks).toEqual([{ cidr: '192.0.2.0/24', ports: ['443/tcp'] }]);
        expect(doc.pending).toBe(true);
        expect(doc.render.ipsetRestore).toContain('203.0.113.10,tcp:443');
        expect(typeof doc.render.iptablesRestore).toBe('string');
      });

      it('--detailed-exitcode returns 3 when changes are pending', async () => {
        // containers only: as root this reads the machine's kernel (read-only), and its ufw may be off (a blocker: exit 1)
        const f = config(`${readFileSync(good(), 'utf8')}host: { enabled: false }\n`);
        const r = await run(['plan', '--config', f, '--state-dir', path.join(dir, 'none'), '--detailed-exitcode']);
        expect(r.exitCode, r.stdout + r.stderr).toBe(3);
      });

      it('an unresolvable allowlist is reported, not fatal (offline use)', async () => {
        const f = config(`allow: [{ domain: gone.example.com }]\ndns: { servers: [127.0.0.1], port: 9, timeout: 200ms, attempts: 1 }\n`);
        const r = await run(['plan', '--config', f, '--state-dir', path.join(dir, 'none')]);
        expect(r.exitCode).toBe(0);
        expect(r.stdout).toMatch(/gone\.example\.com\s+(timeout|network)/);
      });

      it('a bad config exits 2, lists every problem with its path, prints no plan', async () => {
        const f = config('allow:\n  - domain: "a.example.com; reboot"\n  - domain: ok.example.com\n    ports: [99999]\nbogus: 1\n');
        const r = await run(['plan', '--config', f]);
        expect(r.exitCode).toBe(2);
        expect(r.stdout).toBe('');
        expect(r.stderr).toContain('allow[0].domain: not a hostname');
        expect(r.stderr).toContain('allow[1].ports[0]: port must be 1-65535');
        expect(r.stderr).toContain('unknown key "bogus"');
        expect(r.stderr).toContain('nothing was changed');
      });

      it('a missing config file exits 2 and says how to fix it', async () => {
        const r = await run(['plan', '--config', path.join(dir, 'nope.yml')]);
        expect(r.exitCode).toBe(2);
        expect(r.stderr).toMatch(/file not found; create it \(start from examples\/egressfw\.yml\) or pass --config FILE/);
      });

      it('a YAML alias bomb, a FIFO and a world-wide network exit 2 with a message, no stack, no hang', async () => {
        const bomb = config(['a: &a ["x","x","x","x","x","x","x","x","x"]', ...'bcdefghi'.split('').map((k, i) => `${k}: &${k} [${Array(9).fill(`*${'abcdefghi'[i]}`).join(',')}]`)].join('\n'));
        const fifo = path.join(dir, 'fifo.yml');
        await execa('mkfifo', [fifo]);
        const world = config('allow:\n  - cidr: 0.0.0.0/0\n');
        for (const [f, message] of [
          [bomb, /YAML: too many aliases/],
          [fifo, /not a regular file/],
          [world, /allow\[0\]\.cidr: 0\.0\.0\.0\/0 .*0\.0\.0\.0\/1 and 128\.0\.0\.0\/1/],
        ] as const) {
          const r = await run(['plan', '--config', f], { timeout: 10_000 });
          expect([f, r.exitCode, r.timedOut]).toEqual([f, 2, false]);
          expect(r.stderr).toMatch(message);
          expect(r.stderr).not.toMatch(/^\s+at /m);
        }
      });

      it('control characters from DNS are escaped in the text output', async () => {
        const f = config(`allow:\n  - domain: esc.example.com\ndns:\n  servers: [127.0.0.1]\n  port: ${dns.port}\n  timeout: 500ms\n  attempts: 1\nipv6: false\n`);
        const r = await run(['plan', '--config', f, '--state-dir', path.join(dir, 'state-esc')]);
        expect(r.exitCode).toBe(0);
        expect(r.stdout).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/);
        expect(r.stdout).toContain('CNAME target x\\x1b[2j\\nfake.example.net does not exist (NXDOMAIN)');
      });

      it('config warnings (here: an empty allowlist) go to stderr, the plan still prints', async () => {
        const r = await run(['plan', '--config', config(`allow: []\ndns:\n  servers: [127.0.0.1]\n  port: ${dns.port}\n`), '--state-dir', path.join(dir, 'state-warn')]);
        expect(r.exitCode).toBe(0);
        expect(r.stderr).toMatch(/^warning: .*allows nothing/m);
        expect(r.stdout).toMatch(/^egressfw plan: /);
      });

      it('every command, the hidden gate included, takes --config and --state-dir', async () => {
        const help = (await run(['--help'])).stdout;
        const commands = [...help.matchAll(/^ {2}([a-z][a-z-]*) \[options\]/gm)].map((m) => m[1]!);
        // the list is read from the help, so a new command is covered without touching this test
        expect(commands).toEqual(expect.arrayContaining(['plan', 'sync', 'daemon', 'status', 'install', 'uninstall', 'report', 'suggest', 'proxy', 'export']));
        for (const c of [...commands, 'gate']) {
          const r = await run([c, '--help']);
          expect([c, r.exitCode]).toEqual([c, 0]);
          expect([c, /^\s+-c, --config <file>/m.test(r.stdout), /^\s+--state-dir <dir>/m.test(r.stdout)]).toEqual([c, true, true]);
        }
        // report and suggest read --config before anything else: a broken one is named, exit 2 (not "unknown option")
        const bad = config('allow: []\nbogus: 1\n');
        for (const c of ['report', 'suggest']) {
          const r = await run([c, '--config', bad, '--state-dir', path.join(dir, 'state-report')]);
          expect([c, r.exitCode]).toEqual([c, 2]);
          expect(r.stderr).toContain(bad);
          expect(r.stderr).toContain('unknown key "bogus"');
        }
      });

      it('an unknown flag or command exits 2', async () => {
        expect((await run(['plan', '--frobnicate'])).exitCode).toBe(2);
        expect((await run(['frobnicate'])).exitCode).toBe(2);
        expect((await run(['--help'])).exitCode).toBe(0);
      });
    });
  });
}
