/**
 * The gate's upstream queries: one shared pool of UDP sockets, bound at start
 * to egressfw's reserved source ports and kept for the gate's life, queries
 * multiplexed over them by a random id (matched on server, id and question,
 * as dns-client does). A silent upstream and a flood of names therefore cost
 * entries in a map, never a socket each.
 *
 * Why reserved ports: host DNS is redirected to the gate (src/plan/gate.ts,
 * chain gate-host), except DNS that leaves from a root-owned socket on these
 * ports. Ports below 1024 need CAP_NET_BIND_SERVICE to bind, and `meta skuid 0`
 * needs root: a compromised unprivileged process can do neither, and root can
 * rewrite the firewall anyway. Root's other processes (dockerd's embedded
 * resolver, a root cron job, `dig` run by an admin) use ephemeral ports and are
 * redirected. The ports are held for the gate's life, so no service is
 * surprised by one taken mid-run; one already in use at start is skipped.
 */
import dgram from 'node:dgram';
import { randomInt } from 'node:crypto';
import * as packet from 'dns-packet';
import { parseIp, type Family } from '../net/ip.js';
import { QueryError, type QueryFn, type RecordType, type Server } from '../resolve/query.js';
import { buildQuery, matches, tcpQuery, toResult, tryDecode } from './dns-client.js';

/** The gate's source ports: UDP pool, and TCP (answers too big for UDP). Shared with the kernel rule. */
export const GATE_UDP_PORTS = { first: 960, last: 975 } as const;
export const GATE_TCP_PORTS = { first: 976, last: 987 } as const;

interface Waiting {
  server: Server;
  serverIp: string;
  name: string;
  type: RecordType;
  resolve: (p: packet.Packet) => void;
  timer: NodeJS.Timeout;
}

export interface UpstreamPoolOptions {
  udpPorts?: { first: number; last: number };
  tcpPorts?: { first: number; last: number };
  /** 0 in tests: any free port */
  families?: Family[];
  warn?: (what: string) => void;
}

export class UpstreamPool {
  private readonly socks: Record<Family, dgram.Socket[]> = { 4: [], 6: [] };
  /** `${family}|${socket index}|${id}` -> the query waiting for it */
  private readonly waiting = new Map<string, Waiting>();
  private readonly tcpPorts: { first: number; last: number };

  private constructor(tcpPorts: { first: number; last: number }) {
    this.tcpPorts = tcpPorts;
  }

  static async open(o: UpstreamPoolOptions = {}): Promise<UpstreamPool> {
    const pool = new UpstreamPool(o.tcpPorts ?? GATE_TCP_PORTS);
    const ports = o.udpPorts ?? GATE_UDP_PORTS;
    for (const family of o.families ?? [4, 6]) {
      const problems: string[] = [];
      for (let port = ports.first; port <= ports.last; port++) {
        try {
          pool.socks[family].push(await pool.bind(family, port));
        } catch (e) {
          problems.push(`${port}: ${(e as Error).message}`);
          if (/EAFNOSUPPORT|EADDRNOTAVAIL/.test((e as Error).message)) break; // no IPv6 here
        }
        if (port === 0) break;
      }
      if (problems.length) o.warn?.(`upstream pool: udp${family} ports not bound (${problems.join('; ')}); ${pool.socks[family].length} bound`);
    }
    return pool;
  }

  /** sockets bound per family (status, tests) */
  get size(): Record<Family, number> {
    return { 4: this.socks[4].length, 6: this.socks[6].length };
  }

  get inflight(): number {
    return this.waiting.size;
  }

  private bind(family: Family, port: number): Promise<dgram.Socket> {
    const sock = dgram.createSocket({ type: family === 4 ? 'udp4' : 'udp6', ...(family === 6 ? { ipv6Only: true } : {}) });
    return new Promise((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(port, family === 4 ? '0.0.0.0' : '::', () => {
        sock.removeListener('error', reject);
        try {
          sock.setRecvBufferSize(4 << 20); // answers to a burst arrive together: wait here, not dropped
        } catch {
          /* the kernel's cap applies */
        }
        sock.on('error', () => {}); // per-datagram errors (ICMP unreachable): the query times out
        const index = this.socks[family].length;
        sock.on('message', (buf, rinfo) => this.onMessage(family, index, buf, rinfo));
        resolve(sock);
      });
    });
  }

  private onMessage(family: Family, index: number, buf: Buffer, rinfo: dgram.RemoteInfo): void {
    if (buf.length < 2) return;
    const k = `${family}|${index}|${buf.readUInt16BE(0)}`;
    const w = this.waiting.get(k);
    // anyone can send a datagram: only the server we asked, with our id and question, is taken
    if (!w || rinfo.port !== w.server.port || (parseIp(rinfo.address)?.text ?? rinfo.address) !== w.serverIp) return;
    const p = tryDecode(buf);
    if (!p || !matches(p, p.id ?? -1, w.name, w.type)) return;
    this.waiting.delete(k);
    clearTimeout(w.timer);
    w.resolve(p);
  }

  private udp(server: Server, name: string, type: RecordType, timeoutMs: number): Promise<packet.Packet> {
    const serverIp = parseIp(server.host)?.text;
    if (!serverIp) return Promise.reject(new QueryError('network', `not an IP address: ${server.host}`));
    const family: Family = serverIp.includes(':') ? 6 : 4;
    const socks = this.socks[family];
    if (!socks.length) return Promise.reject(new QueryError('network', `no IPv${family} upstream socket (its ports were all in use at start)`));
    let index = 0;
    let id = 0;
    let k = '';
    for (let tries = 0; ; tries++) {
      index = randomInt(0, socks.length);
      id = randomInt(0, 0x10000);
      k = `${family}|${index}|${id}`;
      if (!this.waiting.has(k)) break;
      if (tries > 64) return Promise.reject(new QueryError('network', 'upstream pool: no free query id'));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(k);
        reject(new QueryError('timeout', `no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(k, { server, serverIp, name, type, resolve, timer });
      socks[index]!.send(buildQuery(id, name, type), server.port, server.host, (e) => {
        if (!e || !this.waiting.has(k)) return;
        this.waiting.delete(k);
        clearTimeout(timer);
        reject(new QueryError('network', e.message));
      });
    });
  }

  /** TCP (truncated answers): one connection, from a free port of the TCP range. */
  private async tcp(server: Server, name: string, type: RecordType, timeoutMs: number): Promise<packet.Packet> {
    const { first, last } = this.tcpPorts;
    if (first === 0) return tcpQuery(server, name, type, timeoutMs);
    const start = randomInt(first, last + 1);
    for (let i = 0; i <= last - first; i++) {
      const port = first + ((start - first + i) % (last - first + 1));
      try {
        return await tcpQuery(server, name, type, timeoutMs, port);
      } catch (e) {
        if ((e as { code?: string }).code !== 'EADDRINUSE') throw e;
      }
    }
    throw new QueryError('network', `every TCP source port ${first}-${last} is in use`);
  }

  query: QueryFn = async (server, name, type, timeoutMs) => {
    const p = await this.udp(server, name, type, timeoutMs);
    if ((p.flags ?? 0) & packet.TRUNCATED_RESPONSE) return toResult(await this.tcp(server, name, type, timeoutMs));
    return toResult(p);
  };

  close(): void {
    for (const w of this.waiting.values()) clearTimeout(w.timer);
    this.waiting.clear();
    for (const s of [...this.socks[4], ...this.socks[6]]) s.close();
  }
}
