/**
 * The gate's sockets: UDP and TCP on each listen address, same port. Thin:
 * every message goes to `handle` (src/gate/gate.ts) and its answer back.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { PreconditionError } from '../errors.js';

export type Handle = (msg: Buffer, client: string, transport: 'udp' | 'tcp') => Buffer | null | Promise<Buffer | null>;

export interface GateServerOptions {
  listen: string[];
  port: number;
  handle: Handle;
  /** a socket problem that does not stop the gate (an address that cannot be bound while others can) */
  warn: (what: string) => void;
}

export interface GateServer {
  /** "0.0.0.0:5300/udp", ... */
  bound: string[];
  close(): Promise<void>;
}

const TCP_IDLE_MS = 10_000;
const TCP_MAX_CONNECTIONS = 512;
const TCP_MAX_PIPELINED = 64;

/**
 * Every answer goes back to the address the kernel gave us (rinfo.address): no name to resolve.
 * dgram's default lookup is dns.lookup, which for an address still parses it and defers to the
 * next tick, on every send.
 */
const literalAddress =
  (family: 4 | 6) =>
  (address: string, _options: unknown, callback: (err: Error | null, address: string, family: number) => void): void =>
    callback(null, address, family);

function bindUdp(host: string, port: number, handle: Handle): Promise<dgram.Socket> {
  const v6 = net.isIPv6(host);
  const sock = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: v6, reuseAddr: false, lookup: literalAddress(v6 ? 6 : 4) });
  return new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(port, host, () => {
      sock.removeListener('error', reject);
      try {
        sock.setRecvBufferSize(4 << 20); // bursts (many containers starting at once) wait here instead of being dropped
      } catch {
        /* the kernel's cap applies */
      }
      sock.on('error', () => {}); // per-datagram send errors (client gone): nothing to do
      sock.on('message', (msg, rinfo) => {
        let r: ReturnType<Handle>;
        try {
          r = handle(msg, rinfo.address, 'udp');
        } catch {
          return;
        }
        // a warm answer is a Buffer here: sent without a closure per query (the hot path allocates little)
        if (r instanceof Promise) r.then((res) => res && sock.send(res, rinfo.port, rinfo.address), () => {});
        else if (r) sock.send(r, rinfo.port, rinfo.address);
      });
      resolve(sock);
    });
  });
}

function bindTcp(host: string, port: number, handle: Handle, conns: Set<net.Socket>): Promise<net.Server> {
  const server = net.createServer((sock) => {
    conns.add(sock);
    sock.setTimeout(TCP_IDLE_MS, () => sock.destroy());
    sock.on('close', () => conns.delete(sock));
    sock.on('error', () => {});
    let buf = Buffer.alloc(0);
    let pending = 0;
    const client = sock.remoteAddress ?? '';
    sock.on('data', (d) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        if (++pending > TCP_MAX_PIPELINED) {
          sock.destroy();
          return;
        }
        const reply = (res: Buffer | null) => {
          pending--;
          if (!res || sock.destroyed) return;
          const len = Buffer.allocUnsafe(2);
          len.writeUInt16BE(res.length);
          sock.write(Buffer.concat([len, res]));
        };
        let r: ReturnType<Handle>;
        try {
          r = handle(Buffer.from(msg), client, 'tcp');
        } catch {
          r = null;
        }
        if (r instanceof Promise) r.then(reply, () => reply(null));
        else reply(r);
      }
    });
  });
  server.maxConnections = TCP_MAX_CONNECTIONS;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, ipv6Only: net.isIPv6(host), exclusive: true }, () => {
      server.removeListener('error', reject);
      resolve(server);
    });
  });
}

/** What to do about addresses that cannot be bound, by errno. */
function bindFix(codes: Set<string>): string {
  if (codes.has('EADDRINUSE')) return `another program uses the port (\`ss -lunp\` shows which): stop it, or set dns.gate.port to a free port`;
  if (codes.has('EADDRNOTAVAIL')) return 'the address is not one of this host\'s: fix dns.gate.listen';
  if (codes.has('EACCES')) return 'binding needs root (or CAP_NET_BIND_SERVICE): run it through `egressfw daemon` as root';
  return 'check dns.gate.listen and dns.gate.port';
}

/** Bind every address (UDP and TCP). An address that fails is a warning while another one binds; none: an error. */
export async function startGateServer(o: GateServerOptions): Promise<GateServer> {
  const udp: dgram.Socket[] = [];
  const tcp: net.Server[] = [];
  const conns = new Set<net.Socket>();
  const bound: string[] = [];
  const problems: string[] = [];
  const codes = new Set<string>();
  for (const host of o.listen) {
    const where = `${net.isIPv6(host) ? `[${host}]` : host}:${o.port}`;
    try {
      udp.push(await bindUdp(host, o.port, o.handle));
      bound.push(`${where}/udp`);
      tcp.push(await bindTcp(host, o.port, o.handle, conns));
      bound.push(`${where}/tcp`);
    } catch (e) {
      problems.push(`${where}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      codes.add((e as NodeJS.ErrnoException).code ?? '');
    }
  }
  const close = async () => {
    for (const s of udp) s.close();
    for (const c of conns) c.destroy();
    await Promise.all(tcp.map((s) => new Promise<void>((r) => s.close(() => r()))));
  };
  if (!bound.length || problems.length === o.listen.length) {
    await close();
    throw new PreconditionError(`the DNS gate cannot listen: ${problems.join('; ')}; ${bindFix(codes)}`);
  }
  for (const p of problems) o.warn(`cannot listen on ${p}`);
  return { bound, close };
}
