import { describe, expect, it } from 'vitest';
import { parseSourceMap, SourcePolicies } from '../../src/gate/sources.js';
import { admitLine } from '../../src/system/nft-admit.js';

const listing = (name: string, elem: [string, string][]) =>
  JSON.stringify({ nftables: [{ metainfo: {} }, { map: { family: 'inet', name, table: 'egressfw', type: 'ipv4_addr', map: 'verdict', elem: elem.map(([a, c]) => [a, { jump: { target: c } }]) } }] });

describe('the gate: which policy a query\'s source has', () => {
  it('reads the kernel\'s maps: pol-host is the host\'s list, pol-NAME the policy', () => {
    const m = parseSourceMap([listing('policy4', [['198.51.100.2', 'pol-ci'], ['198.51.100.3', 'pol-host']]), listing('policy6', [['2001:DB8::2', 'pol-ci']]), '']);
    expect([...m]).toEqual([['198.51.100.2', 'ci'], ['198.51.100.3', 'host'], ['2001:db8::2', 'ci']]);
  });

  it('the host (loopback, its own addresses) gets the host\'s list; an unknown source nothing; the map is read again when older than a second', async () => {
    let now = 0;
    let reads = 0;
    let members: [string, string][] = [['198.51.100.2', 'pol-ci']];
    const s = new SourcePolicies({ readMaps: async () => (reads++, [listing('policy4', members)]), localAddresses: () => ['198.51.100.1'], nowMs: () => now });
    expect(await s.policyOf('127.0.0.1')).toBe('host');
    expect(await s.policyOf('198.51.100.2')).toBe('ci');
    expect(await s.policyOf('::ffff:198.51.100.2')).toBe('ci');
    expect(await s.policyOf('198.51.100.1')).toBe('host');
    expect(await s.policyOf('198.51.100.9')).toBeNull();
    expect(reads).toBe(1);
    // Docker hands .2 to a container of another policy: seen at the next read, at most a second later
    members = [['198.51.100.2', 'pol-payments']];
    now = 500;
    expect(await s.policyOf('198.51.100.2')).toBe('ci');
    now = 1001;
    expect(await s.policyOf('198.51.100.2')).toBe('payments');
    expect(reads).toBe(2);
  });

  it('a policy\'s answers go into its own gate sets', () => {
    expect(admitLine([
      { family: 4, ip: '203.0.113.7', proto: 'tcp', port: 443, timeoutSec: 60, set: 'pol-ci-gate4' },
      { family: 4, ip: '203.0.113.7', proto: 'tcp', port: 443, timeoutSec: 60 },
    ])).toBe('add element inet egressfw gate4 { 203.0.113.7 . tcp . 443 timeout 60s }; add element inet egressfw pol-ci-gate4 { 203.0.113.7 . tcp . 443 timeout 60s }');
  });
});
