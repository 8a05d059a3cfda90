import dgram from 'node:dgram';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import * as packet from 'dns-packet';

export type RecordType = 'A' | 'AAAA';

export interface Answer {
  name: string;
  type: string;
  ttl: number;
  data: string;
}

export interface QueryResult {
  rcode: 'NOERROR' | 'NXDOMAIN' | 'SERVFAIL' | 'REFUSED' | string;
  answers: Answer[];
}

export type QueryFailure = 'timeout' | 'malformed' | 'network';

export class QueryError extends Error {
  constructor(
    readonly kind: QueryFailure,
    message: string,
  ) {
    super(message);
  }
}

export interface Server {
  host: string;
  port: number;
}

/** One question to one server: UDP first, TCP when the answer is truncated. */
export type QueryFn = (server: Server, name: string, type: RecordType, timeoutMs: number) => Promise<QueryResult>;

function buildQuery(id: number, name: string, type: RecordType): Buffer {
  return packet.encode({ type: 'query', id, flags: packet.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }] });
}

const lower = (s: string) => s.toLowerCase().replace(/\.$/, '');

/** Decode and check that the answer belongs to our question (id, name, type). */
function decodeAnswer(buf: Buffer, id: number, name: string, type: RecordType): packet.Packet {
  let p: packet.Packet;
  try {
    p = packet.decode(buf);
  } catch (e) {
    throw new QueryError('malformed', `malformed answer: ${(e as Error).message}`);
  }
  const q = p.questions?.[0];
  if (p.type !== 'response' || p.id !== id || !q || lower(q.name) !== lower(name) || q.type !== type) {
    throw new QueryError('malformed', 'answer does not match the question (id, name or type)');
  }
  return p;
}

function toResult(p: packet.Packet): QueryResult {
  const answers: Answer[] = [];
  for (const a of p.answers ?? []) {
    if (a.type === 'A' || a.type === 'AAAA' || a.type === 'CNAME') {
      if (typeof a.data !== 'string') throw new QueryError('malformed', `malformed ${a.type} record`);
      answers.push({ name: lower(a.name), type: a.type, ttl: a.ttl ?? 0, data: a.data });
    }
  }
  // dns-packet decodes rcode as a string, but its types omit it.
  return { rcode: (p as { rcode?: string }).rcode ?? 'NOERROR', answers };
}

function udpQuery(server: Server, name: string, type: RecordType, timeoutMs: number): Promise<packet.Packet> {
  const id = randomInt(0, 0x10000);
  const msg = buildQuery(id, name, type);
  const socket = dgram.createSocket(net.isIPv6(server.host) ? 'udp6' : 'udp4');
  return new Promise<packet.Packet>((resolve, reject) => {
    const done = (err: Error | null, p?: packet.Packet) => {
      clearTimeout(timer);
      socket.close();
      if (err) reject(err);
      else resolve(p!);
    };
    const timer = setTimeout(() => done(new QueryError('timeout', `no answer within ${timeoutMs} ms`)), timeoutMs);
    socket.on('error', (e) => done(new QueryError('network', e.message)));
    socket.on('message', (buf, rinfo) => {
      // Ignore stray datagrams (spoofing, late answers); wait for ours until the timeout.
      if (rinfo.port !== server.port) return;
      try {
        done(null, decodeAnswer(buf, id, name, type));
      } catch (e) {
        if (e instanceof QueryError && e.message.startsWith('answer does not match')) return;
        done(e as Error);
      }
    });
    socket.send(msg, server.port, server.host);
  });
}

function tcpQuery(server: Server, name: string, type: RecordType, timeoutMs: number): Promise<packet.Packet> {
  const id = randomInt(0, 0x10000);
  const msg = packet.streamEncode({
    type: 'query',
    id,
    flags: packet.RECURSION_DESIRED,
    questions: [{ type, name, class: 'IN' }],
  });
  return new Promise<packet.Packet>((resolve, reject) => {
    const sock = net.connect({ host: server.host, port: server.port });
    let buf = Buffer.alloc(0);
    const done = (err: Error | null, p?: packet.Packet) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(p!);
    };
    const timer = setTimeout(() => done(new QueryError('timeout', `no TCP answer within ${timeoutMs} ms`)), timeoutMs);
    sock.on('connect', () => sock.write(msg));
    sock.on('error', (e) => done(new QueryError('network', e.message)));
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 2) return;
      const len = buf.readUInt16BE(0);
      if (buf.length < 2 + len) return;
      try {
        done(null, decodeAnswer(buf.subarray(2, 2 + len), id, name, type));
      } catch (e) {
        done(e as Error);
      }
    });
    sock.on('end', () => done(new QueryError('malformed', 'TCP connection closed before a full answer')));
  });
}

/** The real QueryFn: UDP, then TCP if the server set the truncation (TC) flag. */
export const query: QueryFn = async (server, name, type, timeoutMs) => {
  const p = await udpQuery(server, name, type, timeoutMs);
  if ((p.flags ?? 0) & packet.TRUNCATED_RESPONSE) return toResult(await tcpQuery(server, name, type, timeoutMs));
  return toResult(p);
};
