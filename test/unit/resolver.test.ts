import { afterEach, describe, expect, it } from 'vitest';
import { query } from '../../src/system/dns-client.js';
import { domainStatus, resolveAll, resolveDomain, type ResolverOptions } from '../../src/resolve/resolver.js';
import { QueryError } from '../../src/resolve/query.js';
import { FakeTimers } from '../support/fake-timers.js';
import { A, AAAA, CNAME, FakeDns, zone, type Handler } from '../support/dns-server.js';

const servers: FakeDns[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

async function start(handler: Handler): Promise<FakeDns> {
  const s = await new FakeDns(handler).start();
  servers.push(s);
  return s;
}

function opts(dns: FakeDns[], over: Partial<ResolverOptions> = {}): ResolverOptions {
  return {
    query,
    servers: dns.map((d) => ({ host: '127.0.0.1', port: d.port })),
    timeoutMs: 300,
    attempts: 1,
    concurrency: 4,
    minTtl: 30,
    maxTtl: 86400,
    ipv6: true,
    ...over,
  };
}

describe('resolver against a real UDP/TCP DNS server on 127.0.0.1', () => {
  it('returns A and AAAA with TTLs, sorted and canonical', async () => {
    const dns = await start(
      zone({
        'api.example.com': [A('api.example.com', '203.0.113.9', 120), A('api.example.com', '203.0.113.10', 60), AAAA('api.example.com', '2001:0db8:0000::0001', 90)],
      }),
    );
    const r = await resolveDomain(opts([dns]), 'api.example.com', false);
    expect(r.v4).toEqual({ ok: true, cnames: [], addresses: [{ ip: '203.0.113.9', family: 4, ttl: 120 }, { ip: '203.0.113.10', family: 4, ttl: 60 }] });
    expect(r.v6).toEqual({ ok: true, cnames: [], addresses: [{ ip: '2001:db8::1', family: 6, ttl: 90 }] });
    expect(domainStatus(r)).toBe('ok');
  });

  it('raises TTLs to minTtl and caps them at maxTtl', async () => {
    const dns = await start(zone({ 'a.example.com': [A('a.example.com', '203.0.113.1', 1), A('a.example.com', '203.0.113.2', 999999)] }));
    const r = await resolveDomain(opts([dns], { minTtl: 30, maxTtl: 3600, ipv6: false }), 'a.example.com', false);
    expect(r.v4.ok && r.v4.addresses.map((a) => a.ttl)).toEqual([30, 3600]);
    expect(r.v6).toBeNull();
  });

  it('follows a CNAME chain in one answer; TTL is the smallest along the chain', async () => {
    const dns = await start(
      zone({
        'www.example.com': [CNAME('www.example.com', 'edge.cdn.example.net', 40), CNAME('edge.cdn.example.net', 'x1.cdn.example.net', 500), A('x1.cdn.example.net', '203.0.113.44', 300)],
      }),
    );
    const r = await resolveDomain(opts([dns], { ipv6: false, minTtl: 1 }), 'www.example.com', false);
    expect(r.v4).toEqual({ ok: true, cnames: ['edge.cdn.example.net', 'x1.cdn.example.net'], addresses: [{ ip: '203.0.113.44', family: 4, ttl: 40 }] });
  });

  it('asks again for a CNAME target the server did not include', async () => {
    const dns = await start(
      zone({
        'www.example.com': [CNAME('www.example.com', 'target.example.org')],
        'target.example.org': [A('target.example.org', '198.51.100.7')],
      }),
    );
    const r = await resolveDomain(opts([dns], { ipv6: false }), 'www.example.com', false);
    expect(r.v4.ok && r.v4.addresses.map((a) => a.ip)).toEqual(['198.51.100.7']);
    expect(dns.log.map((q) => q.name)).toEqual(['www.example.com', 'target.example.org']);
  });

  it('detects a CNAME loop, in one answer and across answers', async () => {
    const dns = await start(
      zone({
        'loop.example.com': [CNAME('loop.example.com', 'b.example.com'), CNAME('b.example.com', 'loop.example.com')],
        'x.example.com': [CNAME('x.example.com', 'y.example.com')],
        'y.example.com': [CNAME('y.example.com', 'x.example.com')],
      }),
    );
    const o = opts([dns], { ipv6: false });
    const one = await resolveDomain(o, 'loop.example.com', false);
    const two = await resolveDomain(o, 'x.example.com', false);
    expect(one.v4).toMatchObject({ ok: false, kind: 'cname-loop' });
    expect(two.v4).toMatchObject({ ok: false, kind: 'cname-loop' });
  });

  it('gives up on a CNAME chain longer than 8', async () => {
    const records: Record<string, ReturnType<typeof CNAME>[]> = {};
    for (let i = 0; i < 12; i++) records[`c${i}.example.com`] = [CNAME(`c${i}.example.com`, `c${i + 1}.example.com`)];
    const dns = await start(zone(records));
    const r = await resolveDomain(opts([dns], { ipv6: false }), 'c0.example.com', false);
    expect(r.v4).toMatchObject({ ok: false, kind: 'cname-too-long' });
  });

  it('retries over TCP when the UDP answer is truncated', async () => {
    const many = Array.from({ length: 40 }, (_, i) => A('big.example.com', `203.0.113.${i + 1}`));
    const dns = await start((q) => (q.type === 'A' ? { truncate: true, answers: many } : { answers: [] }));
    const r = await resolveDomain(opts([dns]), 'big.example.com', false);
    expect(r.v4.ok && r.v4.addresses.length).toBe(40);
    expect(dns.log.filter((q) => q.type === 'A').map((q) => q.transport)).toEqual(['udp', 'tcp']);
  });

  it('reports NXDOMAIN and SERVFAIL as typed failures', async () => {
    const dns = await start((q) => (q.name === 'broken.example.com' ? { rcode: 'SERVFAIL' } : { rcode: 'NXDOMAIN' }));
    const nx = await resolveDomain(opts([dns]), 'nope.example.com', false);
    const sf = await resolveDomain(opts([dns]), 'broken.example.com', false);
    expect(nx.v4).toMatchObject({ ok: false, kind: 'nxdomain' });
    expect(domainStatus(nx)).toBe('nxdomain');
    expect(sf.v4).toMatchObject({ ok: false, kind: 'servfail' });
  });

  it('NODATA (no A, no AAAA) is an empty success, not a failure', async () => {
    const dns = await start(() => ({ answers: [] }));
    const r = await resolveDomain(opts([dns]), 'empty.example.com', false);
    expect(r.v4).toEqual({ ok: true, addresses: [], cnames: [] });
    expect(domainStatus(r)).toBe('nodata');
  });

  it('moves on to the next server after a timeout, and the answer wins', async () => {
    const dead = await start(() => 'drop');
    const good = await start(zone({ 'api.example.com': [A('api.example.com', '203.0.113.5')] }));
    const r = await resolveDomain(opts([dead, good], { ipv6: false, timeoutMs: 200 }), 'api.example.com', false);
    expect(r.v4.ok && r.v4.addresses.map((a) => a.ip)).toEqual(['203.0.113.5']);
    expect(dead.log.length).toBe(1);
    expect(good.log.length).toBe(1);
  });

  it('times out when every server is silent, after attempts x servers tries', async () => {
    const dead = await start(() => 'drop');
    const r = await resolveDomain(opts([dead], { ipv6: false, timeoutMs: 100, attempts: 3 }), 'api.example.com', false);
    expect(r.v4).toMatchObject({ ok: false, kind: 'timeout' });
    expect(dead.log.length).toBe(3);
  });

  it('a server that sends only garbage fails as malformed; one that answers another id times out', async () => {
    const garbage = await start(() => 'garbage');
    const r = await resolveDomain(opts([garbage], { ipv6: false, timeoutMs: 150 }), 'api.example.com', false);
    expect(r.v4).toMatchObject({ ok: false, kind: 'malformed' });
    // A datagram for another query id is ignored: we keep waiting and time out.
    const wrong = await start(() => 'wrong-id');
    const w = await resolveDomain(opts([wrong], { ipv6: false, timeoutMs: 150 }), 'api.example.com', false);
    expect(w.v4).toMatchObject({ ok: false, kind: 'timeout' });
  });

  it('ignores garbage and datagrams for another id or question, and takes the answer that follows', async () => {
    const dns = await start((q) => ({ before: ['garbage', 'wrong-id', 'wrong-question'], answers: q.type === 'A' ? [A(q.name, '203.0.113.5')] : [] }));
    const r = await resolveDomain(opts([dns], { ipv6: false }), 'api.example.com', false);
    expect(r.v4).toEqual({ ok: true, cnames: [], addresses: [{ ip: '203.0.113.5', family: 4, ttl: 300 }] });
  });

  it('ignores an answer from another source address with the right port and id (spoofed)', async () => {
    const dns = await start((q) => ({ before: [{ spoofed: [A(q.name, '203.0.113.66')] }], answers: [A(q.name, '203.0.113.5')] }));
    const r = await resolveDomain(opts([dns], { ipv6: false }), 'api.example.com', false);
    expect(r.v4.ok && r.v4.addresses.map((a) => a.ip)).toEqual(['203.0.113.5']);
    // Only the forger answers: nothing is accepted.
    const forged = await start((q) => ({ before: [{ spoofed: [A(q.name, '203.0.113.66')] }], drop: true }));
    const f = await resolveDomain(opts([forged], { ipv6: false, timeoutMs: 150 }), 'api.example.com', false);
    expect(f.v4).toMatchObject({ ok: false, kind: 'timeout' });
  });

  it('keeps at most 256 addresses per name and family (the lowest), fewer with maxAddresses', async () => {
    const v4 = ['192.0.2', '198.51.100', '203.0.113'].flatMap((net) => Array.from({ length: 256 }, (_, i) => `${net}.${i}`));
    const v6 = Array.from({ length: 1000 }, (_, i) => `2001:db8::${(i + 1).toString(16)}`);
    const dns = await start((q) => ({ answers: q.type === 'A' ? v4.map((ip) => A(q.name, ip)) : v6.map((ip) => AAAA(q.name, ip)) }));
    const r = await resolveDomain(opts([dns]), 'many.example.com', false);
    expect(r.v4.ok && r.v4.addresses.length).toBe(256);
    expect(r.v4.ok && r.v4.addresses.map((a) => a.ip)).toEqual(v4.slice(0, 256));
    expect(r.v4).toMatchObject({ ok: true, dropped: 512 });
    expect(r.v6?.ok && r.v6.addresses.length).toBe(256);
    expect(r.v6).toMatchObject({ ok: true, dropped: 744 });
    const few = await resolveDomain(opts([dns], { maxAddresses: 10, ipv6: false }), 'many.example.com', false);
    expect(few.v4.ok && few.v4.addresses.map((a) => a.ip)).toEqual(v4.slice(0, 10));
    // The cap is a hard ceiling: a larger setting does not lift it.
    const big = await resolveDomain(opts([dns], { maxAddresses: 5000, ipv6: false }), 'many.example.com', false);
    expect(big.v4.ok && big.v4.addresses.length).toBe(256);
  });

  it('gives each name an overall deadline, even when a query never returns', async () => {
    const timers = new FakeTimers();
    const hang: ResolverOptions['query'] = () => new Promise(() => {});
    let r: Awaited<ReturnType<typeof resolveDomain>> | undefined;
    void resolveDomain({ ...opts([], { deadlineMs: 200, timers }), servers: [{ host: '127.0.0.1', port: 1 }], query: hang }, 'slow.example.com', false).then((x) => (r = x));
    await timers.advance(249);
    expect(r).toBeUndefined(); // the cut comes 50 ms after the deadline: a query may answer at the last moment
    await timers.advance(1);
    expect(r?.v4).toMatchObject({ ok: false, kind: 'timeout', detail: expect.stringMatching(/deadline/) });
    expect(r?.v6).toMatchObject({ ok: false, kind: 'timeout' });
  });

  it('the deadline cuts retries short: attempts x servers x timeout is not waited out', async () => {
    const timers = new FakeTimers();
    const tries: number[] = [];
    // three silent servers: each query times out after the time it is given
    const silent: ResolverOptions['query'] = (_server, _name, _type, timeoutMs) => {
      tries.push(timeoutMs);
      return new Promise((_, reject) => timers.setTimeout(() => reject(new QueryError('timeout', 'no answer')), timeoutMs));
    };
    const three = [1, 2, 3].map((port) => ({ host: '127.0.0.1', port }));
    let r: Awaited<ReturnType<typeof resolveDomain>> | undefined;
    void resolveDomain({ ...opts([], { ipv6: false, timeoutMs: 150, attempts: 4, deadlineMs: 400, timers }), servers: three, query: silent }, 'api.example.com', false).then((x) => (r = x));
    await timers.advance(400);
    // 12 tries of 150 ms without a deadline; 400 ms allow three, the third given only the 100 ms left
    expect(tries).toEqual([150, 150, 100]);
    expect(r?.v4).toMatchObject({ ok: false, kind: 'timeout', detail: expect.stringMatching(/deadline/) });
  });

  it('refuses A data that is not an address', async () => {
    // An A record whose data is cut to 2 bytes (RDLENGTH 2, last in the message):
    // dns-packet reads past the end and yields "1.2.undefined.undefined".
    const short = (b: Buffer) => {
      const cut = Buffer.from(b.subarray(0, b.length - 2));
      cut.writeUInt16BE(2, cut.length - 4);
      return cut;
    };
    const dns = await start((q) => ({ answers: [A(q.name, '1.2.3.4')], mangle: short }));
    const r = await resolveDomain(opts([dns], { ipv6: false }), 'odd.example.com', false);
    expect(r.v4).toMatchObject({ ok: false, kind: 'malformed', detail: 'bad A record data "1.2.undefined.undefined"' });
  });

  it('drops rebinding answers (private, metadata, loopback, mapped) with a reason, unless allowPrivate', async () => {
    const dns = await start(
      zone({
        'evil.example.com': [
          A('evil.example.com', '10.0.0.1'),
          A('evil.example.com', '169.254.169.254'),
          A('evil.example.com', '203.0.113.3'),
          AAAA('evil.example.com', '::1'),
          AAAA('evil.example.com', '::ffff:127.0.0.1'),
          AAAA('evil.example.com', 'fd00:ec2::254'),
        ],
      }),
    );
    const r = await resolveDomain(opts([dns]), 'evil.example.com', false);
    expect(r.v4.ok && r.v4.addresses.map((a) => a.ip)).toEqual(['203.0.113.3']);
    expect(r.v6).toEqual({ ok: true, addresses: [], cnames: [] });
    expect(r.refused.map((x) => x.ip)).toEqual(['10.0.0.1', '169.254.169.254', '::1', '::ffff:7f00:1', 'fd00:ec2::254']);
    expect(r.refused.find((x) => x.ip === '169.254.169.254')?.reason).toMatch(/metadata/);
    expect(r.refused.find((x) => x.ip === '::ffff:7f00:1')?.reason).toMatch(/IPv4-mapped loopback/);

    const ok = await resolveDomain(opts([dns]), 'evil.example.com', true);
    expect(ok.refused).toEqual([]);
    expect(ok.v4.ok && ok.v4.addresses.length).toBe(3);
  });

  it('resolves many names with at most `concurrency` in flight, keeping input order', async () => {
    let inFlight = 0;
    let peak = 0;
    const slowQuery: ResolverOptions['query'] = async (_server, name) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((r) => setImmediate(r)); // a turn of the event loop: the other workers get to start theirs
      inFlight--;
      return { rcode: 'NOERROR', answers: [{ name, type: 'A', ttl: 60, data: '203.0.113.1' }] };
    };
    const names = Array.from({ length: 30 }, (_, i) => ({ name: `n${i}.example.com`, allowPrivate: false }));
    const rs = await resolveAll({ ...opts([], { concurrency: 3, ipv6: false }), servers: [{ host: '127.0.0.1', port: 1 }], query: slowQuery }, names);
    expect(rs.map((r) => r.name)).toEqual(names.map((n) => n.name));
    expect(rs.every((r) => r.v4.ok)).toBe(true);
    expect(peak).toBe(3);
  });
});
