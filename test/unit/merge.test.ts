import { describe, expect, it } from 'vitest';
import { mergeResolutions, nextRefreshAt } from '../../src/resolve/merge.js';
import { emptyState, parseState, type State } from '../../src/state-file.js';
import { domainStatus, type DomainResolution, type FamilyResult } from '../../src/resolve/resolver.js';

const ok = (...ips: string[]): FamilyResult => ({ ok: true, cnames: [], addresses: ips.map((ip) => ({ ip, family: ip.includes(':') ? 6 : 4, ttl: 60 })) });
const fail: FamilyResult = { ok: false, kind: 'timeout', detail: '198.51.100.53: no answer within 2000 ms' };
const res = (v4: FamilyResult, v6: FamilyResult | null = ok()): DomainResolution => ({ name: 'api.example.com', v4, v6, refused: [] });
const GRACE = 300;

/** Run a sequence of rounds with a fake clock; return the allowed IPs after each. */
function rounds(steps: [number, DomainResolution][]): { ips: string[]; sources: string[]; state: State }[] {
  let state = emptyState();
  return steps.map(([now, r]) => {
    const m = mergeResolutions(state, [r], now, GRACE, domainStatus);
    state = m.state;
    return { ips: m.allowed[0]!.ips.map((i) => i.ip), sources: m.allowed[0]!.ips.map((i) => i.source), state };
  });
}

describe('merge: last-known-good and stale grace', () => {
  it('keeps a vanished IP for the grace period, then drops it', () => {
    const out = rounds([
      [1000, res(ok('203.0.113.1'))],
      [1100, res(ok('203.0.113.2'))], // .1 vanished at 1100; last seen 1000 -> kept until 1000+300
      [1299, res(ok('203.0.113.2'))],
      [1300, res(ok('203.0.113.2'))],
    ]);
    expect(out[1]).toMatchObject({ ips: ['203.0.113.1', '203.0.113.2'], sources: ['stale', 'answer'] });
    expect(out[2]!.ips).toEqual(['203.0.113.1', '203.0.113.2']);
    expect(out[3]!.ips).toEqual(['203.0.113.2']);
  });

  it('a failed lookup keeps every last-known-good IP, however long it lasts', () => {
    const out = rounds([
      [1000, res(ok('203.0.113.1'), ok('2001:db8::1'))],
      [5000, res(fail, fail)],
      [99000, res(fail, ok('2001:db8::1'))],
    ]);
    expect(out[1]).toMatchObject({ ips: ['203.0.113.1', '2001:db8::1'], sources: ['last-known-good', 'last-known-good'] });
    expect(out[1]!.state.domains['api.example.com']).toMatchObject({ status: 'timeout', lastOk: 1000 });
    // only the failing family is kept from before; IPv6 answered again
    expect(out[2]).toMatchObject({ ips: ['203.0.113.1', '2001:db8::1'], sources: ['last-known-good', 'answer'] });
  });

  it('records first and last seen; an IP that comes back keeps its firstSeen', () => {
    const out = rounds([
      [1000, res(ok('203.0.113.1'))],
      [1100, res(ok('203.0.113.2'))],
      [1200, res(ok('203.0.113.1'))],
    ]);
    expect(out[2]!.state.domains['api.example.com']!.ips['203.0.113.1']).toEqual({ firstSeen: 1000, lastSeen: 1200, ttl: 60 });
  });

  it('a long TTL keeps a vanished IP longer than the grace', () => {
    let state = emptyState();
    const long: FamilyResult = { ok: true, cnames: [], addresses: [{ ip: '203.0.113.1', family: 4, ttl: 3600 }] };
    state = mergeResolutions(state, [res(long)], 0, GRACE, domainStatus).state;
    expect(mergeResolutions(state, [res(ok())], 3599, GRACE, domainStatus).allowed[0]!.ips.map((i) => i.ip)).toEqual(['203.0.113.1']);
    expect(mergeResolutions(state, [res(ok())], 3600, GRACE, domainStatus).allowed[0]!.ips).toEqual([]);
  });

  it('forgets names removed from the config', () => {
    const s = mergeResolutions(emptyState(), [res(ok('203.0.113.1'))], 0, GRACE, domainStatus).state;
    expect(mergeResolutions(s, [], 10, GRACE, domainStatus).state.domains).toEqual({});
  });

  it('is deterministic: same input, byte-identical output', () => {
    const a = mergeResolutions(emptyState(), [res(ok('203.0.113.9', '203.0.113.10', '203.0.113.1'))], 0, GRACE, domainStatus);
    const b = mergeResolutions(emptyState(), [res(ok('203.0.113.10', '203.0.113.1', '203.0.113.9'))], 0, GRACE, domainStatus);
    expect(JSON.stringify(a.allowed)).toBe(JSON.stringify(b.allowed));
    expect(a.allowed[0]!.ips.map((i) => i.ip)).toEqual(['203.0.113.1', '203.0.113.9', '203.0.113.10']);
  });

  it('next refresh is the earliest TTL or grace expiry', () => {
    const m = mergeResolutions(emptyState(), [res(ok('203.0.113.1'))], 1000, GRACE, domainStatus);
    expect(nextRefreshAt(m.allowed)).toBe(1060);
  });
});

describe('state file', () => {
  it('round-trips, and reports a damaged file instead of failing', () => {
    const s = mergeResolutions(emptyState(), [res(ok('203.0.113.1'))], 5, GRACE, domainStatus).state;
    const check = { now: 5 };
    expect(parseState(JSON.stringify(s), check)).toEqual({ state: s, warnings: [], damaged: null });
    expect(parseState(null, check)).toEqual({ state: emptyState(), warnings: [], damaged: null });
    expect(parseState('{nope', check).damaged).toMatch(/not valid JSON/);
    expect(parseState('{"version":2}', check).damaged).toMatch(/not an egressfw state document \(version: /);
  });
});

describe('merge: addresses kept per name are capped', () => {
  const block = (round: number, n: number) => Array.from({ length: n }, (_, i) => `2001:db8:${round.toString(16)}::${(i + 1).toString(16)}`);

  it('a rotating answer cannot grow the stale set past 256 per family: the answer first, then the most recently seen', () => {
    const out = rounds([
      [1000, res(ok(), ok(...block(1, 200)))],
      [1010, res(ok(), ok(...block(2, 200)))],
      [1020, res(ok(), ok(...block(3, 200)))],
    ]);
    const last = out[2]!;
    expect(last.ips.length).toBe(256);
    expect(last.sources.filter((s) => s === 'answer').length).toBe(200);
    // the 56 stale ones come from round 2 (seen at 1010), none from round 1
    expect(last.ips.filter((ip) => ip.startsWith('2001:db8:2::')).length).toBe(56);
    expect(last.ips.some((ip) => ip.startsWith('2001:db8:1::'))).toBe(false);
    expect(Object.keys(last.state.domains['api.example.com']!.ips).length).toBe(256);
  });

  it('last-known-good is capped too, and a lower cap applies', () => {
    let state = mergeResolutions(emptyState(), [res(ok(), ok(...block(1, 40)))], 1000, GRACE, domainStatus, 256).state;
    const m = mergeResolutions(state, [res(ok(), fail)], 1010, GRACE, domainStatus, 10);
    expect(m.allowed[0]!.ips.length).toBe(10);
    state = mergeResolutions(state, [res(ok(), ok(...block(2, 20)))], 1010, GRACE, domainStatus, 10).state;
    expect(Object.keys(state.domains['api.example.com']!.ips)).toEqual(block(2, 10));
  });

  it('says when a name had more addresses than the cap', () => {
    const capped: FamilyResult = { ...ok('203.0.113.1'), dropped: 744 } as FamilyResult;
    const m = mergeResolutions(emptyState(), [res(capped)], 1000, GRACE, domainStatus);
    expect(m.allowed[0]!.detail).toMatch(/A: 744 more addresses than dns\.maxAddresses/);
  });
});
