import dgram from 'node:dgram';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import * as packet from 'dns-packet';
import { parseIp } from '../net/ip.js';
import { QueryError, type Answer, type QueryFn, type QueryResult, type RecordType, type Server } from '../resolve/query.js';

export function buildQuery(id: number, name: string, type: RecordType): Buffer {
  return packet.encode({ type: 'query', id, flags: packet.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }] });
}

const lower = (s: string) => s.toLowerCase().replace(/\.$/, '');

/** Decode; null when the bytes are not a DNS message. */
export function tryDecode(buf: Buffer): packet.Packet | null {
  try {
    return packet.decode(buf);
  } catch {
    return null;
  }
}

/** Does this message answer our question (response, id, one question with our name, type and class)? */
export function matches(p: packet.Packet, id: number, name: string, type: RecordType): boolean {
  const q = p.questions?.[0];
  return p.type === 'response' && p.id === id && p.questions?.length === 1 && !!q && lower(q.name) === lower(name) && q.type === type && (q.class ?? 'IN') === 'IN';
}

/** TCP: the connection is the server's, so a bad message is the server's answer: fail at once. */
function decodeAnswer(buf: Buffer, id: number, name: string, type: RecordType): packet.Packet {
  const p = tryDecode(buf);
  if (!p) throw new QueryError('malformed', 'malformed answer (not a DNS message)');
  if (!matches(p, id, name, type)) throw new QueryError('malformed', 'answer does not match the question (id, name or type)');
  return p;
}

export function toResult(p: packet.Packet): QueryResult {
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

/**
 * UDP: anyone can send us a datagram. The socket is connected to the server, so
 * the kernel drops datagrams from any other address or port, and the source is
 * checked again here. Datagrams that do not decode or do not match our question
 * are ignored until the timeout: one stray packet must not abort the lookup, and
 * a forged one must not be taken.
 */
function udpQuery(server: Server, name: string, type: RecordType, timeoutMs: number): Promise<packet.Packet> {
  const id = randomInt(0, 0x10000);
  const msg = buildQuery(id, name, type);
  const serverIp = parseIp(server.host)?.text ?? server.host;
  const socket = dgram.createSocket(net.isIPv6(server.host) ? 'udp6' : 'udp4');
  let garbage = 0;
  let mismatched = 0;
  return new Promise<packet.Packet>((resolve, reject) => {
    let finished = false;
    const done = (err: Error | null, p?: packet.Packet) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.close();
      if (err) reject(err);
      else resolve(p!);
    };
    const timer = setTimeout(() => {
      const ignored = garbage + mismatched;
      const note = ignored ? `; ignored ${ignored} datagram${ignored === 1 ? '' : 's'} that ${garbage ? 'did not decode' : ''}${garbage && mismatched ? ' or ' : ''}${mismatched ? 'did not match the question' : ''}` : '';
      // Only undecodable bytes from the server: say so (a broken server, not a silent one).
      done(new QueryError(garbage ? 'malformed' : 'timeout', `no answer within ${timeoutMs} ms${note}`));
    }, timeoutMs);
    socket.on('error', (e) => done(new QueryError('network', e.message)));
    socket.on('message', (buf, rinfo) => {
      if (rinfo.port !== server.port || (parseIp(rinfo.address)?.text ?? rinfo.address) !== serverIp) return;
      const p = tryDecode(buf);
      if (!p) garbage++;
      else if (!matches(p, id, name, type)) mismatched++;
      else done(null, p);
    });
    socket.connect(server.port, server.host, () => {
      if (!finished) socket.send(msg);
    });
  });
}

/** localPort: the gate's upstream queries leave from its reserved ports (src/system/upstream-pool.ts). */
export function tcpQuery(server: Server, name: string, type: RecordType, timeoutMs: number, localPort?: number): Promise<packet.Packet> {
  const id = randomInt(0, 0x10000);
  const msg = packet.streamEncode({
    type: 'query',
    id,
    flags: packet.RECURSION_DESIRED,
    questions: [{ type, name, class: 'IN' }],
  });
  return new Promise<packet.Packet>((resolve, reject) => {
    const sock = net.connect({ host: server.host, port: server.port, ...(localPort ? { localPort } : {}) });
    let buf = Buffer.alloc(0);
    const done = (err: Error | null, p?: packet.Packet) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(p!);
    };
    const timer = setTimeout(() => done(new QueryError('timeout', `no TCP answer within ${timeoutMs} ms`)), timeoutMs);
    sock.on('connect', () => sock.write(msg));
    sock.on('error', (e) => done(Object.assign(new QueryError('network', e.message), { code: (e as NodeJS.ErrnoException).code })));
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
