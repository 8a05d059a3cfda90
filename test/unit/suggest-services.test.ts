import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { Report, ReportDest, ReportSource } from '../../src/audit/report.js';
import { policyNameFor, renderPerService } from '../../src/audit/suggest-services.js';
import { assignPolicy } from '../../src/policy/assign.js';
import { golden } from '../support/files.js';

const dest = (dst: string, port: string, names: string[], via: 'gate' | 'resolution' = 'resolution'): ReportDest => ({
  dst, proto: 'tcp', port, names: names.map((name) => ({ name, via })) as ReportDest['names'], count: 3, refused: 0, audited: 3, first: 1_700_000_000, firstExact: true, last: 1_700_000_100, lastExact: true,
});
const container = (name: string, ips: string[], destinations: ReportDest[], project?: string, service?: string): ReportSource => ({
  kind: 'container', label: name, containers: [{ id: `${name}-id`, name, image: 'busybox', ...(project ? { project } : {}), ...(service ? { service } : {}), state: 'running', lastRunning: 0 }], ips, sure: true, count: 3, destinations,
});
const report: Report = {
  from: 1_699_913_600, to: 1_700_000_000, since: 86_400, notes: [],
  sources: [
    container('shop_api-wrapper_1', ['198.51.100.130'], [dest('203.0.113.50', '443', ['api.stripe.com'], 'gate'), dest('203.0.113.51', '8443', [])], 'shop', 'api-wrapper'),
    container('shop_api-wrapper_2', ['198.51.100.131'], [dest('203.0.113.50', '443', ['api.stripe.com'])], 'shop', 'api-wrapper'),
    container('shop_web_1', ['198.51.100.132'], [dest('203.0.113.60', '443', ['cdn.example.net'])], 'shop', 'web'),
    container('Scratch_Box', ['198.51.100.133'], [dest('203.0.113.70', '80', ['deb.debian.org'])]),
    { kind: 'host', label: 'host', containers: [], ips: [], sure: true, count: 1, destinations: [dest('203.0.113.80', '443', ['host-only.example'])] },
  ],
};

describe('suggest --per-service', () => {
  const text = renderPerService({ report, gateRefused: new Map([['tracker.example', new Set(['198.51.100.132'])]]) });

  it('proposes one policy per compose service (both replicas in one), per container name outside compose, and the assign entries (golden)', () => {
    golden('suggest-per-service.yml', text);
    expect(text).not.toContain('host-only.example');
  });

  it('is a config egressfw loads, and its assign entries select the services they name', () => {
    const c = parseConfig(`${text}dns:\n  gate:\n    enabled: true\n`, 'suggested.yml');
    expect(c.policies.map((p) => p.name)).toEqual(['scratch-box', 'shop-api-wrapper', 'shop-web']);
    expect(c.policies.find((p) => p.name === 'shop-api-wrapper')!.domains.map((d) => d.name)).toEqual(['api.stripe.com']);
    const labels = { 'com.docker.compose.project': 'shop', 'com.docker.compose.service': 'web' };
    expect(assignPolicy(c, { name: 'shop_web_3', labels }).policy).toBe('shop-web');
    expect(assignPolicy(c, { name: 'Scratch_Box', labels: {} }).policy).toBe('scratch-box');
  });

  it('policy names follow the config\'s rule, never a reserved one, never twice', () => {
    const taken = new Set<string>();
    expect(policyNameFor('My_Project-Web.Front', taken)).toBe('my-project-web-front');
    expect(policyNameFor('my project web front', taken)).toBe('my-project-web-front-2');
    expect(policyNameFor('host', taken)).toBe('host-svc');
    expect(policyNameFor('123', taken)).toBe('svc');
  });
});

describe('report: refusals per policy and per service', async () => {
  const { groupByPolicy, groupsText } = await import('../../src/audit/report.js');
  it('groups container sources by the policy their container gets, then by compose service', () => {
    const g = groupByPolicy(report, (c) => (c.service === 'api-wrapper' ? 'payments' : 'none'));
    // most attempts first; a tie by name
    expect(g).toEqual([
      { policy: 'none', count: 6, services: [{ service: 'Scratch_Box', count: 3, destinations: 1 }, { service: 'shop/web', count: 3, destinations: 1 }] },
      { policy: 'payments', count: 6, services: [{ service: 'shop/api-wrapper', count: 6, destinations: 2 }] },
    ]);
    expect(groupsText(g)).toContain('    shop/api-wrapper: 6 attempts to 2 destinations');
  });
});
