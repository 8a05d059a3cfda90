// A stand-in dockerd on a unix socket for the memory benchmark (scripts/bench/policies.ts): it serves an inventory of
// many running containers in the Engine API's shapes (API 1.41, as recorded in test/unit/fixtures/docker), so the real
// egressfw daemon can be measured with 1,000 mapped containers without starting 1,000 containers on a 2-core machine.
// Its /events stream stays open; emit() sends container start events, as dockerd would, for containers added with add().
import fs from 'node:fs';
import http from 'node:http';

export interface FakeContainer {
  id: string;
  name: string;
  labels: Record<string, string>;
  ipv4: string | null;
  ipv6: string | null;
}

const NET_ID = 'e'.repeat(64);
const NET = 'polbench';

export interface FakeDockerd {
  socket: string;
  /** requests served, by kind (list, filtered list, inspect, events, other) */
  asked: Record<string, number>;
  add(c: FakeContainer): void;
  /** a start event per id, written at once to every open /events stream */
  emit(ids: string[]): void;
  close(): Promise<void>;
}

export async function fakeDockerd(socket: string, containers: FakeContainer[], subnets: { 4: string; 6: string }): Promise<FakeDockerd> {
  const byId = new Map(containers.map((c) => [c.id, c]));
  const streams = new Set<http.ServerResponse>();
  const asked: Record<string, number> = {};
  const count = (k: string) => (asked[k] = (asked[k] ?? 0) + 1);
  const endpoint = (c: FakeContainer) => ({
    NetworkID: NET_ID,
    EndpointID: c.id.slice(0, 32).padEnd(64, '0'),
    Gateway: '',
    IPAddress: c.ipv4 ?? '',
    IPPrefixLen: c.ipv4 ? 25 : 0,
    IPv6Gateway: '',
    GlobalIPv6Address: c.ipv6 ?? '',
    GlobalIPv6PrefixLen: c.ipv6 ? 64 : 0,
    MacAddress: '02:42:c6:33:64:02',
  });
  const listEntry = (c: FakeContainer) => ({
    Id: c.id,
    Names: [`/${c.name}`],
    Image: 'busybox:latest',
    Command: 'sleep 86400',
    Labels: c.labels,
    State: 'running',
    Status: 'Up 1 minute',
    HostConfig: { NetworkMode: NET },
    NetworkSettings: { Networks: { [NET]: endpoint(c) } },
  });
  const inspect = (c: FakeContainer) => ({
    Id: c.id,
    Name: `/${c.name}`,
    State: { Status: 'running', Running: true },
    Config: { Image: 'busybox:latest', Labels: c.labels },
    HostConfig: { NetworkMode: NET },
    NetworkSettings: { Networks: { [NET]: endpoint(c) } },
  });
  const network = () => ({
    Name: NET,
    Id: NET_ID,
    Scope: 'local',
    Driver: 'bridge',
    EnableIPv6: true,
    Internal: false,
    IPAM: { Driver: 'default', Config: [{ Subnet: subnets[4] }, { Subnet: subnets[6] }] },
    Options: {},
    Containers: Object.fromEntries(
      [...byId.values()].map((c) => [c.id, { Name: c.name, IPv4Address: c.ipv4 ? `${c.ipv4}/25` : '', IPv6Address: c.ipv6 ? `${c.ipv6}/64` : '' }]),
    ),
  });
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://docker');
    const json = (v: unknown, status = 200) => {
      res.statusCode = status;
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify(v));
    };
    const p = url.pathname.replace(/^\/v1\.\d+/, '');
    if (p === '/version') return count('other'), json({ Version: '20.10.24', ApiVersion: '1.41' });
    if (p === '/info') return count('other'), json({});
    if (p === '/networks') return count('other'), json([{ Id: NET_ID, Name: NET }]);
    if (p === `/networks/${NET_ID}`) return count('other'), json(network());
    if (p === '/containers/json') {
      const f = url.searchParams.get('filters');
      const ids = f ? ((JSON.parse(f) as { id?: string[] }).id ?? []) : null;
      count(ids ? 'filtered list' : 'list');
      return json((ids ? ids.flatMap((id) => (byId.has(id) ? [byId.get(id)!] : [])) : [...byId.values()]).map(listEntry));
    }
    const m = /^\/containers\/([0-9a-f]{64})\/json$/.exec(p);
    if (m) {
      count('inspect');
      const c = byId.get(m[1]!);
      return c ? json(inspect(c)) : json({ message: `No such container: ${m[1]}` }, 404);
    }
    if (p === '/events') {
      count('events');
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.flushHeaders();
      streams.add(res);
      res.on('close', () => streams.delete(res));
      return;
    }
    count('other');
    json({ message: `page not found: ${p}` }, 404);
  });
  fs.rmSync(socket, { force: true });
  await new Promise<void>((r) => server.listen(socket, r));
  return {
    socket,
    asked,
    add: (c) => byId.set(c.id, c),
    emit: (ids) => {
      const nano = BigInt(Date.now()) * 1_000_000n;
      const lines = ids.map((id) => JSON.stringify({ Type: 'container', Action: 'start', Actor: { ID: id, Attributes: { name: byId.get(id)?.name ?? '' } }, time: Number(nano / 1_000_000_000n), timeNano: Number(nano) })).join('\n');
      for (const s of streams) s.write(`${lines}\n`);
    },
    close: async () => {
      for (const s of streams) s.end();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
