import { describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as yaml } from 'yaml';
import { applyCollection, type Collection, type ContainerInfo } from '../../src/audit/collect.js';
import { emptyHistory, type History } from '../../src/audit/history.js';
import { gateRefusals, parseGateLog } from '../../src/audit/destination-names.js';
import { HOST, type KernelRecord } from '../../src/audit/records.js';
import { buildReport, renderReportText, reportJson } from '../../src/audit/report.js';
import { renderSuggestion } from '../../src/audit/suggest.js';
import { parseConfig } from '../../src/config/load.js';
import { golden } from '../support/files.js';
import { gateLogLine } from '../support/gate-log.js';

const T0 = 1_790_000_000;

const web: ContainerInfo = {
  id: 'a1'.repeat(32),
  name: '/shop-web-1',
  image: 'shop/web:1.4',
  labels: { 'com.docker.compose.project': 'shop', 'com.docker.compose.service': 'web' },
  networks: [{ name: 'shop_default', ipv4: '198.51.100.66', ipv6: '2001:db8:1::2' }],
  state: 'running',
};
const batch: ContainerInfo = { id: 'b2'.repeat(32), name: 'batch-1', image: 'busybox:latest', labels: {}, networks: [{ name: 'jobs', ipv4: '198.51.100.130', ipv6: null }], state: 'running' };
const gone = (c: ContainerInfo): ContainerInfo => ({ ...c, state: 'exited', networks: c.networks.map((n) => ({ ...n, ipv4: '', ipv6: '' })) });

const config = parseConfig(
  `allow:
  - domain: allowed.test
    ports: [443]
dns:
  servers: [198.51.100.53]
`,
  'egressfw.yml',
);

const gateLog = [
  gateLogLine({ at: (T0 - 60) * 1000, client: '198.51.100.66', name: 'api.blocked.test', verdict: 'allowed', ips: ['203.0.113.20'] }),
  gateLogLine({ at: (T0 + 70) * 1000, client: '198.51.100.130', name: 'tracker.example', verdict: 'refused' }),
].join('\n');
const gate = parseGateLog(gateLog);

const r = (src: string, dst: string, proto: string, port: string, packets: number, ago: number): KernelRecord =>
  src === HOST
    ? { family: dst.includes(':') ? 6 : 4, src, dst, proto, port, packets, bytes: packets * 60, addedAgo: ago }
    : { family: dst.includes(':') ? 6 : 4, src, dst, proto, port, packets, bytes: packets * 60, lastAgo: ago };
const all: Collection['read'] = ['containers4', 'containers6', 'host4', 'host6'];

/**
 * Three collections a minute apart: web (compose shop/web) connects out and exits; batch-1 (a user network)
 * reaches an address of a name egressfw resolves on another port; the host sends NTP and a ping; an address
 * no snapshot ever held tries SSH. Audit for two collections, then enforce.
 */
function scenario(): History {
  const domains = { 'allowed.test': { ips: { '203.0.113.40': { firstSeen: T0 - 100, lastSeen: T0 + 50, ttl: 5 } }, status: 'ok' } };
  let h = applyCollection(emptyHistory(), {
    now: T0,
    read: all,
    containers: [web],
    domains,
    gate,
    modes: { containers: 'audit', host: 'audit' },
    records: [r('198.51.100.66', '203.0.113.20', 'tcp', '443', 3, 1), r(HOST, '203.0.113.30', 'udp', '123', 1, 40)],
  });
  h = applyCollection(h, {
    now: T0 + 60,
    read: all,
    containers: [gone(web), batch],
    domains,
    gate,
    modes: { containers: 'audit', host: 'audit' },
    records: [
      r('198.51.100.66', '203.0.113.20', 'tcp', '443', 5, 59),
      r('2001:db8:1::2', '2001:db8:20::20', 'tcp', '80', 2, 58),
      r('198.51.100.130', '203.0.113.40', 'tcp', '8443', 1, 5),
      r('198.51.100.99', '203.0.113.50', 'tcp', '22', 4, 20),
      r(HOST, '203.0.113.30', 'udp', '123', 1, 100),
      r(HOST, '203.0.113.30', 'icmp', 'echo-request', 2, 30),
    ],
  });
  return applyCollection(h, {
    now: T0 + 120,
    read: all,
    containers: [batch],
    domains,
    gate,
    modes: { containers: 'enforce', host: 'enforce' },
    records: [
      r('198.51.100.66', '203.0.113.20', 'tcp', '443', 5, 119),
      r('2001:db8:1::2', '2001:db8:20::20', 'tcp', '80', 2, 118),
      r('198.51.100.130', '203.0.113.40', 'tcp', '8443', 3, 2),
      r('198.51.100.99', '203.0.113.50', 'tcp', '22', 4, 80),
      r(HOST, '203.0.113.30', 'udp', '123', 1, 160),
      r(HOST, '203.0.113.30', 'icmp', 'echo-request', 2, 90),
    ],
  });
}

describe('report', () => {
  const report = buildReport({ history: scenario(), now: T0 + 130, since: 3600, notes: ['ipset egressfw-refused-host-v4 holds 60000 of 65536 records: example note'] });

  it('groups per container (exited ones by name), the host and unattributed sources', () => {
    expect(report.sources.map((s) => [s.kind, s.label, s.count])).toEqual([
      ['container', 'batch-1', 3],
      ['container', 'shop-web-1', 7],
      ['host', 'host', 3],
      ['unknown', '198.51.100.99', 4],
    ]);
    const web1 = report.sources[1]!;
    expect(web1.containers[0]).toMatchObject({ state: 'removed', project: 'shop', service: 'web' });
    expect(web1.destinations[0]).toMatchObject({ dst: '203.0.113.20', count: 5, audited: 5, refused: 0, names: [{ name: 'api.blocked.test', via: 'gate' }] });
    const b = report.sources[0]!.destinations[0]!;
    // 1 let through in audit, 2 refused after the switch; named by egressfw's resolution history
    expect(b).toMatchObject({ count: 3, audited: 1, refused: 2, names: [{ name: 'allowed.test', via: 'resolution' }], first: T0 + 55, firstExact: true, last: T0 + 118, lastExact: true });
    const host = report.sources[2]!.destinations.find((d) => d.proto === 'udp')!;
    expect(host).toMatchObject({ count: 1, first: T0 - 40, firstExact: true, last: T0, lastExact: false });
  });

  it('a shorter window leaves out what was last seen before it', () => {
    const short = buildReport({ history: scenario(), now: T0 + 130, since: 60 });
    // the host's ping and the SSH attempts were last counted at the collection of T0 + 60, before the window
    expect(short.sources.map((s) => s.label)).toEqual(['batch-1']);
  });

  it('text (golden)', () => {
    const text = renderReportText(report);
    expect(text).toContain('container shop-web-1 (compose shop/web; image shop/web:1.4; id a1a1a1a1a1a1; removed)');
    expect(text).toMatch(/203\.0\.113\.20 +443\/tcp +api\.blocked\.test \(gate\) +5 /);
    golden('audit-report.txt', text);
  });

  it('JSON (golden)', () => {
    const doc = reportJson(report);
    expect(doc.sources[0]!.destinations[0]).toMatchObject({ ip: '203.0.113.40', port: '8443', refused: 2, audited: 1, firstSeenExact: true });
    golden('audit-report.json', `${JSON.stringify(doc, null, 2)}\n`);
  });

  it('empty window', () => {
    const text = renderReportText(buildReport({ history: emptyHistory(), now: T0, since: 3600 }));
    expect(text).toContain('nothing collected yet');
    expect(text).toContain('no refused connections in this window');
  });
});

describe('suggest', () => {
  const report = buildReport({ history: scenario(), now: T0 + 130, since: 86400 });
  const text = renderSuggestion({ report, allowed: config.domains, gateRefused: gateRefusals(gate, T0 + 130 - 86400, T0 + 130) });

  it('names with ports, who needed them, unnamed addresses as commented cidr candidates (golden)', () => {
    expect(text).toContain('  # needed by shop/web (5 attempts)\n  - domain: api.blocked.test\n    ports: [443]');
    expect(text).toContain('  # already allowed on 443/tcp: this adds 8443/tcp\n  - domain: allowed.test\n    ports: [8443]');
    expect(text).toContain('  # - cidr: 203.0.113.50/32\n  #   ports: [22]');
    expect(text).toContain('#   - domain: tracker.example  # asked by batch-1');
    expect(text).toContain('#   icmp echo-request to 203.0.113.30 from the host (2 attempts)');
    golden('audit-suggest.yml', text);
  });

  it('is valid YAML whose allow entries merge into the config (duplicates add ports)', () => {
    const fragment = parseYaml(text) as { allow: unknown[] };
    const base = parseYaml('allow:\n  - domain: allowed.test\n    ports: [443]\ndns:\n  servers: [198.51.100.53]\n') as { allow: unknown[] };
    const merged = parseConfig(yaml({ ...base, allow: [...base.allow, ...fragment.allow] }), 'merged.yml');
    expect(merged.domains.map((d) => [d.name, d.ports.map((p) => `${p.port}/${p.proto}`)])).toEqual([
      ['allowed.test', ['443/tcp', '8443/tcp']],
      ['api.blocked.test', ['443/tcp']],
    ]);
    expect(merged.cidrs).toEqual([]); // candidates stay commented out
  });

  it('with nothing to suggest it is still a valid, empty fragment', () => {
    const empty = renderSuggestion({ report: buildReport({ history: emptyHistory(), now: T0, since: 3600 }) });
    expect(parseYaml(empty)).toEqual({ allow: [] });
  });

  it('an address already allowed by name and port is explained, not suggested again', () => {
    const h = applyCollection(emptyHistory(), {
      now: T0,
      read: all,
      containers: [batch],
      domains: { 'allowed.test': { ips: { '203.0.113.41': { firstSeen: T0 - 900, lastSeen: T0 - 800, ttl: 5 } }, status: 'ok' } },
      gate: [],
      modes: { containers: 'enforce', host: null },
      records: [r('198.51.100.130', '203.0.113.41', 'tcp', '443', 1, 3)],
    });
    const s = renderSuggestion({ report: buildReport({ history: h, now: T0, since: 3600 }), allowed: config.domains });
    expect(parseYaml(s)).toEqual({ allow: [] });
    expect(s).toContain('#   allowed.test (443/tcp): needed by batch-1 (1 attempt) to 203.0.113.41');
  });
});
