import dgram from 'node:dgram';
import net from 'node:net';
import * as packet from 'dns-packet';

export interface Question {
  name: string;
  type: string;
  transport: 'udp' | 'tcp';
}

/** A datagram the fake server sends to the client before (or instead of) its answer, over UDP. */
export type Stray =
  | 'garbage' // bytes that are not a DNS message
  | 'wrong-id' // a well-formed answer to another query id
  | 'wrong-question' // the right id, another question name
  | { spoofed: packet.Answer[] }; // the right id and question, sent from 127.0.0.2 (same port): an off-path forger

/** What the fake server does with one question. */
export type Reply =
  | {
      rcode?: string;
      answers?: packet.Answer[];
      truncate?: boolean;
      /** UDP only: datagrams sent first, then the answer (after a short pause, so they arrive first) */
      before?: Stray[];
      /** send only `before`, never the answer */
      drop?: boolean;
      /** replaces the encoded answer: gets it (right id and question) and returns the bytes to send */
      mangle?: (encoded: Buffer) => Buffer;
    }
  | 'drop' // never answer (timeout)
  | 'garbage' // bytes that are not a DNS message
  | 'wrong-id'; // a well-formed answer to another query id

export type Handler = (q: Question) => Reply;

/**
 * An in-process DNS server on 127.0.0.1 (UDP and TCP, same port) for resolver
 * tests, plus a UDP socket on 127.0.0.2 with the same port that sends spoofed
 * answers (right port and id, wrong source address).
 */
export class FakeDns {
  readonly log: Question[] = [];
  private udp = dgram.createSocket('udp4');
  private spoof = dgram.createSocket('udp4');
  private tcp = net.createServer();
  private timers = new Set<NodeJS.Timeout>();
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
    await new Promise<void>((r, j) => {
      this.spoof.once('error', j);
      this.spoof.bind(this.port, '127.0.0.2', () => r());
    });
    this.udp.on('message', (msg, rinfo) => {
      const { strays, answer } = this.answerUdp(msg);
      for (const s of strays) (s.spoofed ? this.spoof : this.udp).send(s.bytes, rinfo.port, rinfo.address);
      if (!answer) return;
      // A pause after strays, so they are all in the client's queue before the answer.
      if (strays.length === 0) this.udp.send(answer, rinfo.port, rinfo.address);
      else this.later(20, () => this.udp.send(answer, rinfo.port, rinfo.address));
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

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private answerUdp(msg: Buffer): { strays: { bytes: Buffer; spoofed: boolean }[]; answer: Buffer | null } {
    const q = packet.decode(msg);
    const reply = this.ask(q, 'udp');
    const before = typeof reply === 'object' ? (reply.before ?? []) : [];
    const strays = before.map((s) =>
      typeof s === 'object'
        ? { bytes: encodeAnswer(q, q.id!, { answers: s.spoofed }, false), spoofed: true }
        : { bytes: strayBytes(q, s), spoofed: false },
    );
    return { strays, answer: this.encode(q, reply, 'udp') };
  }

  private answer(msg: Buffer, transport: 'tcp'): Buffer | null {
    const q = packet.decode(msg);
    return this.encode(q, this.ask(q, transport), transport);
  }

  private ask(q: packet.Packet, transport: 'udp' | 'tcp'): Reply {
    const question = q.questions![0]!;
    const asked: Question = { name: question.name, type: question.type, transport };
    this.log.push(asked);
    return this.handler(asked);
  }

  private encode(q: packet.Packet, reply: Reply, transport: 'udp' | 'tcp'): Buffer | null {
    if (reply === 'drop') return null;
    if (reply === 'garbage' || reply === 'wrong-id') return strayBytes(q, reply);
    if (reply.drop) return null;
    const bytes = encodeAnswer(q, q.id!, reply, transport === 'udp' && reply.truncate === true);
    return reply.mangle ? reply.mangle(bytes) : bytes;
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.udp.close();
    this.spoof.close();
    await new Promise<void>((r) => this.tcp.close(() => r()));
  }
}

function encodeAnswer(q: packet.Packet, id: number, r: { rcode?: string; answers?: packet.Answer[] }, truncated: boolean): Buffer {
  return packet.encode({
    type: 'response',
    id,
    flags: packet.RECURSION_DESIRED | packet.RECURSION_AVAILABLE | (truncated ? packet.TRUNCATED_RESPONSE : 0) | rcodeFlag(r.rcode ?? 'NOERROR'),
    questions: q.questions,
    answers: truncated ? [] : (r.answers ?? []),
  });
}

function strayBytes(q: packet.Packet, s: 'garbage' | 'wrong-id' | 'wrong-question'): Buffer {
  if (s === 'garbage') return Buffer.from([0xde, 0xad, 0xbe, 0xef, 1, 2, 3]);
  if (s === 'wrong-id') return encodeAnswer(q, (q.id! + 1) % 65536, { answers: [A(q.questions![0]!.name, '203.0.113.66')] }, false);
  const other = [{ ...q.questions![0]!, name: `other.${q.questions![0]!.name}` }];
  return encodeAnswer({ ...q, questions: other }, q.id!, { answers: [A(other[0]!.name, '203.0.113.66')] }, false);
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
