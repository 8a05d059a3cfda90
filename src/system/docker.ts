/**
 * Docker Engine API client: read-only, over dockerd's unix socket with node's
 * http (no docker CLI, which may be missing, a different version, or slow to start).
 * Paths are unversioned: dockerd answers in its own API version, and every
 * field read here exists from API 1.41 (Docker 20.10) on; a missing field
 * reads as "not reported", never as a guess.
 */
import fs from 'node:fs';
import http from 'node:http';
import { EgressfwError } from '../errors.js';

export interface DockerEngine {
  version: string;
  apiVersion: string;
  /** null: the API does not report it (before Docker 28), or reports a driver we do not know (see firewallDriver) */
  firewallBackend: 'iptables' | 'nftables' | null;
  /** `docker info` FirewallBackend.Driver verbatim ("iptables", "nftables", "iptables+firewalld", ...); null before Docker 28 */
  firewallDriver: string | null;
  /** the driver says firewalld is in the loop ("iptables+firewalld") */
  firewalld: boolean;
  /** the default bridge has IPv6 (dockerd --ipv6); undefined when there is no default bridge network */
  ipv6Default?: boolean;
}

export interface DockerNetworkContainer {
  id: string;
  name: string;
  /** plain address, no prefix length */
  ipv4: string | null;
  ipv6: string | null;
}

export interface DockerNetwork {
  id: string;
  name: string;
  driver: string;
  scope: string;
  internal: boolean;
  /** bridge interface: com.docker.network.bridge.name option, docker0 for the default bridge, else br-<id first 12>; null for other drivers */
  bridge: string | null;
  /** macvlan/ipvlan "parent" option (null when Docker made a dummy parent or none) */
  parent: string | null;
  subnets: { 4: string[]; 6: string[] };
  enableIPv6: boolean;
  containers: DockerNetworkContainer[];
}

export interface DockerContainer {
  id: string;
  name: string;
  image: string;
  labels: Record<string, string>;
  networkMode: string;
  networks: { name: string; ipv4: string | null; ipv6: string | null }[];
  state: string;
}

export interface DockerClient {
  engine(): Promise<DockerEngine>;
  networks(): Promise<DockerNetwork[]>;
  containers(opts?: { all?: boolean }): Promise<DockerContainer[]>;
  /**
   * The running containers among these full ids, in one request: GET /containers/json filtered by
   * id (dockerd looks the ids up in its index and answers from its snapshot of containers, without
   * taking each container's lock). The list answer carries names, labels and
   * NetworkSettings.Networks with the addresses from API 1.41 on, like the unfiltered list.
   */
  running(ids: readonly string[]): Promise<DockerContainer[]>;
  /** one container by id (GET /containers/ID/json), shaped like a list entry; null when it is gone */
  container(id: string): Promise<DockerContainer | null>;
  /** the socket this client talks to */
  readonly socket: string;
}

/** dockerd cannot be reached or gave an answer we cannot use. Exit 1; the message names the fix. */
export class DockerUnavailableError extends EgressfwError {}

export interface DockerClientOptions {
  /** unix socket path; default: DOCKER_HOST=unix://PATH, else /run/docker.sock, else /var/run/docker.sock */
  socket?: string;
  /** per request, connect to last byte (default 10 s) */
  timeoutMs?: number;
  /** largest response body accepted (default 32 MiB: a host with thousands of containers) */
  maxBytes?: number;
  /** environment to read DOCKER_HOST from (default process.env) */
  env?: NodeJS.ProcessEnv;
  /** does a path exist (default fs.existsSync); for tests */
  exists?: (p: string) => boolean;
}

/** a container's full id, as events and lists give it */
const FULL_ID = /^[0-9a-f]{64}$/;
const DEFAULT_SOCKETS = ['/run/docker.sock', '/var/run/docker.sock'];
/** network inspections in flight at once */
const CONCURRENCY = 8;

/** Where dockerd listens, or a DockerUnavailableError for a DOCKER_HOST we cannot use. */
export function dockerSocket(opts: Pick<DockerClientOptions, 'socket' | 'env' | 'exists'> = {}): string {
  if (opts.socket) return opts.socket;
  const env = opts.env ?? process.env;
  const host = env.DOCKER_HOST?.trim();
  if (host) {
    if (host.startsWith('unix://') && host.length > 'unix://'.length) return host.slice('unix://'.length);
    throw new DockerUnavailableError(
      `DOCKER_HOST=${host} is not supported: egressfw reads the local dockerd over its unix socket. ` +
        'Unset DOCKER_HOST, or set it to unix:///PATH/TO/docker.sock.',
    );
  }
  const exists = opts.exists ?? fs.existsSync;
  return DEFAULT_SOCKETS.find((s) => exists(s)) ?? DEFAULT_SOCKETS[0]!;
}

type Json = Record<string, unknown>;

export function dockerClient(opts: DockerClientOptions = {}): DockerClient {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const maxBytes = opts.maxBytes ?? 32 * 1024 * 1024;
  let socket: string | undefined;
  let socketError: unknown;
  try {
    socket = dockerSocket(opts);
  } catch (e) {
    socketError = e; // thrown on first use: constructing a client never fails
  }

  /** GET path → parsed JSON; null on 404 when allow404 (a network removed between list and inspect). */
  const get = (p: string, allow404 = false): Promise<unknown> => {
    if (!socket) return Promise.reject(socketError);
    const sock = socket;
    return new Promise((resolve, reject) => {
      let done = false;
      const fail = (e: Error) => {
        if (done) return;
        done = true;
        req.destroy();
        reject(e);
      };
      // agent: false: no pooled keep-alive socket to hold a short-lived CLI open after its last request
      const req = http.request({ socketPath: sock, path: p, method: 'GET', agent: false, headers: { Host: 'docker', Accept: 'application/json' } }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > maxBytes) {
            fail(new DockerUnavailableError(`dockerd at ${sock}: the answer to GET ${p} exceeds ${maxBytes} bytes; refusing to read it.`));
            return;
          }
          chunks.push(c);
        });
        res.on('error', (e) => fail(unreachable(sock, e)));
        res.on('end', () => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          const body = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          if (status === 404 && allow404) return resolve(null);
          if (status < 200 || status >= 300) {
            return reject(new DockerUnavailableError(`dockerd at ${sock}: GET ${p} answered ${status}: ${apiMessage(body)}`));
          }
          try {
            resolve(JSON.parse(body));
          } catch {
            reject(new DockerUnavailableError(`dockerd at ${sock}: GET ${p} did not answer JSON (is ${sock} really dockerd's socket?)`));
          }
        });
      });
      const timer = setTimeout(
        () => fail(new DockerUnavailableError(`dockerd at ${sock} did not answer GET ${p} within ${timeoutMs} ms: is dockerd hung or overloaded? Check \`systemctl status docker\`, then retry.`)),
        timeoutMs,
      );
      req.on('error', (e) => {
        clearTimeout(timer);
        fail(unreachable(sock, e));
      });
      req.on('close', () => clearTimeout(timer));
      req.end();
    });
  };

  const engine = async (): Promise<DockerEngine> => {
    const [version, info, bridge] = await Promise.all([get('/version'), get('/info'), get('/networks/bridge', true)]);
    const v = obj(version);
    const fw = obj(obj(info).FirewallBackend);
    const driver = str(fw.Driver) || null;
    const b = bridge === null ? undefined : obj(bridge);
    return {
      version: str(v.Version),
      apiVersion: str(v.ApiVersion),
      firewallBackend: driver === null ? null : driver.startsWith('nftables') ? 'nftables' : driver.startsWith('iptables') ? 'iptables' : null,
      firewallDriver: driver,
      firewalld: driver !== null && /\bfirewalld\b/.test(driver),
      ...(b && str(b.Driver) === 'bridge' ? { ipv6Default: b.EnableIPv6 === true } : {}),
    };
  };

  const networks = async (): Promise<DockerNetwork[]> => {
    const list = arr(await get('/networks')).map(obj);
    const out: (DockerNetwork | null)[] = new Array(list.length).fill(null);
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < list.length; i = next++) {
        const id = str(list[i]!.Id);
        const n = await get(`/networks/${encodeURIComponent(id)}?verbose=false`, true);
        out[i] = n === null ? null : toNetwork(obj(n));
      }
    };
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, list.length) }, worker));
    return out.filter((n): n is DockerNetwork => n !== null).sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  };

  const containers = async (o: { all?: boolean } = {}): Promise<DockerContainer[]> =>
    arr(await get(`/containers/json${o.all ? '?all=true' : ''}`)).map((c) => toContainer(obj(c)));

  const running = async (ids: readonly string[]): Promise<DockerContainer[]> => {
    // a filter value is a pattern to dockerd: only full ids (hex) go in, each matches itself alone
    const bad = ids.find((id) => !FULL_ID.test(id));
    if (bad !== undefined) throw new DockerUnavailableError(`not a full container id: ${JSON.stringify(bad.slice(0, 80))}`);
    if (!ids.length) return [];
    const want = new Set(ids);
    const list = arr(await get(`/containers/json?filters=${encodeURIComponent(JSON.stringify({ id: ids }))}`)).map((c) => toContainer(obj(c)));
    return list.filter((c) => want.has(c.id) && c.state === 'running');
  };

  const container = async (id: string): Promise<DockerContainer | null> => {
    const c = await get(`/containers/${encodeURIComponent(id)}/json`, true);
    return c === null ? null : toInspected(obj(c));
  };

  return { engine, networks, containers, running, container, socket: socket ?? '' };
}

function unreachable(sock: string, e: Error & { code?: string }): DockerUnavailableError {
  const code = e.code ?? e.message;
  if (code === 'EACCES' || code === 'EPERM') {
    return new DockerUnavailableError(`cannot read dockerd's socket ${sock} (${code}): run egressfw as root.`);
  }
  return new DockerUnavailableError(
    `cannot reach dockerd at ${sock} (${code}): is dockerd running? Start it (\`systemctl start docker\`), ` +
      'or point DOCKER_HOST=unix:///PATH to its socket; or set containers.enabled: false if this host runs no Docker.',
  );
}

function apiMessage(body: string): string {
  try {
    const m = (JSON.parse(body) as Json).message;
    if (typeof m === 'string' && m) return m;
  } catch {
    /* not JSON */
  }
  return body.trim().slice(0, 200) || 'no body';
}

const obj = (v: unknown): Json => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string => (typeof v === 'string' ? v : '');
/** "198.51.100.130/28" → "198.51.100.130"; "" → null */
const addr = (v: unknown): string | null => str(v).split('/')[0] || null;
const labels = (v: unknown): Record<string, string> =>
  Object.fromEntries(Object.entries(obj(v)).filter((e): e is [string, string] => typeof e[1] === 'string'));

/** Docker names a parent it made up itself dm-<id12> (macvlan) or di-<id12> (ipvlan): not a real uplink. */
const DUMMY_PARENT = /^d[mi]-[0-9a-f]{12}$/;

export function toNetwork(n: Json): DockerNetwork {
  const id = str(n.Id);
  const name = str(n.Name);
  const driver = str(n.Driver);
  const options = labels(n.Options);
  const subnets: { 4: string[]; 6: string[] } = { 4: [], 6: [] };
  for (const c of arr(obj(n.IPAM).Config)) {
    const s = str(obj(c).Subnet);
    if (s) subnets[s.includes(':') ? 6 : 4].push(s);
  }
  let bridge: string | null = null;
  if (driver === 'bridge') bridge = options['com.docker.network.bridge.name'] || (name === 'bridge' ? 'docker0' : `br-${id.slice(0, 12)}`);
  const p = options.parent;
  const parent = (driver === 'macvlan' || driver === 'ipvlan') && p && !DUMMY_PARENT.test(p) ? p : null;
  const containers = Object.entries(obj(n.Containers))
    .map(([cid, v]) => {
      const c = obj(v);
      return { id: cid, name: str(c.Name), ipv4: addr(c.IPv4Address), ipv6: addr(c.IPv6Address) };
    })
    .sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  return { id, name, driver, scope: str(n.Scope), internal: n.Internal === true, bridge, parent, subnets, enableIPv6: n.EnableIPv6 === true, containers };
}

/** NetworkSettings.Networks (list and inspect answers alike) -> name and addresses, sorted by name. */
function networksOf(nets: Json): DockerContainer['networks'] {
  return Object.entries(nets)
    .map(([name, v]) => {
      const e = obj(v);
      return { name, ipv4: str(e.IPAddress) || null, ipv6: str(e.GlobalIPv6Address) || null };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** GET /containers/ID/json -> the list entry's shape (labels under Config, state under State). */
export function toInspected(c: Json): DockerContainer {
  const nets = obj(obj(c.NetworkSettings).Networks);
  return {
    id: str(c.Id),
    name: str(c.Name).replace(/^\//, ''),
    image: str(obj(c.Config).Image),
    labels: labels(obj(c.Config).Labels),
    networkMode: str(obj(c.HostConfig).NetworkMode),
    networks: networksOf(nets),
    state: str(obj(c.State).Status),
  };
}

export function toContainer(c: Json): DockerContainer {
  const names = arr(c.Names).map(str);
  const nets = obj(obj(c.NetworkSettings).Networks);
  return {
    id: str(c.Id),
    name: (names[0] ?? '').replace(/^\//, ''),
    image: str(c.Image),
    labels: labels(c.Labels),
    networkMode: str(obj(c.HostConfig).NetworkMode),
    networks: networksOf(nets),
    state: str(c.State),
  };
}
