/**
 * DNS wire format for the gate's hot path. Pure. Only what a forwarder that
 * answers A/AAAA needs: the header and the one question of a query, and
 * responses built around the query's own question bytes (so the client's
 * case and encoding come back verbatim). Upstream traffic uses dns-packet
 * (src/system/dns-client.ts); here a hand-written parser/encoder keeps a
 * cached answer to a few microseconds (dns-packet decode + encode costs
 * several times that per query; see scripts/bench/gate.ts).
 */
import ipaddr from 'ipaddr.js';
import { parseIp } from '../net/ip.js';

export const TYPE = { A: 1, AAAA: 28, OPT: 41 } as const;
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export type Rcode = keyof typeof RCODE;

const TYPE_NAMES: Record<number, string> = { 1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV', 64: 'SVCB', 65: 'HTTPS', 255: 'ANY' };
export const typeName = (t: number): string => TYPE_NAMES[t] ?? `TYPE${t}`;

const FLAG_QR = 0x8000;
const FLAG_TC = 0x0200;
const FLAG_RD = 0x0100;
const FLAG_RA = 0x0080;

export interface Query {
  id: number;
  /** RD as asked (copied into the response) */
  rd: boolean;
  /** lowercase, no trailing dot; '' for the root */
  name: string;
  /** a label holds a byte outside letters, digits, "-" and "_" (such a name can never be allowed) */
  oddName: boolean;
  qtype: number;
  qclass: number;
  /** end offset of the question section: bytes 12..questionEnd are echoed */
  questionEnd: number;
  /** the query carried an EDNS OPT record with this UDP payload size */
  ednsUdp: number | null;
}

export type ParseResult = { ok: true; q: Query } | { ok: false; rcode: Rcode; id: number | null; questionEnd: number | null };

// [A-Za-z0-9_-]
const OK_BYTE = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  const ch = String.fromCharCode(c);
  OK_BYTE[c] = /[A-Za-z0-9_-]/.test(ch) ? 1 : 0;
}

/** a name is at most 255 bytes on the wire (checked while reading it) */
const NAME = Buffer.alloc(320);

/** Parse a query (header, exactly one question, an optional OPT record right after it). */
export function parseQuery(buf: Buffer): ParseResult {
  if (buf.length < 12) return { ok: false, rcode: 'FORMERR', id: null, questionEnd: null };
  const id = buf.readUInt16BE(0);
  const flags = buf.readUInt16BE(2);
  if (flags & FLAG_QR) return { ok: false, rcode: 'FORMERR', id: null, questionEnd: null }; // a response: never answer it
  const fail = (rcode: Rcode, questionEnd: number | null = null): ParseResult => ({ ok: false, rcode, id, questionEnd });
  if (((flags >> 11) & 0xf) !== 0) return fail('NOTIMP');
  if (buf.readUInt16BE(4) !== 1) return fail('FORMERR');
  let off = 12;
  let odd = false;
  // the name, lowercased (ASCII) with dots, in one pass into a scratch buffer: one string per query
  let n = 0;
  for (;;) {
    if (off >= buf.length) return fail('FORMERR');
    const len = buf[off]!;
    if (len === 0) {
      off++;
      break;
    }
    if (len > 63) return fail('FORMERR'); // compression pointers have no place in a question
    if (off + 1 + len > buf.length) return fail('FORMERR');
    if (n) NAME[n++] = 0x2e;
    for (let i = off + 1; i <= off + len; i++) {
      const c = buf[i]!;
      if (!OK_BYTE[c]) odd = true;
      NAME[n++] = c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
    }
    off += 1 + len;
    if (off - 12 > 255) return fail('FORMERR');
  }
  // bytes outside [A-Za-z0-9_-]: lowercased as latin1 text, as such a name is logged (it is never allowed)
  const name = odd ? NAME.toString('latin1', 0, n).toLowerCase() : NAME.toString('latin1', 0, n);
  if (off + 4 > buf.length) return fail('FORMERR');
  const qtype = buf.readUInt16BE(off);
  const qclass = buf.readUInt16BE(off + 2);
  const questionEnd = off + 4;
  let ednsUdp: number | null = null;
  // OPT: root name, type 41, class = UDP payload size. Only looked for right after the question.
  if (buf.readUInt16BE(6) === 0 && buf.readUInt16BE(8) === 0 && buf.readUInt16BE(10) >= 1 && questionEnd + 11 <= buf.length) {
    if (buf[questionEnd] === 0 && buf.readUInt16BE(questionEnd + 1) === TYPE.OPT) ednsUdp = buf.readUInt16BE(questionEnd + 3);
  }
  return { ok: true, q: { id, rd: (flags & FLAG_RD) !== 0, name, oddName: odd, qtype, qclass, questionEnd, ednsUdp } };
}

export interface WireRecord {
  type: number;
  rdata: Buffer;
}

/** A or AAAA rdata for an address text; null when it is neither. */
export function addressRdata(ip: string): WireRecord | null {
  const p = parseIp(ip);
  if (!p) return null;
  return { type: p.family === 4 ? TYPE.A : TYPE.AAAA, rdata: Buffer.from(ipaddr.parse(p.text).toByteArray()) };
}

/** EDNS payload we advertise and honour at most (the DNS flag day 2020 value: no IP fragmentation). */
export const EDNS_UDP = 1232;

/**
 * Answer records as they go on the wire, TTL 0: each one names the question
 * (pointer to offset 12). A cache entry keeps this block and only the TTLs are
 * written per answer (respondBlock), so a hit encodes nothing. The bytes are
 * kept as latin1 text (one byte a character): a short string costs a tenth of
 * a small Buffer's objects and backing store (20,000 cached answers: 4.7 MiB).
 */
export function answerBlock(records: readonly WireRecord[]): string {
  let size = 0;
  for (const r of records) size += 12 + r.rdata.length;
  const out = Buffer.alloc(size);
  let off = 0;
  for (const r of records) {
    out.writeUInt16BE(0xc00c, off);
    out.writeUInt16BE(r.type, off + 2);
    out.writeUInt16BE(1, off + 4);
    out.writeUInt16BE(r.rdata.length, off + 10);
    r.rdata.copy(out, off + 12);
    off += 12 + r.rdata.length;
  }
  return out.toString('latin1');
}

const EMPTY = '';

/**
 * A response to `query` (its question bytes echoed): records answer the
 * question's name (pointer to offset 12) with one TTL. Over UDP an answer
 * larger than the client accepts is sent empty with TC set (the client
 * retries over TCP).
 */
export function buildResponse(query: Buffer, q: Pick<Query, 'id' | 'rd' | 'questionEnd' | 'ednsUdp'>, rcode: Rcode, records: readonly WireRecord[], ttl: number, udp: boolean): Buffer {
  return respondBlock(query, q, rcode, records.length ? answerBlock(records) : EMPTY, records.length, ttl, udp);
}

/** buildResponse from an answerBlock of `count` records (the cached path): header, question, records with `ttl`, OPT. */
export function respondBlock(query: Buffer, q: Pick<Query, 'id' | 'rd' | 'questionEnd' | 'ednsUdp'>, rcode: Rcode, block: string, count: number, ttl: number, udp: boolean): Buffer {
  const opt = q.ednsUdp !== null ? 11 : 0;
  let size = q.questionEnd + block.length + opt;
  const limit = q.ednsUdp !== null ? Math.max(512, Math.min(q.ednsUdp, EDNS_UDP)) : 512;
  const truncate = udp && size > limit;
  if (truncate) {
    size = q.questionEnd + opt;
    count = 0;
  }
  const out = Buffer.allocUnsafe(size);
  out.writeUInt16BE(q.id, 0);
  out.writeUInt16BE(FLAG_QR | (truncate ? FLAG_TC : 0) | (q.rd ? FLAG_RD : 0) | FLAG_RA | RCODE[rcode], 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(count, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(opt ? 1 : 0, 10);
  query.copy(out, 12, 12, q.questionEnd);
  let off = q.questionEnd;
  if (count) {
    out.write(block, off, 'latin1');
    const t = Math.max(0, Math.min(0x7fffffff, Math.floor(ttl)));
    const end = off + block.length;
    while (off < end) {
      out.writeUInt32BE(t, off + 6);
      off += 12 + out.readUInt16BE(off + 10);
    }
  }
  if (opt) {
    out[off] = 0;
    out.writeUInt16BE(TYPE.OPT, off + 1);
    out.writeUInt16BE(EDNS_UDP, off + 3);
    out.writeUInt32BE(0, off + 5);
    out.writeUInt16BE(0, off + 9);
  }
  return out;
}

/** An error response: the question echoed when it could be read, else the bare header. */
export function buildError(query: Buffer, id: number, questionEnd: number | null, rcode: Rcode): Buffer {
  const rd = query.length >= 4 && (query.readUInt16BE(2) & FLAG_RD) !== 0;
  if (questionEnd !== null) return buildResponse(query, { id, rd, questionEnd, ednsUdp: null }, rcode, [], 0, false);
  const out = Buffer.alloc(12);
  out.writeUInt16BE(id, 0);
  out.writeUInt16BE(FLAG_QR | (rd ? FLAG_RD : 0) | FLAG_RA | RCODE[rcode], 2);
  return out;
}
