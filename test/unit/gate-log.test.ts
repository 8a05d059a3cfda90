import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { namesFor, parseGateLog } from '../../src/audit/destination-names.js';
import type { QueryEvent } from '../../src/gate/gate.js';
import { GATE_LOG, isQueryLineText, parseQueryLine, queryLine, renderSummary, ShedSampler, summarise } from '../../src/gate/log.js';
import { GateStats, minuteLine } from '../../src/gate/stats.js';
import { LineBatch, readGateLogs, RotatingLog } from '../../src/system/gate-log.js';
import { printJson } from '../../src/text.js';

const line = (at: string, client: string, name: string, verdict: string, container: object | null = null) =>
  JSON.stringify({ time: at, client, container, name, type: 'A', verdict, rcode: verdict === 'refused' ? 'REFUSED' : 'NOERROR', ips: [], cached: false, ms: 0, transport: 'udp' });

describe('gate log', () => {
  it('rotates by size, keeps N files, and reads them back oldest first', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'efw-gl-'));
    const log = new RotatingLog(path.join(dir, 'gate.log'), 64 * 1024, 2);
    const big = 'x'.repeat(1000);
    for (let i = 0; i < 300; i++) {
      log.write(`${i} ${big}`);
      if (i % 50 === 49) await log.flush();
    }
    await log.close();
    const files = fs.readdirSync(dir).sort();
    expect(files).toEqual(['gate.log', 'gate.log.1', 'gate.log.2']);
    for (const f of files) expect(fs.statSync(path.join(dir, f)).size).toBeLessThanOrEqual(64 * 1024);
    const lines = (await readGateLogs(dir)).filter(Boolean);
    expect(lines.at(-1)).toMatch(/^299 /);
    const nums = lines.map((l) => Number(l.split(' ')[0]));
    expect(nums).toEqual([...nums].sort((a, b) => a - b)); // oldest first, no gaps within what is kept
    expect(nums.at(-1)! - nums[0]! + 1).toBe(nums.length);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('summarises the last hour per container, with the top refused names', () => {
    const now = Date.parse('2026-11-30T12:00:00Z');
    const web = { id: 'aaaaaaaaaaaa', name: 'shop-web-1', service: 'web', project: 'shop' };
    const s = summarise(
      [
        line('2026-11-30T10:30:00Z', '172.18.0.2', 'old.example', 'refused', web), // older than an hour
        line('2026-11-30T11:10:00Z', '172.18.0.2', 'api.example.com', 'allowed', web),
        line('2026-11-30T11:20:00Z', '172.18.0.2', 'x1.attacker.example', 'refused', web),
        line('2026-11-30T11:21:00Z', '172.18.0.2', 'x1.attacker.example', 'refused', web),
        line('2026-11-30T11:22:00Z', '172.17.0.5', 'x1.attacker.example', 'refused'),
        line('2026-11-30T11:23:00Z', '172.17.0.5', 'tracker.example', 'refused'),
        'not json',
      ],
      now,
    );
    expect(s).toMatchObject({ total: 5, allowed: 1, refused: 4, skipped: 1 });
    expect(s.clients.map((c) => [c.who, c.allowed, c.refused])).toEqual([
      ['shop-web-1 (shop/web)', 1, 2],
      ['172.17.0.5', 0, 2],
    ]);
    expect(s.topRefused).toEqual([
      { name: 'x1.attacker.example', count: 3, clients: 2 },
      { name: 'tracker.example', count: 1, clients: 1 },
    ]);
    expect(renderSummary(s).join('\n')).toMatch(/3x x1\.attacker\.example \(2 clients\)/);
  });

  it('round trip: what the gate writes, parseQueryLine and the audit reader read back (names a destination)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'efw-gl-'));
    const at = Date.parse('2026-11-30T11:59:00Z');
    const web = { id: 'aaaaaaaaaaaa', name: 'shop-web-1', service: 'web', project: 'shop' };
    const events: QueryEvent[] = [
      { at, client: '172.18.0.2', transport: 'udp', name: 'API.Example.com.', type: 'A', verdict: 'allowed', rcode: 'NOERROR', ips: ['203.0.113.7', '203.0.113.8'], cached: false, rules: ['api.example.com'], ms: 3, releaseMs: 0.5, kernelMs: 0.2 },
      { at: at + 1, client: '2001:db8:1::2', transport: 'tcp', name: 'x\n- cidr: 198.51.100.66/32', type: 'AAAA', verdict: 'refused', rcode: 'REFUSED', ips: [], cached: false, ms: 0 },
    ];
    const log = new RotatingLog(path.join(dir, GATE_LOG), 1 << 20, 2);
    for (const e of events) log.write(queryLine(e, e.verdict === 'allowed' ? web : undefined));
    await log.close();
    const lines = (await readGateLogs(dir)).filter(Boolean);
    expect(lines.map(parseQueryLine)).toEqual([
      { time: '2026-11-30T11:59:00.000Z', client: '172.18.0.2', container: web, name: 'API.Example.com.', type: 'A', verdict: 'allowed', rcode: 'NOERROR', ips: ['203.0.113.7', '203.0.113.8'], cached: false, ms: 3, releaseMs: 0.5, kernelMs: 0.2, transport: 'udp', rules: ['api.example.com'] },
      { time: '2026-11-30T11:59:00.001Z', client: '2001:db8:1::2', container: null, name: 'x\n- cidr: 198.51.100.66/32', type: 'AAAA', verdict: 'refused', rcode: 'REFUSED', ips: [], cached: false, ms: 0, transport: 'tcp' },
    ]);
    const gate = parseGateLog(lines.join('\n'));
    expect(gate).toEqual([
      { time: at / 1000, client: '172.18.0.2', name: 'api.example.com', type: 'A', refused: false, answers: ['203.0.113.7', '203.0.113.8'] },
      // the reader keeps a hostile name raw: escaping it is the printer's job
      { time: (at + 1) / 1000, client: '2001:db8:1::2', name: 'x\n- cidr: 198.51.100.66/32', type: 'AAAA', refused: true, answers: [] },
    ]);
    expect(namesFor('203.0.113.8', at / 1000 + 10, '172.18.0.2', gate, [])).toEqual([{ name: 'api.example.com', via: 'gate' }]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('the reader refuses what the gate never writes', () => {
    const good = JSON.parse(queryLine({ at: 0, client: '172.18.0.2', transport: 'udp', name: 'a.test', type: 'A', verdict: 'allowed', rcode: 'NOERROR', ips: ['203.0.113.7'], cached: false, ms: 0 }, undefined)) as Record<string, unknown>;
    const variant = (o: Record<string, unknown>) => parseQueryLine(JSON.stringify({ ...good, ...o }));
    expect(variant({})).not.toBeNull();
    for (const bad of [{ time: 'yesterday' }, { ips: undefined, answers: ['203.0.113.7'] }, { ips: [1] }, { verdict: 'denied' }, { name: 7 }, { client: undefined }, { container: 'x' }]) expect(variant(bad), JSON.stringify(bad)).toBeNull();
    expect(parseQueryLine('{"time": "cut')).toBeNull();
    expect(parseQueryLine('[]')).toBeNull();
  });

  it('tells query lines (kept out of the journal) from the gate\'s other stdout lines without parsing them', () => {
    const e = { at: 0, client: '172.18.0.2', transport: 'udp' as const, name: 'a.test', type: 'A', verdict: 'shed' as const, rcode: 'SERVFAIL' as const, ips: [], cached: false, ms: 0 };
    expect(isQueryLineText(queryLine(e, undefined))).toBe(true);
    expect(isQueryLineText(queryLine({ ...e, name: '","client":x' }, { id: 'c1', name: 'web' }, 9))).toBe(true);
    const st = new GateStats(0);
    st.decision('refused', '172.18.0.2', false, 1);
    expect(isQueryLineText(minuteLine(61_000, { allowed: 0, refused: 0, failed: 0, shed: 0, malformed: 0 }, st.snapshot(61_000, { upstream: 0, waiting: 0, limit: 0, perClientLimit: 0, cacheEntries: 0, cacheLimit: 0 }))!)).toBe(false);
    expect(isQueryLineText('gate: listening on 127.0.0.1:53/udp')).toBe(false);
  });

  it('shed queries: the first of each second one line each, the rest one line with their count; every one counted in the summary', () => {
    const sampler = new ShedSampler(2);
    const at = Date.parse('2026-11-30T11:59:00Z');
    const shedAt = (ms: number): QueryEvent => ({ at: at + ms, client: '172.17.0.9', transport: 'udp', name: `n${ms}.flood.test`, type: 'A', verdict: 'shed', rcode: 'SERVFAIL', ips: [], cached: false, ms: 0, detail: 'cap' });
    const lines: string[] = [];
    for (let ms = 0; ms < 10; ms++) {
      const e = shedAt(ms);
      if (sampler.admit(e)) lines.push(queryLine(e, undefined));
    }
    const held = sampler.take();
    expect(held?.count).toBe(8);
    expect(sampler.take()).toBeNull();
    lines.push(queryLine(held!.event, undefined, held!.count));
    // a new second logs its first ones again
    expect(sampler.admit(shedAt(1000))).toBe(true);
    const parsed = lines.map(parseQueryLine);
    expect(parsed.map((l) => l?.count)).toEqual([undefined, undefined, 8]);
    const s = summarise(lines, at + 2000);
    expect(s).toMatchObject({ total: 10, shed: 10, clients: [{ client: '172.17.0.9', shed: 10 }] });
    expect(renderSummary(s)[0]).toMatch(/10 shed \(over a cap\)/);
    // a count is a whole number >= 1 or absent
    for (const bad of [0, 1.5, -2, '3']) expect(parseQueryLine(JSON.stringify({ ...JSON.parse(lines[0]!), count: bad }))).toBeNull();
  });

  it('queryLine, built field by field, is the same text as printJson of the whole line (order, escapes, optional fields)', () => {
    // the reference: the object in QueryLine's order, escaped as one document
    const reference = (e: QueryEvent, container: object | undefined, count = 1) =>
      printJson({
        time: new Date(e.at).toISOString(), client: e.client, container: container ?? null, name: e.name, type: e.type, verdict: e.verdict, rcode: e.rcode, ips: e.ips, cached: e.cached, ms: e.ms,
        ...(e.releaseMs !== undefined ? { releaseMs: e.releaseMs } : {}), ...(e.kernelMs !== undefined ? { kernelMs: e.kernelMs } : {}), transport: e.transport,
        ...(e.rules ? { rules: e.rules } : {}), ...(e.detail ? { detail: e.detail } : {}), ...(count > 1 ? { count } : {}),
      });
    const at = Date.parse('2026-11-30T11:59:00.123Z');
    const ips = ['203.0.113.7', '2001:db8::1'];
    const events: [QueryEvent, object | undefined, number][] = [
      [{ at, client: '172.18.0.2', transport: 'udp', name: 'api.example.com', type: 'A', verdict: 'allowed', rcode: 'NOERROR', ips, cached: true, rules: ['*.example.com', 'api.example.com'], ms: 0 }, undefined, 1],
      [{ at, client: '172.18.0.2', transport: 'udp', name: 'api.example.com', type: 'A', verdict: 'allowed', rcode: 'NOERROR', ips, cached: true, rules: ['*.example.com', 'api.example.com'], ms: 1 }, undefined, 1], // the memoised arrays again
      [{ at: at + 1, client: '2001:db8:1::2', transport: 'tcp', name: 'a"b\\c\n\x7f\x9b[31m\u202e.test', type: 'TYPE65280', verdict: 'refused', rcode: 'REFUSED', ips: [], cached: false, ms: 12 }, { id: 'aaaaaaaaaaaa', name: 'web\u2028x', service: 's', project: 'p' }, 1],
      [{ at, client: '172.18.0.3', transport: 'udp', name: 'x.test', type: 'AAAA', verdict: 'allowed', rcode: 'NOERROR', ips: ['2001:db8::5'], cached: false, ms: 3, releaseMs: 0.125, kernelMs: 0.07, rules: ['x.test'], detail: 'dropped (rebinding guard): 10.0.0.1 private\u200b' }, undefined, 1],
      [{ at, client: '172.18.0.4', transport: 'udp', name: 'n.flood.test', type: 'A', verdict: 'shed', rcode: 'SERVFAIL', ips: [], cached: false, ms: 0, rules: ['*.flood.test'], detail: 'cap 64' }, undefined, 37],
    ];
    for (const [e, c, n] of events) expect(queryLine(e, c as never, n)).toBe(reference(e, c, n));
  });

  it('LineBatch: lines in, the same text out (UTF-8 intact), full before it overflows, grows for a line larger than itself', () => {
    const b = new LineBatch(2048);
    expect(b.take()).toBe('');
    const lines = ['{"name":"a"}', '{"name":"\u00e9\u00ff x"}', '{"name":"\ud83d\ude00"}'];
    for (const l of lines) expect(b.push(l)).toBe(true);
    expect(b.take()).toBe(lines.join('\n'));
    let n = 0;
    while (b.push('x'.repeat(100))) n++;
    expect(n).toBeGreaterThan(5);
    expect(b.take().split('\n')).toHaveLength(n + 1);
    const huge = 'y'.repeat(10_000);
    b.push('z');
    expect(b.push(huge)).toBe(false);
    expect(b.take()).toBe(`z\n${huge}`);
    expect(b.take()).toBe('');
  });
});
