import { describe, expect, it } from 'vitest';
import { gateStatus } from '../../src/commands/gate-status.js';
import { parseConfig } from '../../src/config/load.js';
import { GateStats, minuteLine } from '../../src/gate/stats.js';
import { gateLogLine } from '../support/gate-log.js';

describe('status: the DNS gate section', () => {
  const config = parseConfig('dns: {gate: {enabled: true, port: 5300}}\n', 'x.yml');
  const deps = (over: Partial<Parameters<typeof gateStatus>[2]> = {}) => ({
    readText: async (f: string) => (f.endsWith('gate.json') ? JSON.stringify({ pid: 42, since: '2026-11-30T10:00:00.000Z', bound: ['0.0.0.0:5300/udp'] }) : null),
    probe: async () => ({ ok: true, ms: 0.4, detail: 'answering' }),
    dockerVersion: async () => '28.5.2',
    readLogs: async () => [gateLogLine({ at: Date.parse('2026-11-30T11:59:00.000Z'), client: '172.17.0.2', name: 'evil.example', verdict: 'refused' })],
    nowMs: () => Date.parse('2026-11-30T12:00:00Z'),
    ...over,
  });

  it('healthy only when the gate answers and Docker goes through it', async () => {
    // Docker 28 without daemon.json dns, host not managed: nothing redirects its host-side queries
    const hostOff = parseConfig('host: {enabled: false}\ndns: {gate: {enabled: true, port: 5300}}\n', 'x.yml');
    const around = await gateStatus(hostOff, '/state', deps());
    expect(around!.healthy).toBe(false);
    expect(around!.lines.join('\n')).toMatch(/AROUND THE GATE .*install --docker-dns/);
    // the same with the host's redirect: caught, judged by the top-level list (no policies)
    const caught = await gateStatus(config, '/state', deps());
    expect(caught!.healthy).toBe(true);
    expect(caught!.lines.join('\n')).toMatch(/through the gate .*host's redirect/);
    const ok = await gateStatus(config, '/state', deps({ dockerVersion: async () => '20.10.24' }));
    expect(ok!.healthy).toBe(true);
    expect(ok!.doc.lastHour.refused).toBe(1);
    const down = await gateStatus(config, '/state', deps({ dockerVersion: async () => '20.10.24', probe: async () => ({ ok: false, ms: 500, detail: 'no answer within 500 ms' }) }));
    expect(down!.healthy).toBe(false);
    expect(down!.lines.join('\n')).toMatch(/NOT ANSWERING/);
  });

  it("shows the running gate's counters: shed queries and per-client rates of the last minute", async () => {
    const st = new GateStats(Date.parse('2026-11-30T11:58:00Z'));
    for (let i = 0; i < 600; i++) st.decision('shed', '172.17.0.9', false, Date.parse('2026-11-30T11:58:30Z'));
    st.decision('allowed', '172.17.0.2', true, Date.parse('2026-11-30T11:58:31Z'));
    const stats = st.snapshot(Date.parse('2026-11-30T11:59:58Z'), { upstream: 3, waiting: 64, limit: 512, perClientLimit: 64, cacheEntries: 10, cacheLimit: 20000 });
    const text = JSON.stringify({ pid: 42, since: '2026-11-30T10:00:00.000Z', bound: [], stats });
    const r = await gateStatus(config, '/state', deps({ readText: async (f: string) => (f.endsWith('gate.json') ? text : null) }));
    expect(r!.doc.stats?.decisions.shed).toBe(600);
    const lines = r!.lines.join('\n');
    expect(lines).toMatch(/1 answered \(1 from cache\), 0 refused, 0 failed, 600 SHED/);
    expect(lines).toMatch(/in flight: 3 names upstream \(cap 512\), 64 queries waiting/);
    expect(lines).toMatch(/172\.17\.0\.9: 10\.0 q\/s, 0 refused, 600 SHED/);
  });

  it('nothing when the gate is off', async () => {
    expect(await gateStatus(parseConfig('{}', 'x.yml'), '/state', deps())).toBeNull();
  });
});

describe("the gate's line a minute for the journal", () => {
  const live = { upstream: 0, waiting: 0, limit: 0, perClientLimit: 0, cacheEntries: 0, cacheLimit: 0 };
  it('counts since the last line and names the clients refused or shed most; nothing when nothing was asked', () => {
    const t0 = Date.parse('2026-11-30T11:58:00Z');
    const st = new GateStats(t0);
    for (let i = 0; i < 30; i++) st.decision('refused', '172.17.0.9', false, t0 + 1000);
    for (let i = 0; i < 5; i++) st.decision('shed', '172.17.0.7', false, t0 + 1000);
    for (let i = 0; i < 50; i++) st.decision('allowed', '172.17.0.2', true, t0 + 1000);
    const first = minuteLine(t0 + 61_000, { allowed: 0, refused: 0, failed: 0, shed: 0, malformed: 0 }, st.snapshot(t0 + 61_000, live));
    expect(JSON.parse(first!)).toEqual({
      time: '2026-11-30T11:59:01.000Z', event: 'dns-minute', allowed: 50, refused: 30, failed: 0, shed: 5, malformed: 0,
      refusedMost: [{ client: '172.17.0.9', queries: 30, refused: 30, shed: 0 }, { client: '172.17.0.7', queries: 5, refused: 0, shed: 5 }],
    });
    // the next minute: only what came since; a quiet minute writes nothing
    const seen = { ...st.decisions };
    st.decision('allowed', '172.17.0.2', false, t0 + 70_000);
    expect(JSON.parse(minuteLine(t0 + 121_000, seen, st.snapshot(t0 + 121_000, live))!)).toMatchObject({ allowed: 1, refused: 0, shed: 0 });
    expect(minuteLine(t0 + 181_000, { ...st.decisions }, st.snapshot(t0 + 181_000, live))).toBeNull();
  });
});
