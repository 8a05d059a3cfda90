import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { buildDesired } from '../../src/plan/desired.js';
import { diff, mapDelta } from '../../src/plan/diff.js';
import { parseNftList, restoreBatch } from '../../src/plan/nft.js';
import { assignContainers, inventoryOf, resolvedNames, type InventoryContainer } from '../../src/plan/policies.js';
import { renderNft } from '../../src/plan/render.js';
import type { AllowedDomain } from '../../src/resolve/merge.js';
import { FakeKernel } from '../support/fake-kernel.js';
import { appliedRules } from '../../src/plan/flows.js';
import { nothingInstalled } from '../../src/plan/observed.js';
import { golden } from '../support/files.js';

const CONFIG = `allow:
  - domain: deb.debian.org
policies:
  payments:
    allow:
      - domain: api.stripe.com
      - cidr: 192.0.2.0/24
        ports: ["8443/tcp"]
  ci:
    allow:
      - domain: github.com
      - domain: intranet.example
        allowPrivate: true
containers:
  default: none
  assign:
    - policy: payments
      match: { project: shop, service: api-wrapper }
    - policy: host
      match: { name: "builder" }
dns:
  servers: [198.51.100.53]
`;
const config = parseConfig(CONFIG, 'p.yml');
const dns = [{ host: '198.51.100.53', port: 53 }];
const ip = (addr: string, family: 4 | 6 = 4) => ({ ip: addr, family, source: 'answer' as const, until: 0 });
const allowed: AllowedDomain[] = [
  { name: 'api.stripe.com', status: 'ok', detail: '', ips: [ip('203.0.113.50'), ip('2001:db8:50::1', 6)] },
  { name: 'deb.debian.org', status: 'ok', detail: '', ips: [ip('203.0.113.60')] },
  { name: 'github.com', status: 'ok', detail: '', ips: [ip('203.0.113.70')] },
  // resolved with the guard lifted (ci allows it): a private address only ci may use
  { name: 'intranet.example', status: 'ok', detail: '', ips: [ip('10.1.2.3')] },
];
const compose = (project: string, service: string) => ({ 'com.docker.compose.project': project, 'com.docker.compose.service': service });
const containers: InventoryContainer[] = [
  { id: 'a1', name: 'shop-api-wrapper-1', labels: compose('shop', 'api-wrapper'), addresses: ['198.51.100.130', '2001:db8:1:1::5'] },
  { id: 'b2', name: 'shop-ci-1', labels: { ...compose('shop', 'ci'), 'egressfw.policy': 'ci' }, addresses: ['198.51.100.131'] },
  { id: 'c3', name: 'shop-web-1', labels: compose('shop', 'web'), addresses: ['198.51.100.132'] },
  { id: 'd4', name: 'builder', labels: {}, addresses: ['198.51.100.66'] },
  { id: 'e5', name: 'typo', labels: { 'egressfw.policy': 'paymnts' }, addresses: ['198.51.100.133'] },
];

describe('policies in the kernel', () => {
  const desired = buildDesired(config, allowed, dns, containers);
  const pol = desired.nft!.policies!;

  it('flows cut after an apply are judged by each source\'s own policy (src/plan/flows.ts)', () => {
    const by = appliedRules(config, desired, dns, nothingInstalled(), 'full').containers!.bySource!;
    expect(by.get('198.51.100.130')!.sets[4]).toContain('203.0.113.50 . tcp . 443'); // payments
    expect(by.get('198.51.100.130')!.sets[4]).not.toContain('203.0.113.60 . tcp . 443');
    expect(by.get('2001:db8:1:1::5')!.sets[6]).toContain('2001:db8:50::1 . tcp . 443');
    expect(by.get('198.51.100.66')!.sets[4]).toContain('203.0.113.60 . tcp . 443'); // builder: the host's list
    expect(by.has('198.51.100.132')).toBe(false); // default none: unmapped, gets nothing
  });

  it('resolves every name of every list once, the private-address guard lifted only where a list lifts it', () => {
    expect(resolvedNames(config)).toEqual([
      { name: 'api.stripe.com', allowPrivate: false },
      { name: 'deb.debian.org', allowPrivate: false },
      { name: 'github.com', allowPrivate: false },
      { name: 'intranet.example', allowPrivate: true },
    ]);
  });

  it('looks the source up in a verdict map instead of accepting by the top-level sets; the unknown falls to the refusal', () => {
    const tags = desired.nft!.rules.map((r) => r.tag);
    expect(tags).toEqual(['replies', 'published', 'same-segment', 'policy', 'policy6', 'record', 'record-noport', 'record6', 'record6-noport', 'reject-tcp', 'reject']);
    expect(desired.nft!.rules[3]!.text).toBe('ip saddr vmap @policy4');
    // jump, not goto: a policy chain that does not accept returns to the refusal below the lookup
    expect(pol.map[4]).toEqual(['198.51.100.130 : jump pol-payments', '198.51.100.131 : jump pol-ci', '198.51.100.66 : jump pol-host']);
    expect(pol.map[6]).toEqual(['2001:db8:1:1::5 : jump pol-payments']);
  });

  it('gives each policy its own sets: its names only, private addresses only where it allows them', () => {
    expect(pol.sets['pol-payments-allow4']).toEqual(['192.0.2.0/24 . tcp . 8443', '198.51.100.53 . tcp . 53', '198.51.100.53 . udp . 53', '203.0.113.50 . tcp . 443']);
    expect(pol.sets['pol-payments-allow6']).toEqual(['2001:db8:50::1 . tcp . 443']);
    expect(pol.sets['pol-ci-allow4']).toContain('10.1.2.3 . tcp . 443');
    expect(pol.sets['pol-ci-allow4']).not.toContain('203.0.113.50 . tcp . 443');
    // the host's list is the top level only: neither the policies' names nor the private address
    expect(desired.nft!.sets[4]).toEqual(['198.51.100.53 . tcp . 53', '198.51.100.53 . udp . 53', '203.0.113.60 . tcp . 443']);
    expect(pol.chains.map((c) => c.name)).toEqual(['pol-host', 'pol-ci', 'pol-payments']);
    expect(pol.chains[0]!.rules.map((r) => r.text)[0]).toBe('ip daddr . meta l4proto . th dport @allow4 accept');
    expect(pol.gateSets).toEqual(['pol-ci-gate4', 'pol-ci-gate6', 'pol-payments-gate4', 'pol-payments-gate6']);
  });

  it('says who gets what and why; an unknown name gets nothing, loudly', () => {
    const by = Object.fromEntries(pol.assignments.map((a) => [a.name, [a.policy, a.by, a.unknown]]));
    expect(by).toEqual({
      builder: ['host', 'containers.assign[1]', undefined],
      'shop-api-wrapper-1': ['payments', 'containers.assign[0]', undefined],
      'shop-ci-1': ['ci', 'label egressfw.policy', undefined],
      'shop-web-1': ['none', 'containers.default', undefined],
      typo: ['none', 'label egressfw.policy', 'paymnts'],
    });
    expect(pol.assignments.find((a) => a.name === 'shop-web-1')).toMatchObject({ project: 'shop', service: 'web', addresses: ['198.51.100.132'] });
    expect(pol.warnings).toEqual(['container typo: label egressfw.policy names policy "paymnts", which the config does not define: it gets nothing']);
  });

  it('an address reported for two containers of different policies gets nothing', () => {
    const clash = assignContainers(config, [containers[0]!, { ...containers[1]!, addresses: ['198.51.100.130'] }]);
    expect(clash.map[4]).toEqual([]);
    expect(clash.warnings).toEqual(['address 198.51.100.130 is reported for shop-api-wrapper-1, shop-ci-1 with different policies: it gets nothing']);
  });

  it('renders the first sync in one nft transaction (golden), and a second plan is empty', () => {
    const k = new FakeKernel();
    const plan = diff(desired, k.observe());
    const nft = renderNft(plan)!;
    golden('policy-first-sync.nft', nft);
    // the chains exist before the map members that jump to them
    expect(nft.indexOf('add chain inet egressfw pol-ci')).toBeLessThan(nft.indexOf('add element inet egressfw policy4'));
    k.apply(plan);
    expect(diff(desired, k.observe()).ops).toEqual([]);
  });

  it('follows containers with member deletes and adds only; a changed policy is delete + add of that address', () => {
    const k = new FakeKernel();
    k.apply(diff(desired, k.observe()));
    // shop-ci-1 died; its address went to a payments container; a new container started
    const next = buildDesired(config, allowed, dns, [
      containers[0]!,
      { id: 'f6', name: 'shop-api-wrapper-2', labels: compose('shop', 'api-wrapper'), addresses: ['198.51.100.131'] },
      containers[3]!,
    ]);
    const plan = diff(next, k.observe());
    expect(plan.ops.map((o) => o.kind)).toEqual(['nft']);
    const nft = renderNft(plan)!;
    expect(nft).toMatch(/^delete element inet egressfw policy4 \{ 198\.51\.100\.131 \}$/m);
    expect(nft).toMatch(/^add element inet egressfw policy4 \{ 198\.51\.100\.131 : jump pol-payments \}$/m);
    expect(nft).not.toMatch(/flush (chain|set)/);
    k.apply(plan);
    expect(diff(next, k.observe()).ops).toEqual([]);
  });

  it('removing a policy deletes its members, chain and sets in the same transaction', () => {
    const k = new FakeKernel();
    k.apply(diff(desired, k.observe()));
    const fewer = parseConfig(CONFIG.replace(/ {2}ci:\n(?: {4}.*\n)+/, ''), 'p.yml');
    const next = buildDesired(fewer, allowed, dns, containers);
    const plan = diff(next, k.observe());
    const nft = renderNft(plan)!;
    expect(nft).toMatch(/^delete chain inet egressfw pol-ci$/m);
    expect(nft).toMatch(/^delete set inet egressfw pol-ci-gate6$/m);
    k.apply(plan);
    expect(diff(next, k.observe()).ops).toEqual([]);
  });

  it('turning policies off puts back exactly the table without them', () => {
    const plain = parseConfig('allow:\n  - domain: deb.debian.org\ndns:\n  servers: [198.51.100.53]\n', 'x.yml');
    const fresh = new FakeKernel();
    fresh.apply(diff(buildDesired(plain, allowed, dns), fresh.observe()));
    const k = new FakeKernel();
    k.apply(diff(desired, k.observe()));
    const back = diff(buildDesired(plain, allowed, dns, containers), k.observe());
    expect(renderNft(back)).toMatch(/^delete map inet egressfw policy4$/m);
    k.apply(back);
    expect(k.observeNft()).toEqual(fresh.observeNft());
  });

  it('reads the map back from nft -j and restores the table with chains before the map (rollback)', () => {
    const listing = JSON.stringify({
      nftables: [
        { table: { family: 'inet', name: 'egressfw', handle: 1 } },
        { map: { family: 'inet', name: 'policy6', table: 'egressfw', type: 'ipv6_addr', map: 'verdict', elem: [['2001:DB8:1:1::5', { jump: { target: 'pol-ci' } }]] } },
        { chain: { family: 'inet', table: 'egressfw', name: 'pol-ci', handle: 2 } },
        { rule: { family: 'inet', table: 'egressfw', chain: 'pol-ci', handle: 3, comment: 'egressfw allowed 12345678', expr: [] } },
      ],
    });
    const seen = parseNftList(listing);
    expect(seen.maps.get('policy6')).toEqual(['2001:db8:1:1::5 : jump pol-ci']);
    expect(seen.policyChains.get('pol-ci')).toEqual(['egressfw allowed 12345678']);
    const kinds = (JSON.parse(restoreBatch(seen.raw)) as { nftables: Record<string, Record<string, unknown>>[] }).nftables.map((c) => Object.keys(Object.values(c)[0]!)[0]);
    expect(kinds).toEqual(['table', 'table', 'table', 'chain', 'map', 'rule']);
  });

  it('mapDelta and the inventory are plain', () => {
    expect(mapDelta(['a : jump pol-x', 'b : jump pol-y'], ['b : jump pol-x', 'c : jump pol-x'])).toEqual({ add: ['a : jump pol-x', 'b : jump pol-y'], delete: ['b', 'c'] });
    expect(inventoryOf([{ id: 'x', name: '/web', labels: {}, networks: [{ ipv4: '198.51.100.2', ipv6: null }, { ipv4: null, ipv6: '2001:db8::2' }] }])).toEqual([{ id: 'x', name: 'web', labels: {}, addresses: ['198.51.100.2', '2001:db8::2'] }]);
  });
});

describe('the worked example (examples/policies)', () => {
  it('loads, and gives the compose services of examples/policies/compose.yml what the README says', async () => {
    const { readFileSync } = await import('node:fs');
    const { assignPolicy } = await import('../../src/policy/assign.js');
    const c = parseConfig(readFileSync('examples/policies/egressfw.yml', 'utf8'), 'examples/policies/egressfw.yml');
    expect(c.warnings).toEqual([]);
    const svc = (service: string, labels: Record<string, string> = {}) => assignPolicy(c, { name: `shop-${service}-1`, labels: { ...compose('shop', service), ...labels } });
    expect(svc('api-wrapper')).toEqual({ policy: 'payments', by: 'containers.assign[0]' });
    expect(svc('ci', { 'egressfw.policy': 'ci' })).toEqual({ policy: 'ci', by: 'label egressfw.policy' });
    expect(svc('web')).toEqual({ policy: 'none', by: 'containers.default' });
    // a label cannot add a name, nor win over the operator's assignment
    expect(svc('api-wrapper', { 'egressfw.policy': 'ci' }).policy).toBe('payments');
    expect(svc('web', { 'egressfw.policy': 'made-up' })).toEqual({ policy: 'none', by: 'label egressfw.policy', unknown: 'made-up' });
  });
});
