// The gate's shared upstream socket pool against an in-process DNS server: many queries over one
// socket, matched by id and question; forgeries and strays ignored; truncation goes to TCP.
import { afterEach, describe, expect, it } from 'vitest';
import { A, FakeDns, type Handler } from '../support/dns-server.js';
import { UpstreamPool } from '../../src/system/upstream-pool.js';

const any = { first: 0, last: 0 }; // one socket on a free port (the real ranges need root)
let dns: FakeDns | undefined;
let pool: UpstreamPool | undefined;
afterEach(async () => {
  pool?.close();
  await dns?.stop();
});

async function setup(handler: Handler) {
  dns = await new FakeDns(handler).start();
  pool = await UpstreamPool.open({ udpPorts: any, tcpPorts: any, families: [4] });
  return { server: { host: '127.0.0.1', port: dns.port }, pool, dns };
}

describe('upstream pool', () => {
  it('multiplexes 200 concurrent queries over one socket, each answer to its own question', async () => {
    const s = await setup((q) => ({ answers: [A(q.name, `203.0.113.${Number(q.name.split('.')[0]!.slice(1)) % 250}`)] }));
    expect(s.pool.size).toEqual({ 4: 1, 6: 0 });
    const names = Array.from({ length: 200 }, (_, i) => `n${i}.example.com`);
    const results = await Promise.all(names.map((n) => s.pool.query(s.server, n, 'A', 2000)));
    results.forEach((r, i) => expect(r.answers[0]).toMatchObject({ name: names[i], data: `203.0.113.${i % 250}` }));
    expect(s.pool.inflight).toBe(0);
  });

  it('ignores strays and a forged answer from another address; takes the real one', async () => {
    const s = await setup((q) => ({ answers: [A(q.name, '203.0.113.1')], before: ['garbage', 'wrong-id', 'wrong-question', { spoofed: [A(q.name, '198.51.100.66')] }] }));
    const r = await s.pool.query(s.server, 'a.example.com', 'A', 2000);
    expect(r.answers.map((a) => a.data)).toEqual(['203.0.113.1']);
  });

  it('a silent server: a timeout, and the entry is gone (nothing piles up)', async () => {
    const s = await setup(() => 'drop');
    await expect(s.pool.query(s.server, 'a.example.com', 'A', 100)).rejects.toMatchObject({ kind: 'timeout' });
    expect(s.pool.inflight).toBe(0);
  });

  it('a truncated answer is asked again over TCP', async () => {
    const s = await setup((q) => (q.transport === 'udp' ? { truncate: true } : { answers: [A(q.name, '203.0.113.7')] }));
    const r = await s.pool.query(s.server, 'big.example.com', 'A', 2000);
    expect(r.answers.map((a) => a.data)).toEqual(['203.0.113.7']);
    expect(s.dns.log.map((q) => q.transport)).toEqual(['udp', 'tcp']);
  });
});
