// Docker Engine API client against a fake dockerd on a unix socket, answering with
// real answers recorded from the lab's Docker 20.10 and 28.5 (scripts/capture-docker-api.ts).
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DockerUnavailableError, dockerClient, dockerSocket, type DockerNetwork } from '../../src/system/docker.js';

const FIXTURES = path.join(import.meta.dirname, 'fixtures/docker');
const load = (v: string) => JSON.parse(fs.readFileSync(path.join(FIXTURES, `api-${v}.json`), 'utf8')) as Record<string, unknown>;

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;
const servers: { server: http.Server; dir: string }[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.server.closeAllConnections();
    await new Promise((r) => s.server.close(r));
    fs.rmSync(s.dir, { recursive: true, force: true });
  }
});

/** A fake dockerd on a fresh unix socket; records the paths asked. */
async function fakeDockerd(handler: Handler): Promise<{ socket: string; asked: string[] }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'efw-docker-'));
  const socket = path.join(dir, 'docker.sock');
  const asked: string[] = [];
  const server = http.createServer((req, res) => {
    asked.push(`${req.method} ${req.url}`);
    handler(req, res);
  });
  await new Promise<void>((r) => server.listen(socket, r));
  servers.push({ server, dir });
  return { socket, asked };
}

/** Serves recorded answers; anything else is Docker's 404 shape. */
const replay =
  (answers: Record<string, unknown>): Handler =>
  (req, res) => {
    const key = `${req.method} ${req.url}`;
    res.setHeader('Content-Type', 'application/json');
    if (key in answers) {
      res.end(JSON.stringify(answers[key]));
    } else {
      res.statusCode = 404;
      res.end(JSON.stringify({ message: `page not found: ${req.url}` }));
    }
  };

const byName = (nets: DockerNetwork[]) => Object.fromEntries(nets.map((n) => [n.name, n]));

describe('Docker API client: recorded answers', () => {
  // Per version: the id prefix of the user networks (bridge name br-<id12>) and what changed between versions.
  const cases = [
    { v: '20.10', version: '20.10.24+dfsg1', api: '1.41', backend: null, driver: null, usernet: 'ef6b54089de7', bridgeMode: 'default', v6: '2001:db8:1::242:c633:6442' },
    { v: '28.5', version: '28.5.2+dfsg4', api: '1.51', backend: 'iptables', driver: 'iptables', usernet: '2ca39ac7404f', bridgeMode: 'bridge', v6: '2001:db8:1::2' },
    { v: '28.5-nft', version: '28.5.2+dfsg4', api: '1.51', backend: 'nftables', driver: 'nftables', usernet: '592d5c068a3f', bridgeMode: 'bridge', v6: '2001:db8:1::2' },
  ] as const;

  for (const c of cases) {
    it(`Docker ${c.v}: engine version, API version, firewall backend, IPv6 default`, async () => {
      const { socket } = await fakeDockerd(replay(load(c.v)));
      expect(await dockerClient({ socket }).engine()).toEqual({
        version: c.version,
        apiVersion: c.api,
        firewallBackend: c.backend,
        firewallDriver: c.driver,
        firewalld: false,
        ipv6Default: true,
      });
    });

    it(`Docker ${c.v}: networks with bridge names, parents, subnets and attached containers`, async () => {
      const { socket, asked } = await fakeDockerd(replay(load(c.v)));
      const nets = await dockerClient({ socket }).networks();
      expect(nets.map((n) => n.name)).toEqual(['bridge', 'host', 'internalnet', 'macnet', 'namedbr', 'none', 'usernet']);
      // one list, then one non-verbose inspect per network
      expect(asked.filter((a) => a.startsWith('GET /networks/'))).toHaveLength(7);
      expect(asked.filter((a) => a.startsWith('GET /networks/')).every((a) => a.endsWith('?verbose=false'))).toBe(true);
      const n = byName(nets);
      expect(n.bridge).toMatchObject({
        driver: 'bridge', scope: 'local', internal: false, bridge: 'docker0', parent: null, enableIPv6: true,
        subnets: { 4: ['198.51.100.64/26'], 6: ['2001:db8:1::/64'] },
      });
      expect(n.bridge!.containers).toEqual([{ id: expect.stringMatching(/^[0-9a-f]{64}$/), name: 'onbridge', ipv4: '198.51.100.66', ipv6: c.v6 }]);
      expect(n.usernet).toMatchObject({
        bridge: `br-${c.usernet}`, enableIPv6: true, internal: false,
        subnets: { 4: ['198.51.100.128/28'], 6: ['2001:db8:1:1::/64'] },
      });
      // a created, never started container is not attached
      expect(n.usernet!.containers.map((x) => [x.name, x.ipv4, x.ipv6])).toEqual([['onuser', '198.51.100.130', '2001:db8:1:1::2']]);
      expect(n.internalnet).toMatchObject({ internal: true, enableIPv6: false, subnets: { 4: ['198.51.100.144/28'], 6: [] } });
      expect(n.internalnet!.containers.map((x) => [x.name, x.ipv4, x.ipv6])).toEqual([['onuser', '198.51.100.146', null]]);
      expect(n.namedbr!.bridge).toBe('efwbr0');
      expect(n.macnet).toMatchObject({ driver: 'macvlan', bridge: null, parent: 'eth0', subnets: { 4: ['203.0.113.192/27'], 6: [] } });
      expect(n.macnet!.containers.map((x) => [x.name, x.ipv4])).toEqual([['onmac', '203.0.113.194']]);
      for (const k of ['host', 'none'] as const) {
        expect(n[k]).toMatchObject({ bridge: null, parent: null, subnets: { 4: [], 6: [] } });
        expect(n[k]!.containers.map((x) => [x.name, x.ipv4, x.ipv6])).toEqual([[k === 'host' ? 'hostnet' : 'nonet', null, null]]);
      }
    });

    it(`Docker ${c.v}: containers, running and all`, async () => {
      const { socket } = await fakeDockerd(replay(load(c.v)));
      const client = dockerClient({ socket });
      const running = await client.containers();
      expect(running.map((x) => x.name).sort()).toEqual(['hostnet', 'nonet', 'onbridge', 'onmac', 'onnamed', 'onuser', 'shared']);
      const all = await client.containers({ all: true });
      expect(all).toHaveLength(8);
      const x = Object.fromEntries(all.map((e) => [e.name, e]));
      expect(x.onbridge).toMatchObject({ image: 'busybox:latest', labels: { 'com.example.role': 'web' }, networkMode: c.bridgeMode, state: 'running' });
      expect(x.onbridge!.networks).toEqual([{ name: 'bridge', ipv4: '198.51.100.66', ipv6: c.v6 }]);
      expect(x.onuser!.networks).toEqual([
        { name: 'internalnet', ipv4: '198.51.100.146', ipv6: null },
        { name: 'usernet', ipv4: '198.51.100.130', ipv6: '2001:db8:1:1::2' },
      ]);
      expect(x.stopped).toMatchObject({ state: 'created', networkMode: 'usernet', networks: [{ name: 'usernet', ipv4: null, ipv6: null }] });
      expect(x.shared!.networkMode).toBe(`container:${x.onbridge!.id}`);
      expect(x.shared!.networks).toEqual([]);
      expect(x.hostnet).toMatchObject({ networkMode: 'host', networks: [{ name: 'host', ipv4: null, ipv6: null }] });
    });
  }
});

describe('Docker API client: running containers by id (the daemon\'s batched read of started containers)', () => {
  it('asks once, filtered by the full ids, and keeps only those asked that run', async () => {
    const answers = load('20.10');
    const all = answers['GET /containers/json?all=true'] as { Id: string; Names: string[] }[];
    const id = (name: string) => all.find((c) => c.Names[0] === `/${name}`)!.Id;
    // the fake answers the whole list (created container included): the client must not trust the filter alone
    const { socket, asked } = await fakeDockerd((req, res) => res.end(JSON.stringify(req.url!.startsWith('/containers/json?filters=') ? all : [])));
    const got = await dockerClient({ socket }).running([id('onuser'), id('stopped'), id('onbridge')]);
    expect(got.map((c) => c.name).sort()).toEqual(['onbridge', 'onuser']);
    expect(got.find((c) => c.name === 'onuser')!.networks).toEqual([
      { name: 'internalnet', ipv4: '198.51.100.146', ipv6: null },
      { name: 'usernet', ipv4: '198.51.100.130', ipv6: '2001:db8:1:1::2' },
    ]);
    expect(asked).toHaveLength(1);
    const filters = JSON.parse(decodeURIComponent(asked[0]!.slice('GET /containers/json?filters='.length))) as { id: string[] };
    expect(filters).toEqual({ id: [id('onuser'), id('stopped'), id('onbridge')] });
  });

  it('a value that is not a full id never reaches dockerd (a filter value is a pattern there); none asked, nothing asked', async () => {
    const { socket, asked } = await fakeDockerd((_req, res) => res.end('[]'));
    const client = dockerClient({ socket });
    await expect(client.running(['abc.*'])).rejects.toThrow(/not a full container id/);
    await expect(client.running(['a'.repeat(12)])).rejects.toThrow(DockerUnavailableError);
    expect(await client.running([])).toEqual([]);
    expect(asked).toEqual([]);
  });
});

describe('Docker API client: edge cases', () => {
  it('reads firewalld from the driver name, and keeps an unknown driver verbatim with no backend', async () => {
    const answers = load('28.5');
    const info = answers['GET /info'] as Record<string, unknown>;
    const { socket } = await fakeDockerd((req, res) => {
      if (req.url === '/info') return res.end(JSON.stringify({ ...info, FirewallBackend: { Driver: driver } }));
      replay(answers)(req, res);
    });
    let driver = 'iptables+firewalld';
    expect(await dockerClient({ socket }).engine()).toMatchObject({ firewallBackend: 'iptables', firewallDriver: 'iptables+firewalld', firewalld: true });
    driver = 'ebpf';
    expect(await dockerClient({ socket }).engine()).toMatchObject({ firewallBackend: null, firewallDriver: 'ebpf', firewalld: false });
  });

  it('no default bridge (dockerd --bridge=none): ipv6Default is left out', async () => {
    const answers = { ...load('28.5') };
    delete answers['GET /networks/bridge'];
    const { socket } = await fakeDockerd(replay(answers));
    expect(await dockerClient({ socket }).engine()).not.toHaveProperty('ipv6Default');
  });

  it('a network removed between list and inspect is skipped, not an error', async () => {
    const answers = load('20.10');
    const gone = Object.keys(answers).find((k) => k.includes('?verbose=false') && (answers[k] as { Name: string }).Name === 'namedbr')!;
    const { socket } = await fakeDockerd((req, res) => {
      if (`GET ${req.url}` === gone) {
        res.statusCode = 404;
        return res.end('{"message":"network namedbr not found"}');
      }
      replay(answers)(req, res);
    });
    expect((await dockerClient({ socket }).networks()).map((n) => n.name)).not.toContain('namedbr');
  });

  it('a macvlan with a parent Docker made up itself (dm-<id>) has parent null', async () => {
    const answers = load('20.10');
    const key = Object.keys(answers).find((k) => k.includes('?verbose=false') && (answers[k] as { Name: string }).Name === 'macnet')!;
    const mac = answers[key] as { Options: Record<string, string>; Id: string };
    const { socket } = await fakeDockerd(replay({ ...answers, [key]: { ...mac, Options: { parent: `dm-${mac.Id.slice(0, 12)}` } } }));
    expect(byName(await dockerClient({ socket }).networks()).macnet!.parent).toBeNull();
  });

  it('no socket: names the fix', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'efw-docker-'));
    try {
      const err = await dockerClient({ socket: path.join(dir, 'docker.sock') }).engine().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DockerUnavailableError);
      expect((err as Error).message).toMatch(/cannot reach dockerd at .*docker\.sock \(ENOENT\): is dockerd running\? Start it/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a dockerd that never answers: times out after timeoutMs', async () => {
    const { socket } = await fakeDockerd(() => {
      /* hold the request */
    });
    const t0 = Date.now();
    await expect(dockerClient({ socket, timeoutMs: 300 }).containers()).rejects.toThrow(/did not answer GET \/containers\/json within 300 ms: is dockerd hung/);
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('an answer larger than maxBytes is refused', async () => {
    const { socket } = await fakeDockerd((_req, res) => res.end(JSON.stringify([{ Id: 'x'.repeat(5000) }])));
    await expect(dockerClient({ socket, maxBytes: 1000 }).containers()).rejects.toThrow(/exceeds 1000 bytes/);
  });

  it("an error status carries Docker's message; a non-JSON body says so", async () => {
    const { socket } = await fakeDockerd((req, res) => {
      if (req.url === '/version') {
        res.statusCode = 500;
        return res.end('{"message":"something broke"}');
      }
      res.end('<html>not docker</html>');
    });
    await expect(dockerClient({ socket }).engine()).rejects.toThrow(/GET \/version answered 500: something broke/);
    await expect(dockerClient({ socket }).containers()).rejects.toThrow(/did not answer JSON/);
  });
});

describe('Docker socket path', () => {
  const none = () => false;
  it('DOCKER_HOST=unix://PATH wins over the defaults', () => {
    expect(dockerSocket({ env: { DOCKER_HOST: 'unix:///srv/d.sock' }, exists: () => true })).toBe('/srv/d.sock');
  });
  it('/run/docker.sock, else /var/run/docker.sock, else /run/docker.sock (for the message)', () => {
    expect(dockerSocket({ env: {}, exists: () => true })).toBe('/run/docker.sock');
    expect(dockerSocket({ env: {}, exists: (p) => p === '/var/run/docker.sock' })).toBe('/var/run/docker.sock');
    expect(dockerSocket({ env: {}, exists: none })).toBe('/run/docker.sock');
  });
  it('an explicit socket wins over DOCKER_HOST', () => {
    expect(dockerSocket({ socket: '/x.sock', env: { DOCKER_HOST: 'tcp://1.2.3.4:2375' } })).toBe('/x.sock');
  });
  it('DOCKER_HOST=tcp://… is refused on first use with the fix', async () => {
    const client = dockerClient({ env: { DOCKER_HOST: 'tcp://10.0.0.1:2375' } });
    await expect(client.networks()).rejects.toThrow(/DOCKER_HOST=tcp:\/\/10\.0\.0\.1:2375 is not supported.*unix:\/\/\/PATH/);
    await expect(client.networks()).rejects.toBeInstanceOf(DockerUnavailableError);
  });
});
