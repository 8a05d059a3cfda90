import * as packet from 'dns-packet';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { Gate, NEGATIVE_TTL, type AdmitEntry, type GateDeps, type QueryEvent, type UpstreamResult } from '../../src/gate/gate.js';
import { GatePolicy } from '../../src/gate/policy.js';
import { parseQuery } from '../../src/gate/wire.js';
import { GateShare } from '../../src/gate/share.js';
import { GateStats, mergeSnapshots } from '../../src/gate/stats.js';

const q = (name: string, type: packet.RecordType = 'A', opts: { id?: number; edns?: boolean; flags?: number } = {}) =>
  packet.encode({
    type: 'query',
    id: opts.id ?? 4242,
    flags: opts.flags ?? packet.RECURSION_DESIRED,
    questions: [{ name, type, class: 'IN' }],
    ...(opts.edns ? { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] } as unknown as packet.Answer] } : {}),
  });
type Rec = { name: string; type: string; data: string; ttl: number };
const answersOf = (b: Buffer) => (packet.decode(b).answers ?? []) as unknown as Rec[];
const rcodeOf = (b: Buffer) => (packet.decode(b) as { rcode?: string }).rcode;

const config = (extra = '') =>
  parseConfig(
    `allow:
  - domain: api.example.com
    ports: [443]
  - domain: "*.cdn.example.net"
    ports: [443, 80]
  - domain: www.cdn.example.net
    ports: ["8443/tcp"]
  - domain: private.example.com
    allowPrivate: true
dns:
  minTtl: 30s
  maxTtl: 1h
  gate:
    enabled: true
staleGrace: 5m
${extra}`,
    't.yml',
  );

interface Harness {
  gate: Gate;
  asked: string[];
  admitted: AdmitEntry[][];
  /** what reloads took out of the kernel */
  removed: AdmitEntry[][];
  events: QueryEvent[];
  clock: { now: number };
  answers: Map<string, UpstreamResult>;
  admitFails: { on: boolean };
  run(buf: Buffer, transport?: 'udp' | 'tcp'): Promise<Buffer>;
}

function harness(cacheSize = 100): Harness {
  const c = config();
  const clock = { now: 1_700_000_000_000 };
  const asked: string[] = [];
  const admitted: AdmitEntry[][] = [];
  const removed: AdmitEntry[][] = [];
  const events: QueryEvent[] = [];
  const answers = new Map<string, UpstreamResult>();
  const admitFails = { on: false };
  const order: string[] = [];
  const deps: GateDeps = {
    upstream: async (name, family) => {
      asked.push(`${name}/${family}`);
      order.push('upstream');
      return answers.get(`${name}/${family}`) ?? { ok: false, kind: 'nxdomain', detail: 'no such domain' };
    },
    admit: async (entries) => {
      order.push('admit');
      if (admitFails.on) throw new Error('nft: No such file or directory');
      admitted.push(entries);
    },
    remove: async (entries) => {
      removed.push(entries);
    },
    nowMs: () => clock.now,
    onQuery: (e) => events.push(e),
  };
  const gate = new Gate(new GatePolicy(c.domains, c.wildcards), { minTtl: c.dns.minTtl, maxTtl: c.dns.maxTtl, staleGrace: c.staleGrace, ipv6: c.ipv6, cacheSize }, deps);
  return {
    gate,
    asked,
    admitted,
    removed,
    events,
    clock,
    answers,
    admitFails,
    run: async (buf, transport = 'udp') => {
      const r = await gate.handle(buf, '198.51.100.66', transport);
      if (!r) throw new Error('no response');
      return r;
    },
  };
}

describe('gate policy', () => {
  it('matches exact names and any depth below a wildcard zone, never the zone itself; ports are united', () => {
    const c = config();
    const p = new GatePolicy(c.domains, c.wildcards);
    expect(p.match('api.example.com')?.ports).toEqual([{ port: 443, proto: 'tcp' }]);
    expect(p.match('x.api.example.com')).toBeNull();
    expect(p.match('example.com')).toBeNull();
    expect(p.match('cdn.example.net')).toBeNull();
    expect(p.match('a.cdn.example.net')?.rules).toEqual(['*.cdn.example.net']);
    expect(p.match('a.b.c.cdn.example.net')?.rules).toEqual(['*.cdn.example.net']);
    expect(p.match('xcdn.example.net')).toBeNull();
    expect(p.match('www.cdn.example.net')).toEqual({
      rules: ['*.cdn.example.net', 'www.cdn.example.net'],
      ports: [{ port: 80, proto: 'tcp' }, { port: 443, proto: 'tcp' }, { port: 8443, proto: 'tcp' }],
      allowPrivate: false,
    });
  });
});

describe('gate wire format', () => {
  it('reads the question as sent (lowercased name), and marks bytes no allowed name can hold', () => {
    const p = parseQuery(q('API.Example.COM', 'AAAA', { id: 7 }));
    expect(p).toMatchObject({ ok: true, q: { id: 7, name: 'api.example.com', qtype: 28, qclass: 1, oddName: false, ednsUdp: null } });
    // a label that contains a dot must not pass as two labels
    const dotted = Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 15, ...Buffer.from('api.example.com'), 0, 0, 1, 0, 1]);
    expect(parseQuery(dotted)).toMatchObject({ ok: true, q: { oddName: true } });
    expect(parseQuery(q('a.example.com', 'A', { edns: true }))).toMatchObject({ ok: true, q: { ednsUdp: 4096 } });
  });

  it('refuses to parse responses, other opcodes and broken questions', () => {
    expect(parseQuery(Buffer.from([1, 2]))).toMatchObject({ ok: false, id: null });
    const resp = Buffer.from(q('a.example.com'));
    resp[2]! |= 0x80;
    expect(parseQuery(resp)).toMatchObject({ ok: false, id: null });
    const notify = Buffer.from(q('a.example.com'));
    notify[2] = (4 << 3) | 1;
    expect(parseQuery(notify)).toMatchObject({ ok: false, rcode: 'NOTIMP', id: 4242 });
    expect(parseQuery(q('a.example.com').subarray(0, 20))).toMatchObject({ ok: false, rcode: 'FORMERR' });
  });
});

describe('gate', () => {
  it('refuses an unlisted name without asking upstream, and logs it', async () => {
    const h = harness();
    const res = await h.run(q('secret-data.attacker.example'));
    const d = packet.decode(res);
    expect(rcodeOf(res)).toBe('REFUSED');
    expect(d.id).toBe(4242);
    expect(d.questions?.[0]?.name).toBe('secret-data.attacker.example');
    expect(h.asked).toEqual([]);
    expect(h.admitted).toEqual([]);
    expect(h.events).toMatchObject([{ client: '198.51.100.66', name: 'secret-data.attacker.example', type: 'A', verdict: 'refused', rcode: 'REFUSED', ips: [] }]);
  });

  it('an allowed answer is in the kernel (for its ports, T = max(TTL, minTtl) + staleGrace) before it is released', async () => {
    const h = harness();
    h.answers.set('a.cdn.example.net/4', { ok: true, addresses: [{ ip: '203.0.113.7', ttl: 10 }, { ip: '203.0.113.8', ttl: 20 }], refused: [] });
    let released = false;
    const admitSeen: boolean[] = [];
    const orig = (h.gate as unknown as { deps: GateDeps }).deps.admit;
    (h.gate as unknown as { deps: GateDeps }).deps.admit = async (e) => {
      admitSeen.push(released);
      return orig(e);
    };
    const res = await h.run(q('A.cdn.example.net'));
    released = true;
    expect(admitSeen).toEqual([false]);
    const d = packet.decode(res);
    expect(rcodeOf(res)).toBe('NOERROR');
    expect(d.questions?.[0]?.name).toBe('A.cdn.example.net'); // the client's case comes back
    expect(answersOf(res).map((a) => [a.name, a.type, a.data, a.ttl])).toEqual([
      ['A.cdn.example.net', 'A', '203.0.113.7', 10],
      ['A.cdn.example.net', 'A', '203.0.113.8', 10],
    ]);
    // TTL 10 < minTtl 30: kernel keeps 30 + 300 s
    expect(h.admitted).toEqual([
      [
        { family: 4, ip: '203.0.113.7', proto: 'tcp', port: 80, timeoutSec: 330 },
        { family: 4, ip: '203.0.113.7', proto: 'tcp', port: 443, timeoutSec: 330 },
        { family: 4, ip: '203.0.113.8', proto: 'tcp', port: 80, timeoutSec: 330 },
        { family: 4, ip: '203.0.113.8', proto: 'tcp', port: 443, timeoutSec: 330 },
      ],
    ]);
    expect(h.events.at(-1)).toMatchObject({ verdict: 'allowed', ips: ['203.0.113.7', '203.0.113.8'], rules: ['*.cdn.example.net'], cached: false });
  });

  it('kernel insert fails: SERVFAIL, nothing cached (fail closed)', async () => {
    const h = harness();
    h.answers.set('api.example.com/4', { ok: true, addresses: [{ ip: '203.0.113.7', ttl: 60 }], refused: [] });
    h.admitFails.on = true;
    expect(rcodeOf(await h.run(q('api.example.com')))).toBe('SERVFAIL');
    expect(h.events.at(-1)).toMatchObject({ verdict: 'failed', detail: expect.stringMatching(/^kernel: /) });
    h.admitFails.on = false;
    expect(rcodeOf(await h.run(q('api.example.com')))).toBe('NOERROR');
    expect(h.asked).toEqual(['api.example.com/4', 'api.example.com/4']);
  });

  it('caches no longer than the TTL (lowered to maxTtl), counting the TTL down', async () => {
    const h = harness();
    h.answers.set('api.example.com/4', { ok: true, addresses: [{ ip: '203.0.113.7', ttl: 60 }], refused: [] });
    await h.run(q('api.example.com'));
    h.clock.now += 20_000;
    const second = answersOf(await h.run(q('api.example.com')));
    expect(second[0]?.ttl).toBe(40);
    expect(h.asked).toHaveLength(1);
    expect(h.events.at(-1)).toMatchObject({ cached: true });
    h.clock.now += 40_000;
    h.answers.set('api.example.com/4', { ok: true, addresses: [{ ip: '203.0.113.9', ttl: 60 }], refused: [] });
    const third = answersOf(await h.run(q('api.example.com')));
    expect(third.map((a) => a.data)).toEqual(['203.0.113.9']);
    expect(h.asked).toHaveLength(2);
  });

  it('a cache hit re-writes the kernel element once its promise would fall short, before answering', async () => {
    const h = harness();
    h.answers.set('api.example.com/4', { ok: true, addresses: [{ ip: '203.0.113.7', ttl: 3600 }], refused: [] });
    await h.run(q('api.example.com'));
    expect(h.admitted).toHaveLength(1);
    h.clock.now += 500;
    await h.run(q('api.example.com'));
    expect(h.admitted).toHaveLength(1); // within the slack: no write
    h.clock.now += 31_000;
    await h.run(q('api.example.com'));
    expect(h.admitted).toHaveLength(2);
    expect(h.admitted[1]![0]!.timeoutSec).toBe(Math.ceil(3600 - 31.5) + 300);
  });

  it('identical queries in flight share one upstream lookup and one kernel write', async () => {
    const h = harness();
    h.answers.set('api.example.com/4', { ok: true, addresses: [{ ip: '203.0.113.7', ttl: 60 }], refused: [] });
    const rs = await Promise.all([h.run(q('api.example.com', 'A', { id: 1 })), h.run(q('api.example.com', 'A', { id: 2 }))]);
    expect(rs.map((r) => packet.decode(r).id)).toEqual([1, 2]);
    expect(h.asked).toHaveLength(1);
    expect(h.admitted).toHaveLength(1);
  });

  it('NXDOMAIN and NODATA pass through and are kept briefly; upstream failure is SERVFAIL and not kept', async () => {
    const h = harness();
    expect(rcodeOf(await h.run(q('api.example.com', 'AAAA')))).toBe('NXDOMAIN');
    await h.run(q('api.example.com', 'AAAA'));
    expect(h.asked).toHaveLength(1);
    h.clock.now += NEGATIVE_TTL * 1000;
    h.answers.set('api.example.com/6', { ok: false, kind: 'timeout', detail: 'no answer' });
    expect(rcodeOf(await h.run(q('api.example.com', 'AAAA')))).toBe('SERVFAIL');
    expect(rcodeOf(await h.run(q('api.example.com', 'AAAA')))).toBe('SERVFAIL');
    expect(h.asked).toHaveLength(3);
  });

  it('answers other types of allowed names with NODATA, without upstream', async () => {
    const h = harness();
    const res = await h.run(q('api.example.com', 'TXT'));
    expect(rcodeOf(res)).toBe('NOERROR');
    expect(packet.decode(res).answers).toEqual([]);
    expect(h.asked).toEqual([]);
  });

  it('truncates a UDP answer that does not fit 512 bytes (no EDNS); TCP gets it whole; EDNS is echoed', async () => {
    const h = harness();
    const many = Array.from({ length: 40 }, (_, i) => ({ ip: `203.0.113.${i + 1}`, ttl: 60 }));
    h.answers.set('api.example.com/4', { ok: true, addresses: many, refused: [] });
    const udp = await h.run(q('api.example.com'));
    expect(udp.readUInt16BE(2) & 0x0200).toBe(0x0200);
    expect(packet.decode(udp).answers).toEqual([]);
    const tcp = packet.decode(await h.run(q('api.example.com'), 'tcp'));
    expect(tcp.answers).toHaveLength(40);
    const edns = packet.decode(await h.run(q('api.example.com', 'A', { edns: true })));
    expect(edns.answers).toHaveLength(40);
    expect(edns.additionals?.[0]).toMatchObject({ type: 'OPT', udpPayloadSize: 1232 });
  });

  it('never answers a response packet; answers an unknown opcode with NOTIMP', async () => {
    const h = harness();
    const resp = Buffer.from(q('api.example.com'));
    resp[2]! |= 0x80;
    expect(await h.gate.handle(resp, '198.51.100.66', 'udp')).toBeNull();
    const notify = Buffer.from(q('api.example.com'));
    notify[2] = (4 << 3) | 1;
    expect(rcodeOf(await h.run(notify))).toBe('NOTIMP');
  });

  it('a reload drops cached answers of names no longer allowed', async () => {
    const h = harness();
    h.answers.set('api.example.com/4', { ok: true, addresses: [{ ip: '203.0.113.7', ttl: 60 }], refused: [] });
    await h.run(q('api.example.com'));
    const c = parseConfig('allow: [{domain: other.example.com}]\ndns: {gate: {enabled: true}}\n', 'x.yml');
    h.gate.reload(new GatePolicy(c.domains, c.wildcards), { minTtl: 30, maxTtl: 3600, staleGrace: 300, ipv6: true, cacheSize: 100 });
    expect(rcodeOf(await h.run(q('api.example.com')))).toBe('REFUSED');
    expect(h.gate.cached).toBe(0);
  });

  describe('a reload takes out what no allowed name holds any more (the elements record only ip . proto . port)', () => {
    const opts = { minTtl: 30, maxTtl: 3600, staleGrace: 300, ipv6: true, cacheSize: 100 };
    const policyOf = (yml: string) => {
      const c = parseConfig(`allow:\n${yml}\ndns: {gate: {enabled: true}}\n`, 'x.yml');
      return new GatePolicy(c.domains, c.wildcards);
    };
    const elems = (l: AdmitEntry[][]) => l.flat().map((e) => `${e.ip} . ${e.proto} . ${e.port}`).sort();
    const answer = (h: Harness, name: string, ip: string) => h.answers.set(`${name}/4`, { ok: true, addresses: [{ ip, ttl: 60 }], refused: [] });

    it('a removed name: its elements go; an allowed name keeps its elements and its cached answer (no new upstream query)', async () => {
      const h = harness();
      answer(h, 'api.example.com', '203.0.113.7');
      answer(h, 'a.cdn.example.net', '203.0.113.30');
      await h.run(q('api.example.com'));
      await h.run(q('a.cdn.example.net'));
      const r = await h.gate.reload(policyOf('  - domain: "*.cdn.example.net"\n    ports: [443, 80]'), opts);
      expect(elems(h.removed)).toEqual(['203.0.113.7 . tcp . 443']);
      expect(r).toMatchObject({ cacheDropped: 1 });
      expect(rcodeOf(await h.run(q('api.example.com')))).toBe('REFUSED');
      expect(answersOf(await h.run(q('a.cdn.example.net'))).map((a) => a.data)).toEqual(['203.0.113.30']);
      expect(h.asked.filter((a) => a.startsWith('a.cdn'))).toHaveLength(1);
      // a second reload with the same config takes nothing more out
      await h.gate.reload(policyOf('  - domain: "*.cdn.example.net"\n    ports: [443, 80]'), opts);
      expect(h.removed).toHaveLength(1);
    });

    it('an address two names share stays while one of them is allowed; a port taken off an entry goes alone', async () => {
      const h = harness();
      answer(h, 'api.example.com', '203.0.113.7');
      answer(h, 'a.cdn.example.net', '203.0.113.7');
      await h.run(q('api.example.com'));
      await h.run(q('a.cdn.example.net'));
      // api.example.com removed, the wildcard keeps 443 only
      await h.gate.reload(policyOf('  - domain: "*.cdn.example.net"\n    ports: [443]'), opts);
      expect(elems(h.removed)).toEqual(['203.0.113.7 . tcp . 80']);
      // the wildcard's changed ports: its cached answer is fetched again, under the new ports
      await h.run(q('a.cdn.example.net'));
      expect(h.asked.filter((a) => a.startsWith('a.cdn'))).toHaveLength(2);
      expect(elems([h.admitted.at(-1)!])).toEqual(['203.0.113.7 . tcp . 443']);
    });

    it('an element whose names all expired, or written before this process started (no name on record), is left to time out', async () => {
      const h = harness();
      h.gate.ledger.seed([{ ip: '203.0.113.9', proto: 'tcp', port: 443, expiresInSec: 600 }], h.clock.now);
      answer(h, 'api.example.com', '203.0.113.7');
      await h.run(q('api.example.com'));
      h.clock.now += 400_000; // past max(60, minTtl 30) + staleGrace 300
      await h.gate.reload(policyOf('  - domain: other.example.com'), opts);
      expect(h.removed).toEqual([]);
    });

    it('a query in flight when the reload comes, for a name it removes: SERVFAIL, and what it admitted is taken out again', async () => {
      const h = harness();
      let release!: () => void;
      const upstream = new Promise<void>((r) => (release = r));
      const deps = (h.gate as unknown as { deps: GateDeps }).deps;
      const ask = deps.upstream;
      deps.upstream = async (...a) => {
        await upstream;
        return ask(...a);
      };
      answer(h, 'api.example.com', '203.0.113.7');
      const pending = h.run(q('api.example.com'));
      await h.gate.reload(policyOf('  - domain: other.example.com'), opts);
      release();
      expect(rcodeOf(await pending)).toBe('SERVFAIL');
      expect(elems(h.admitted)).toEqual(['203.0.113.7 . tcp . 443']);
      expect(elems(h.removed)).toEqual(['203.0.113.7 . tcp . 443']);
    });
  });

  it('a cached answer (the warm path, no re-encode): the asker\'s ID, RD and question bytes (case as sent), TTLs counted down by the injected clock, EDNS as asked', async () => {
    const h = harness();
    h.answers.set('api.example.com/4', { ok: true, addresses: [{ ip: '203.0.113.7', ttl: 600 }, { ip: '203.0.113.8', ttl: 300 }], refused: [] });
    await h.run(q('api.example.com', 'A', { id: 1 }));
    h.clock.now += 2_000; // past the once-a-second ledger check: hits after it are the warm path
    await h.run(q('api.example.com', 'A', { id: 2 }));
    h.clock.now += 100_500;
    const query = q('API.Example.COM', 'A', { id: 0xbeef, flags: 0, edns: true });
    const res = (await h.gate.handle(query, '198.51.100.66', 'udp')) as Buffer;
    expect(res).toBeInstanceOf(Buffer); // answered in the same turn
    const d = packet.decode(res);
    expect(d.id).toBe(0xbeef);
    expect(d.flags! & packet.RECURSION_DESIRED).toBe(0);
    expect(res.subarray(12, 12 + 17)).toEqual(query.subarray(12, 12 + 17)); // the question as the client wrote it
    // 300 s (the lowest TTL) less 102.5 s, rounded up
    expect(answersOf(res).map((a) => [a.name.toLowerCase(), a.data, a.ttl])).toEqual([['api.example.com', '203.0.113.7', 198], ['api.example.com', '203.0.113.8', 198]]);
    expect((d.additionals ?? []).map((a) => a.type)).toEqual(['OPT']);
    expect(h.asked).toEqual(['api.example.com/4']);
    expect(h.events.at(-1)).toMatchObject({ name: 'api.example.com', cached: true, verdict: 'allowed', ips: ['203.0.113.7', '203.0.113.8'], rules: ['api.example.com'] });
  });

  it('never answers from the cache a name the policy no longer allows, even one whose fetch was in flight across the reload', async () => {
    const h = harness();
    let release!: () => void;
    const gateOpen = new Promise<void>((r) => (release = r));
    h.answers.set('api.example.com/4', { ok: true, addresses: [{ ip: '203.0.113.7', ttl: 600 }], refused: [] });
    const up = (h.gate as unknown as { deps: GateDeps }).deps;
    const plain = up.upstream;
    up.upstream = async (...a) => {
      await gateOpen;
      return plain(...a);
    };
    const pending = h.run(q('api.example.com'));
    const c = parseConfig('allow: [{domain: other.example.com}]\ndns: {gate: {enabled: true}}\n', 'x.yml');
    await h.gate.reload(new GatePolicy(c.domains, c.wildcards), { minTtl: 30, maxTtl: 3600, staleGrace: 300, ipv6: true, cacheSize: 100 });
    release();
    expect(rcodeOf(await pending)).toBe('SERVFAIL'); // asked while allowed, answered after: not released (its IPs taken out again)
    expect(h.gate.cached).toBe(0); // and not kept
    h.clock.now += 2_000;
    expect(rcodeOf(await h.run(q('api.example.com')))).toBe('REFUSED');
  });

  it('keeps at most cacheSize answers, dropping the oldest', async () => {
    const h = harness(2);
    for (const n of ['a', 'b', 'c']) {
      h.answers.set(`${n}.cdn.example.net/4`, { ok: true, addresses: [{ ip: '203.0.113.7', ttl: 60 }], refused: [] });
      await h.run(q(`${n}.cdn.example.net`));
    }
    expect(h.gate.cached).toBe(2);
    await h.run(q('a.cdn.example.net'));
    expect(h.asked.filter((a) => a.startsWith('a.'))).toHaveLength(2);
  });
});

describe('gate under abuse (bounded)', () => {
  /** A gate whose upstream never answers until `release()`: every fetch stays in flight. */
  function silent(caps: { maxInflight: number; maxInflightPerClient: number }) {
    const c = config();
    const asked: string[] = [];
    const held: (() => void)[] = [];
    const events: QueryEvent[] = [];
    const gate = new Gate(new GatePolicy(c.domains, c.wildcards), { minTtl: 30, maxTtl: 3600, staleGrace: 300, ipv6: true, cacheSize: 100, ...caps }, {
      upstream: (name) => {
        asked.push(name);
        return new Promise<UpstreamResult>((resolve) => held.push(() => resolve({ ok: true, addresses: [{ ip: '203.0.113.9', ttl: 60 }], refused: [] })));
      },
      admit: async () => {},
      nowMs: () => 1_700_000_000_000,
      onQuery: (e) => events.push(e),
    });
    const release = async () => {
      for (const r of held.splice(0)) r();
      await new Promise((r) => setTimeout(r, 0));
    };
    return { gate, asked, events, release };
  }

  it('sheds a client over its in-flight share at once (SERVFAIL, nothing upstream), while another client still gets through', async () => {
    const s = silent({ maxInflight: 100, maxInflightPerClient: 3 });
    const flood = [0, 1, 2, 3, 4].map((i) => s.gate.handle(q(`n${i}.cdn.example.net`), '198.51.100.130', 'udp'));
    // the 4th and 5th are answered synchronously: no promise, no queue
    expect(flood[3]).toBeInstanceOf(Buffer);
    expect(rcodeOf(flood[4] as Buffer)).toBe('SERVFAIL');
    expect(s.asked).toEqual(['n0.cdn.example.net', 'n1.cdn.example.net', 'n2.cdn.example.net']);
    expect(s.events.filter((e) => e.verdict === 'shed')).toHaveLength(2);
    expect(s.events.find((e) => e.verdict === 'shed')?.detail).toMatch(/cap 3/);
    const other = s.gate.handle(q('api.example.com'), '198.51.100.131', 'udp');
    expect(other).toBeInstanceOf(Promise);
    expect(s.asked).toContain('api.example.com');
    // a coalesced query of the flooding client counts against its share too
    expect(rcodeOf(s.gate.handle(q('api.example.com'), '198.51.100.130', 'udp') as Buffer)).toBe('SERVFAIL');
    await s.release();
    expect(rcodeOf((await other)!)).toBe('NOERROR');
    for (const r of flood.slice(0, 3)) expect(rcodeOf((await r)!)).toBe('NOERROR');
    // the share is given back once the answers are out
    expect(s.gate.handle(q('n9.cdn.example.net'), '198.51.100.130', 'udp')).toBeInstanceOf(Promise);
    const snap = s.gate.snapshot();
    expect(snap.decisions.shed).toBe(3);
    expect(snap.inflight).toMatchObject({ upstream: 1, waiting: 1, limit: 100, perClientLimit: 3 });
  });

  it('sheds new names over the overall cap; a name already in flight is still shared', async () => {
    const s = silent({ maxInflight: 2, maxInflightPerClient: 100 });
    const a = s.gate.handle(q('a.cdn.example.net'), '198.51.100.130', 'udp');
    s.gate.handle(q('b.cdn.example.net'), '198.51.100.131', 'udp');
    expect(rcodeOf(s.gate.handle(q('c.cdn.example.net'), '198.51.100.132', 'udp') as Buffer)).toBe('SERVFAIL');
    const shared = s.gate.handle(q('a.cdn.example.net'), '198.51.100.132', 'udp');
    expect(shared).toBeInstanceOf(Promise);
    expect(s.asked).toEqual(['a.cdn.example.net', 'b.cdn.example.net']);
    await s.release();
    expect(rcodeOf((await a)!)).toBe('NOERROR');
    expect(rcodeOf((await shared)!)).toBe('NOERROR');
  });

  /** Gates of two policies and the top-level one in one process, as `egressfw gate` runs them: one GateShare. */
  function policyGates(caps: { cacheSize: number; maxInflight?: number }, upstreamSilent = false) {
    const c = config();
    const share = new GateShare();
    const asked: string[] = [];
    const held: (() => void)[] = [];
    const clock = { now: 1_700_000_000_000 };
    const mk = () =>
      new Gate(new GatePolicy(c.domains, c.wildcards), { minTtl: 30, maxTtl: 3600, staleGrace: 300, ipv6: true, maxInflightPerClient: 1000, ...caps }, {
        upstream: (name) => {
          asked.push(name);
          const answer: UpstreamResult = { ok: true, addresses: [{ ip: '203.0.113.9', ttl: 600 }], refused: [] };
          return upstreamSilent ? new Promise<UpstreamResult>((resolve) => held.push(() => resolve(answer))) : Promise.resolve(answer);
        },
        admit: async () => {},
        nowMs: () => clock.now++,
        onQuery: () => {},
      }, share);
    return { share, asked, held, a: mk(), b: mk(), host: mk() };
  }

  it('the cache cap is the process\'s, across the gates of every policy: a flood under one policy evicts its own answers, not the others\'', async () => {
    const g = policyGates({ cacheSize: 10 });
    for (let i = 0; i < 3; i++) await g.b.handle(q(`keep${i}.cdn.example.net`), '198.51.100.131', 'udp');
    await g.host.handle(q('api.example.com'), '198.51.100.2', 'udp');
    for (let i = 0; i < 200; i++) await g.a.handle(q(`flood${i}.cdn.example.net`), '198.51.100.130', 'udp');
    // never more than cacheSize in all (per gate, three gates would hold 30)
    expect(g.share.cacheEntries).toBe(10);
    expect([g.a.cached, g.b.cached, g.host.cached]).toEqual([6, 3, 1]);
    // the others' answers are still served from their caches: nothing goes upstream for them
    const before = g.asked.length;
    for (let i = 0; i < 3; i++) expect(rcodeOf((await g.b.handle(q(`keep${i}.cdn.example.net`), '198.51.100.131', 'udp'))!)).toBe('NOERROR');
    await g.host.handle(q('api.example.com'), '198.51.100.2', 'udp');
    expect(g.asked.length).toBe(before);
    // as the others grow they take their share back: the largest cache gives
    for (let i = 0; i < 10; i++) await g.b.handle(q(`more${i}.cdn.example.net`), '198.51.100.131', 'udp');
    expect(g.share.cacheEntries).toBe(10);
    expect(Math.abs(g.a.cached - g.b.cached)).toBeLessThanOrEqual(1);
    // a gate whose policy left the config no longer counts
    g.a.retire();
    expect(g.share.cacheEntries).toBe(g.b.cached + g.host.cached);
  });

  it('the fetch cap is the process\'s too: names in flight at one policy\'s gate count at another\'s', async () => {
    const g = policyGates({ cacheSize: 100, maxInflight: 2 }, true);
    const first = g.a.handle(q('a.cdn.example.net'), '198.51.100.130', 'udp');
    g.b.handle(q('b.cdn.example.net'), '198.51.100.131', 'udp');
    expect(g.share.inflight).toBe(2);
    expect(rcodeOf(g.host.handle(q('api.example.com'), '198.51.100.2', 'udp') as Buffer)).toBe('SERVFAIL');
    expect(g.asked).toEqual(['a.cdn.example.net', 'b.cdn.example.net']);
    for (const r of g.held.splice(0)) r();
    expect(rcodeOf((await first)!)).toBe('NOERROR');
    await new Promise((r) => setTimeout(r, 0));
    expect(g.share.inflight).toBe(0);
    expect(g.host.handle(q('api.example.com'), '198.51.100.2', 'udp')).toBeInstanceOf(Promise);
  });

  it('gate.json\'s counters are every gate\'s: decisions and caches add up, the caps are taken once, clients merge', async () => {
    const g = policyGates({ cacheSize: 100 });
    await g.a.handle(q('x.cdn.example.net'), '198.51.100.130', 'udp');
    await g.a.handle(q('x.cdn.example.net'), '198.51.100.130', 'udp');
    await g.b.handle(q('not-allowed.example.org'), '198.51.100.131', 'udp');
    await g.host.handle(q('api.example.com'), '198.51.100.2', 'udp');
    const merged = mergeSnapshots([g.host, g.a, g.b].map((x) => x.snapshot()));
    expect(merged.decisions).toMatchObject({ allowed: 3, refused: 1 });
    expect(merged.cached).toBe(1);
    expect(merged.upstream.queries).toBe(2);
    expect(merged.upstream.buckets.reduce((n, b) => n + b.count, 0)).toBe(2);
    expect(merged.cache).toEqual({ entries: 2, limit: 100 });
    expect(merged.inflight).toMatchObject({ upstream: 0, waiting: 0 });
    // one snapshot is itself
    const one = g.a.snapshot();
    expect(mergeSnapshots([one])).toBe(one);
  });

  it('stats: per-client counts of the last full minute, busiest first', () => {
    const st = new GateStats(0);
    for (let i = 0; i < 5; i++) st.decision('refused', '198.51.100.130', false, 1000);
    st.decision('shed', '198.51.100.130', false, 2000);
    st.decision('allowed', '198.51.100.131', true, 3000);
    st.upstreamDone(3, true);
    st.upstreamDone(4000, false);
    const live = { upstream: 0, waiting: 0, limit: 1, perClientLimit: 1, cacheEntries: 0, cacheLimit: 1 };
    expect(st.snapshot(30_000, live).clients.list).toEqual([]); // the minute is not over yet
    const snap = st.snapshot(61_000, live);
    expect(snap.clients.list).toEqual([
      { client: '198.51.100.130', queries: 6, refused: 5, shed: 1 },
      { client: '198.51.100.131', queries: 1, refused: 0, shed: 0 },
    ]);
    expect(snap.decisions).toMatchObject({ refused: 5, shed: 1, allowed: 1 });
    expect(snap.cached).toBe(1);
    expect(snap.upstream.buckets.find((b) => b.leMs === 5)?.count).toBe(1);
    expect(snap.upstream.buckets.find((b) => b.leMs === 5000)?.count).toBe(1);
    expect(st.snapshot(200_000, live).clients.list).toEqual([]); // a quiet gap
  });
});
