import dgram from 'node:dgram';
import net from 'node:net';
import * as packet from 'dns-packet';

export interface Question {
  name: string;
  type: string;
  transport: 'udp' | 'tcp';
}

/** What the fake server does with one question. */
export type Reply =
  | { rcode?: string; answers?: packet.Answer[]; truncate?: boolean }
  | 'drop' // never answer (timeout)
  | 'garbage' // bytes that are not a DNS message
  | 'wrong-id'; // a well-formed answer to another query id

export type Handler = (q: Question) => Reply;

/** An in-process DNS server on 127.0.0.1 (UDP and TCP, same port) for resolver tests. */
export class FakeDns {
  readonly log: Question[] = [];
  private udp = dgram.createSocket('udp4');
  private tcp = net.createServer();
  port = 0;

  constructor(public handler: Handler) {}

  async start(): Promise<this> {
    // Bind TCP first on a free port, then UDP on the same number.
    await new Promise<void>((r) => this.tcp.listen(0, '127.0.0.1', r));
    this.port = (this.tcp.address() as net.AddressInfo).port;
    await new Promise<void>((r, j) => {
      this.udp.once('error', j);
      this.udp.bind(this.port, '127.0.0.1', () => r());
    });
    this.udp.on('message', (msg, rinfo) => {
      const res = this.answer(msg, 'udp');
      if (res) this.udp.send(res, rinfo.port, rinfo.address);
    });
    this.tcp.on('connection', (sock) => {
      let buf = Buffer.alloc(0);
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
        const res = this.answer(buf.subarray(2, 2 + buf.readUInt16BE(0)), 'tcp');
        if (!res) return;
        const len = Buffer.alloc(2);
        len.writeUInt16BE(res.length);
        sock.end(Buffer.concat([len, res]));
      });
      sock.on('error', () => {});
    });
    return this;
  }

  private answer(msg: Buffer, transport: 'udp' | 'tcp'): Buffer | null {
    const q = packet.decode(msg);
    const question = q.questions![0]!;
    const asked: Question = { name: question.name, type: question.type, transport };
    this.log.push(asked);
    const reply = this.handler(asked);
    if (reply === 'drop') return null;
    if (reply === 'garbage') return Buffer.from([0xde, 0xad, 0xbe, 0xef, 1, 2, 3]);
    const id = reply === 'wrong-id' ? (q.id! + 1) % 65536 : q.id;
    const r = reply === 'wrong-id' ? {} : reply;
    const truncated = transport === 'udp' && r.truncate === true;
    return packet.encode({
      type: 'response',
      id,
      flags: packet.RECURSION_DESIRED | packet.RECURSION_AVAILABLE | (truncated ? packet.TRUNCATED_RESPONSE : 0) | rcodeFlag(r.rcode ?? 'NOERROR'),
      questions: q.questions,
      answers: truncated ? [] : (r.answers ?? []),
    });
  }

  async stop(): Promise<void> {
    this.udp.close();
    await new Promise<void>((r) => this.tcp.close(() => r()));
  }
}

function rcodeFlag(rcode: string): number {
  return { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 }[rcode] ?? 0;
}

export const A = (name: string, data: string, ttl = 300): packet.Answer => ({ type: 'A', name, data, ttl, class: 'IN' });
export const AAAA = (name: string, data: string, ttl = 300): packet.Answer => ({ type: 'AAAA', name, data, ttl, class: 'IN' });
export const CNAME = (name: string, data: string, ttl = 300): packet.Answer => ({ type: 'CNAME', name, data, ttl, class: 'IN' });

/** A zone as a table: name -> records; names not in it get NXDOMAIN. */
export function zone(records: Record<string, packet.Answer[]>): Handler {
  return (q) => {
    const recs = records[q.name.toLowerCase()];
    if (!recs) return { rcode: 'NXDOMAIN' };
    return { answers: recs.filter((r) => r.type === q.type || r.type === 'CNAME') };
  };
}
