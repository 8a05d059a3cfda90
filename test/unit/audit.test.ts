import { describe, expect, it } from 'vitest';
import { applyCollection, applySnapshot, attribute, type Collection, type ContainerInfo } from '../../src/audit/collect.js';
import { bucketFor, emptyHistory, parseHistory, serializeHistory, trimHistory, type History, type Hit } from '../../src/audit/history.js';
import { gateRefusals, namesFor, parseGateLog } from '../../src/audit/destination-names.js';
import { nftChainMode, parseIpsetRefusedSet, parseNftRefusedSet, HOST, type KernelRecord } from '../../src/audit/records.js';
import { parseSince } from '../../src/audit/since.js';
import { hostAuditRules, hostModeOf, refusedSetCreateLines, refusedSetsToDestroy } from '../../src/plan/audit-rules.js';
import { parseIptablesSave } from '../../src/plan/observed.js';
import { parseConfig } from '../../src/config/load.js';
import { buildDesired } from '../../src/plan/desired.js';
import { diff } from '../../src/plan/diff.js';
import { describeOp } from '../../src/plan/render.js';
import { FakeKernel } from '../support/fake-kernel.js';
import { fixture } from '../support/files.js';
import { gateLogLine } from '../support/gate-log.js';

const T0 = 1_790_000_000;

describe('host recording rules (src/plan/audit-rules.ts)', () => {
  it('one rule counts found tuples and adds new ones (so each NEW packet counts once); only audit accepts', () => {
    expect(hostAuditRules(4, 'enforce')).toEqual([
      '-A EGRESSFW-HOST -m conntrack --ctstate NEW -m set ! --match-set egressfw-refused-host-v4 dst,dst -m comment --comment "egressfw refused-record" -j SET --add-set egressfw-refused-host-v4 dst,dst',
    ]);
    const audit = hostAuditRules(6, 'audit');
    expect(audit[0]).toContain('! --match-set egressfw-refused-host-v6 dst,dst');
    expect(audit.at(-1)).toBe('-A EGRESSFW-HOST -m comment --comment "egressfw audit" -j ACCEPT');
  });

  it('reads the mode back from iptables-save output (null when EGRESSFW-HOST does not record)', () => {
    const save = (rules: string[]) => parseIptablesSave(['*filter', ':EGRESSFW-HOST - [0:0]', ...rules, 'COMMIT'].join('\n')).chains.get('EGRESSFW-HOST')!;
    const allowed = '-A EGRESSFW-HOST -m set --match-set egressfw-v4 dst,dst -m comment --comment "egressfw allowed" -j ACCEPT';
    expect(hostModeOf(save([allowed, ...hostAuditRules(4, 'audit')]))).toBe('audit');
    expect(hostModeOf(save([allowed, ...hostAuditRules(4, 'enforce')]))).toBe('enforce');
    expect(hostModeOf(save([allowed]))).toBeNull(); // after a ufw reload, before egressfw refilled it
  });

  it('creates only the record sets that are missing and destroys only those that exist', () => {
    expect(refusedSetCreateLines()).toEqual([
      'create egressfw-refused-host-v4 hash:ip,port family inet hashsize 1024 maxelem 65536 timeout 604800 counters',
      'create egressfw-refused-host-v6 hash:ip,port family inet6 hashsize 1024 maxelem 65536 timeout 604800 counters',
    ]);
    expect(refusedSetCreateLines(new Set(['egressfw-refused-host-v4', 'egressfw-v4']))).toEqual([
      'create egressfw-refused-host-v6 hash:ip,port family inet6 hashsize 1024 maxelem 65536 timeout 604800 counters',
    ]);
    expect(refusedSetsToDestroy(new Set(['egressfw-refused-host-v6', 'egressfw-v6']))).toEqual(['egressfw-refused-host-v6']);
  });
});

describe('host recording in the plan (spliced into desired/diff/render/rollback/uninstall)', () => {
  const cfg = (mode: string) => parseConfig(`mode: ${mode}\nallow: [{ domain: api.example.com }]\ndns: { servers: [198.51.100.53] }\n`, 'x');
  const dns = [{ host: '198.51.100.53', port: 53 }];
  const kernel = () => {
    const k = new FakeKernel();
    k.ufw.files = { 4: fixture('before.rules'), 6: fixture('before6.rules') };
    return k;
  };

  it('creates the record sets once, in the ipset step; switching mode rewrites the chains and the IPv6 block (its ping6 refusal is enforce only)', () => {
    const k = kernel();
    const first = diff(buildDesired(cfg('audit'), [], dns), k.observe());
    expect(first.ops.filter((o) => o.kind === 'record-set').map(describeOp)).toEqual([
      'create ipset egressfw-refused-host-v4 (records refused host connections; kept across syncs)',
      'create ipset egressfw-refused-host-v6 (records refused host connections; kept across syncs)',
    ]);
    k.apply(first);
    expect(k.tables[4].get('EGRESSFW-HOST')!.slice(-2)).toEqual(hostAuditRules(4, 'audit'));
    expect(diff(buildDesired(cfg('audit'), [], dns), k.observe()).ops).toEqual([]);
    const toEnforce = diff(buildDesired(cfg('enforce'), [], dns), k.observe());
    expect(toEnforce.ops.map((o) => o.kind).sort()).toEqual(['chain', 'chain', 'nft', 'ufw-block', 'ufw-reload']);
    expect(toEnforce.ops.find((o) => o.kind === 'ufw-block')).toMatchObject({ family: 6, after: expect.stringContaining('--icmpv6-type 128') });
    k.apply(toEnforce);
    expect(k.tables[6].get('EGRESSFW-HOST')!.at(-1)).toBe(hostAuditRules(6, 'enforce')[0]);
    expect(k.sets.has('egressfw-refused-host-v4')).toBe(true);
  });

  it('no host management, no record sets', () => {
    const c = parseConfig('host: { enabled: false }\nallow: []\ndns: { servers: [198.51.100.53] }\n', 'x');
    expect(diff(buildDesired(c, [], dns), kernel().observe()).ops.some((o) => o.kind === 'record-set')).toBe(false);
  });
});

describe('kernel record parsers (real nft 1.0.6 / ipset 7.17 output)', () => {
  it('nft: saddr . daddr . proto . dport with counters; last update from timeout - expires', () => {
    const v4 = parseNftRefusedSet(fixture('audit/nft-refused4.json'));
    expect(v4.size).toBe(65536);
    expect(v4.elements).toBe(2);
    expect(v4.records).toEqual([
      { family: 4, src: '198.51.100.66', dst: '203.0.113.20', proto: 'udp', port: '53', packets: 1, bytes: 29, lastAgo: 2 },
      { family: 4, src: '198.51.100.66', dst: '203.0.113.20', proto: 'tcp', port: '443', packets: 3, bytes: 180, lastAgo: 3 },
    ]);
    const v6 = parseNftRefusedSet(fixture('audit/nft-refused6.json'));
    expect(v6.records).toEqual([{ family: 6, src: '2001:db8:1::2', dst: '2001:db8:20::20', proto: 'tcp', port: '80', packets: 2, bytes: 160, lastAgo: 2 }]);
  });

  it('nft: an empty set, bare elements, protocol numbers; garbage is an error', () => {
    const doc = (elem?: unknown[]) => JSON.stringify({ nftables: [{ metainfo: {} }, { set: { name: 'refused4', size: 10, timeout: 100, ...(elem ? { elem } : {}) } }] });
    expect(parseNftRefusedSet(doc()).records).toEqual([]);
    expect(parseNftRefusedSet(doc([{ concat: ['198.51.100.66', '203.0.113.9', 200, 0] }])).records).toEqual([
      { family: 4, src: '198.51.100.66', dst: '203.0.113.9', proto: '200', port: '0', packets: 0, bytes: 0 },
    ]);
    expect(() => parseNftRefusedSet('Error: No such file or directory')).toThrow(/no valid JSON/);
    // th dport of an ICMP packet is its checksum: reported as port 0, tracked by the kernel's value
    const icmp = parseNftRefusedSet(doc([{ elem: { val: { concat: ['198.51.100.66', '203.0.113.9', 'icmp', 52301] }, counter: { packets: 1, bytes: 84 } } }])).records[0]!;
    expect(icmp).toMatchObject({ proto: 'icmp', port: '0', rawPort: '52301' });
  });

  it('ipset: destination, proto:port (ICMP by type name) and how long ago the element was added', () => {
    const v4 = parseIpsetRefusedSet(fixture('audit/ipset-host-v4.txt'), 'egressfw-refused-host-v4');
    expect(v4.size).toBe(65536);
    expect(v4.records).toEqual([
      { family: 4, src: HOST, dst: '203.0.113.30', proto: 'icmp', port: 'echo-request', packets: 2, bytes: 168, addedAgo: 1 },
      { family: 4, src: HOST, dst: '203.0.113.20', proto: 'tcp', port: '443', packets: 5, bytes: 300, addedAgo: 801 },
      { family: 4, src: HOST, dst: '203.0.113.30', proto: 'udp', port: '123', packets: 1, bytes: 76, addedAgo: 4801 },
    ]);
    const v6 = parseIpsetRefusedSet(fixture('audit/ipset-host-v6.txt'), 'egressfw-refused-host-v6');
    expect(v6.records.map((r) => [r.dst, r.proto, r.port, r.packets])).toEqual([['2001:db8:30::30', 'tcp', '8443', 2]]);
    // another set's lines are not ours
    expect(parseIpsetRefusedSet(fixture('audit/ipset-host-v6.txt'), 'egressfw-refused-host-v4').records).toEqual([]);
  });

  it('the forward chain mode: last rule accepts (audit) or rejects (enforce)', () => {
    expect(nftChainMode(fixture('audit/nft-chain-audit.json'))).toBe('audit');
    expect(nftChainMode(fixture('audit/nft-chain-enforce.json'))).toBe('enforce');
    expect(nftChainMode('not json')).toBeNull();
  });
});

const web: ContainerInfo = {
  id: 'a'.repeat(64),
  name: '/shop-web-1',
  image: 'shop/web:1.4',
  labels: { 'com.docker.compose.project': 'shop', 'com.docker.compose.service': 'web' },
  networks: [{ name: 'shop_default', ipv4: '198.51.100.66', ipv6: '2001:db8:1:0::2' }],
  state: 'running',
};
const batch: ContainerInfo = { id: 'b'.repeat(64), name: 'batch-1', image: 'busybox:latest', labels: {}, networks: [{ name: 'jobs', ipv4: '198.51.100.66', ipv6: null }], state: 'running' };
const exited = (c: ContainerInfo): ContainerInfo => ({ ...c, state: 'exited', networks: c.networks.map((n) => ({ ...n, ipv4: '', ipv6: '' })) });

describe('attribution: which container held a source IP when', () => {
  it('keeps a span per IP and holder; an exited container keeps its name and its span', () => {
    let h = applySnapshot(emptyHistory(), [web], T0);
    h = applySnapshot(h, [web], T0 + 5);
    expect(h.spans).toEqual([
      { ip: '198.51.100.66', id: web.id, from: T0, to: T0 + 5, network: 'shop_default' },
      { ip: '2001:db8:1::2', id: web.id, from: T0, to: T0 + 5, network: 'shop_default' },
    ]);
    h = applySnapshot(h, [exited(web)], T0 + 10);
    expect(h.containers.get(web.id)).toMatchObject({ name: 'shop-web-1', project: 'shop', service: 'web', state: 'exited', lastRunning: T0 + 5 });
    h = applySnapshot(h, [batch], T0 + 20); // web removed; its address now belongs to batch-1
    expect(h.containers.get(web.id)!.state).toBe('removed');
    expect(h.spans.filter((s) => s.ip === '198.51.100.66').map((s) => [s.id[0], s.from, s.to])).toEqual([
      ['a', T0, T0 + 5],
      ['b', T0 + 20, T0 + 20],
    ]);
    // containers never seen running are not kept
    expect(applySnapshot(emptyHistory(), [exited(batch)], T0).containers.size).toBe(0);
  });

  it('covering span: sure; between two holders: both; only one side: the nearest', () => {
    let h = applySnapshot(emptyHistory(), [web], T0);
    h = applySnapshot(h, [web], T0 + 5);
    h = applySnapshot(h, [batch], T0 + 20);
    expect(attribute(h.spans, '198.51.100.66', T0 + 3)).toEqual({ who: [web.id], sure: true });
    expect(attribute(h.spans, '198.51.100.66', T0 + 12)).toEqual({ who: [web.id, batch.id], sure: false });
    expect(attribute(h.spans, '198.51.100.66', T0 - 30)).toEqual({ who: [web.id], sure: true }); // connected just before the first snapshot
    expect(attribute(h.spans, '198.51.100.66', T0 - 300)).toEqual({ who: [web.id], sure: false }); // minutes before it: only the nearest
    expect(attribute(h.spans, '198.51.100.66', T0 + 99)).toEqual({ who: [batch.id], sure: false });
    expect(attribute(h.spans, '198.51.100.99', T0)).toEqual({ who: [], sure: false });
  });
});

const rec = (r: Partial<KernelRecord>): KernelRecord => ({ family: 4, src: '198.51.100.66', dst: '203.0.113.20', proto: 'tcp', port: '443', packets: 1, bytes: 60, ...r });
const coll = (c: Partial<Collection>): Collection => ({ now: T0, records: [], read: ['containers4', 'containers6', 'host4', 'host6'], containers: null, domains: null, gate: [], modes: { containers: 'audit', host: 'audit' }, ...c });

describe('collection: counter growth becomes attempts, attributed when collected', () => {
  it('first read counts all packets; later reads count the growth; a counter that went down restarted', () => {
    let h = applyCollection(emptyHistory(), coll({ containers: [web], records: [rec({ packets: 3, lastAgo: 10 })] }));
    // attempted 10 s before the first snapshot that saw web: the nearest snapshot, close enough to be sure
    expect(h.hits).toEqual([{ at: T0, src: '198.51.100.66', dst: '203.0.113.20', proto: 'tcp', port: '443', n: 3, last: T0 - 10, who: [web.id], sure: true, mode: 'audit' }]);
    h = applyCollection(h, coll({ now: T0 + 30, containers: [web], records: [rec({ packets: 4, lastAgo: 5 })] }));
    expect(h.hits[1]).toMatchObject({ n: 1, who: [web.id], sure: true, first: T0 + 25, last: T0 + 25 });
    h = applyCollection(h, coll({ now: T0 + 45, containers: [web], records: [rec({ packets: 4, lastAgo: 20 })] }));
    expect(h.hits).toHaveLength(2); // no growth, no attempt
    // web has exited by now: the attempts after its last snapshot still go to it (nobody else held the address)
    h = applyCollection(h, coll({ now: T0 + 60, containers: [exited(web)], records: [rec({ packets: 6, lastAgo: 10 })], modes: { containers: 'enforce', host: null } }));
    expect(h.hits[2]).toEqual({ at: T0 + 60, prev: T0 + 45, src: '198.51.100.66', dst: '203.0.113.20', proto: 'tcp', port: '443', n: 2, last: T0 + 50, who: [web.id], sure: true, mode: 'enforce' });
    h = applyCollection(h, coll({ now: T0 + 90, records: [rec({ packets: 1, lastAgo: 1 })] }));
    expect(h.hits[3]).toMatchObject({ n: 1, first: T0 + 89, last: T0 + 89 });
  });

  it('host elements: first seen is the ipset add time; an element re-added since the last read counts from zero', () => {
    const hostRec = rec({ src: HOST, packets: 4, addedAgo: 100 });
    let h = applyCollection(emptyHistory(), coll({ records: [hostRec] }));
    expect(h.hits[0]).toMatchObject({ src: HOST, n: 4, first: T0 - 100, who: [], mode: 'audit' });
    expect(h.hits[0]!.sure).toBeUndefined();
    // the element expired and was added again 10 s ago with 6 packets since: 6 attempts, not 2
    h = applyCollection(h, coll({ now: T0 + 60, records: [{ ...hostRec, packets: 6, addedAgo: 10 }] }));
    expect(h.hits[1]).toMatchObject({ n: 6, first: T0 + 50, prev: T0 });
  });

  it('elements that differ only in a meaningless ICMP "port" are counted apart and reported together', () => {
    const ping = (raw: string, packets: number): KernelRecord => rec({ proto: 'icmp', port: '0', rawPort: raw, packets });
    let h = applyCollection(emptyHistory(), coll({ records: [ping('52301', 1), ping('52045', 1)] }));
    h = applyCollection(h, coll({ now: T0 + 30, records: [ping('52301', 1), ping('52045', 1), ping('51789', 1)] }));
    expect(h.hits.map((x) => [x.proto, x.port, x.n])).toEqual([
      ['icmp', '0', 1],
      ['icmp', '0', 1],
      ['icmp', '0', 1],
    ]);
  });

  it('a record set not read this time keeps its counters; one read without the element forgets it', () => {
    let h = applyCollection(emptyHistory(), coll({ records: [rec({ packets: 3 }), rec({ src: HOST, packets: 2 })] }));
    h = applyCollection(h, coll({ now: T0 + 30, records: [], read: ['containers4'] }));
    expect([...h.tracked.keys()]).toEqual([`${HOST}|203.0.113.20|tcp|443`]);
  });

  it('names: the gate answer to this client first, then anyone, then egressfw resolution history', () => {
    const gate = parseGateLog(
      [
        gateLogLine({ at: (T0 - 50) * 1000, client: '198.51.100.7', name: 'cdn.other.test.', verdict: 'allowed', ips: ['203.0.113.20'] }),
        gateLogLine({ at: (T0 - 60) * 1000, client: '198.51.100.66', name: 'API.Blocked.test', verdict: 'allowed', ips: ['203.0.113.20'] }),
        '{"time": "garbage',
        gateLogLine({ at: (T0 - 5) * 1000, client: '198.51.100.66', name: 'tracker.test', verdict: 'refused' }),
      ].join('\n'),
    );
    expect(gate).toHaveLength(3);
    expect(namesFor('203.0.113.20', T0, '198.51.100.66', gate, [])).toEqual([{ name: 'api.blocked.test', via: 'gate' }]);
    expect(namesFor('203.0.113.20', T0, '198.51.100.9', gate, [])).toEqual([
      { name: 'cdn.other.test', via: 'gate' },
      { name: 'api.blocked.test', via: 'gate' },
    ]);
    expect(namesFor('203.0.113.20', T0 - 100, '198.51.100.66', gate, [])).toEqual([]); // answers after the attempt do not count
    const spans = [
      { ip: '203.0.113.40', name: 'old.test', from: T0 - 900, to: T0 - 800 },
      { ip: '203.0.113.40', name: 'allowed.test', from: T0 - 100, to: T0 + 50 },
    ];
    expect(namesFor('203.0.113.40', T0, undefined, gate, spans)).toEqual([
      { name: 'allowed.test', via: 'resolution' },
      { name: 'old.test', via: 'resolution' },
    ]);
    expect([...gateRefusals(gate, T0 - 10, T0).entries()]).toEqual([['tracker.test', new Set(['198.51.100.66'])]]);
  });
});

describe('history file', () => {
  const sample = (): History => {
    let h = applyCollection(emptyHistory(), coll({ containers: [web], records: [rec({ packets: 3, lastAgo: 10 }), rec({ src: HOST, dst: '203.0.113.30', packets: 1, addedAgo: 5 })] }));
    h = { ...h, names: [{ ip: '203.0.113.40', name: 'allowed.test', from: T0 - 100, to: T0 }] };
    h.hits[0]!.names = [{ name: 'api.blocked.test', via: 'gate' }];
    return h;
  };

  it('round-trips through JSON lines and skips damaged lines', () => {
    const h = sample();
    const text = serializeHistory(h);
    expect(text.split('\n')[0]).toBe(`{"k":"meta","version":1,"collectedAt":${T0},"snapshotAt":${T0}}`);
    expect(parseHistory(text)).toEqual({ history: h, skipped: 0 });
    const damaged = `${text}{"k":"hit","at":"x"}\nnot json\n{"k":"future-kind"}\n`;
    const back = parseHistory(damaged);
    expect(back.skipped).toBe(3);
    expect(back.history).toEqual(h);
    expect(parseHistory(null).history).toEqual(emptyHistory());
  });

  it('merges old hits into coarser buckets without losing counts, then caps', () => {
    const now = T0 + 10 * 86400;
    const hit = (at: number, n = 1): Hit => ({ at, src: '198.51.100.66', dst: '203.0.113.20', proto: 'tcp', port: '443', n, who: ['x'], last: at - 1 });
    const h: History = { ...emptyHistory(), hits: [hit(now - 60), hit(now - 30), hit(now - 7200), hit(now - 7100), hit(now - 7000 - 300 * 12), hit(now - 3 * 86400, 5), hit(now - 3 * 86400 + 60, 2), hit(now - 40 * 86400, 9)] };
    expect([bucketFor(60), bucketFor(7200), bucketFor(3 * 86400), bucketFor(9 * 86400)]).toEqual([0, 300, 3600, 86400]);
    const t = trimHistory(h, now);
    expect(t.hits.reduce((s, x) => s + x.n, 0)).toBe(12); // the 40-day-old hit (9) is gone (maxAge 30 d), nothing else lost
    const merged = t.hits.find((x) => x.n === 7)!;
    expect(merged).toMatchObject({ at: now - 3 * 86400 + 60, last: now - 3 * 86400 + 59 });
    expect(t.hits.filter((x) => x.at >= now - 3600)).toHaveLength(2); // the last hour stays as collected
    const capped = trimHistory(h, now, { hits: 2, spans: 1, names: 1, maxAge: 30 * 86400 });
    expect(capped.hits.map((x) => x.at)).toEqual([now - 60, now - 30]);
  });

  it('forgets containers nothing refers to any more', () => {
    const h = applySnapshot(applySnapshot(emptyHistory(), [web], T0), [batch], T0 + 40 * 86400);
    const t = trimHistory(h, T0 + 40 * 86400);
    expect([...t.containers.keys()]).toEqual([batch.id]);
  });
});

describe('--since', () => {
  it('reads durations and rejects the rest with the fix', () => {
    expect([parseSince('90s'), parseSince('30m'), parseSince('1h'), parseSince('24h'), parseSince('7d'), parseSince('2w'), parseSince('600')]).toEqual([90, 1800, 3600, 86400, 604800, 1209600, 600]);
    expect(() => parseSince('yesterday')).toThrow(/give a duration like 30m, 1h, 24h or 7d/);
    expect(() => parseSince('0h')).toThrow(/--since/);
  });
});
