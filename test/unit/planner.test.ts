import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { buildDesired } from '../../src/plan/desired.js';
import { diff, withoutHost, type Plan } from '../../src/plan/diff.js';
import { extractBlock, parseIptablesSave, parseIpsetSave } from '../../src/plan/observed.js';
import { renderIpset, renderIptables, renderNft, ufwSteps } from '../../src/plan/render.js';
import { removeBlock, upsertBlock } from '../../src/plan/ufw-file.js';
import type { AllowedDomain } from '../../src/resolve/merge.js';
import { parseNftList, restoreBatch, withoutCovered } from '../../src/plan/nft.js';
import { FakeKernel } from '../support/fake-kernel.js';
import { fixture, golden } from '../support/files.js';

const config = parseConfig(
  `allow:
  - domain: api.example.com
    ports: [443, "53/udp"]
  - domain: cdn.example.net
  - cidr: 192.0.2.0/24
    ports: [8443]
  - cidr: 2001:db8:beef::/48
dns:
  servers: [198.51.100.53, "2001:db8:53::53"]
`,
  'test.yml',
);
const dns = [
  { host: '198.51.100.53', port: 53 },
  { host: '2001:db8:53::53', port: 53 },
];
const allowed: AllowedDomain[] = [
  {
    name: 'api.example.com',
    status: 'ok',
    detail: '',
    ips: [
      { ip: '203.0.113.10', family: 4, source: 'answer', until: 0 },
      { ip: '203.0.113.9', family: 4, source: 'stale', until: 0 },
      { ip: '2001:db8:10::10', family: 6, source: 'answer', until: 0 },
    ],
  },
  { name: 'cdn.example.net', status: 'timeout', detail: 'A: timeout', ips: [{ ip: '203.0.113.200', family: 4, source: 'last-known-good', until: 0 }] },
];

function freshKernel(): FakeKernel {
  const k = new FakeKernel();
  k.ufw.files = { 4: fixture('before.rules'), 6: fixture('before6.rules') };
  // Docker is running: DOCKER-USER exists and FORWARD jumps to it (IPv4 only, as Docker 20.10 does).
  k.tables[4].set('DOCKER-USER', ['-A DOCKER-USER -j RETURN']);
  k.tables[4].set('FORWARD', ['-A FORWARD -j DOCKER-USER', '-A FORWARD -j DOCKER-FORWARD']);
  return k;
}

function renderAll(plan: Plan): string {
  const parts = [`# ipset restore\n${renderIpset(plan) ?? ''}`, `# nft -f\n${renderNft(plan) ?? ''}`, `# iptables-restore --noflush\n${renderIptables(plan, 4) ?? ''}`, `# ip6tables-restore --noflush\n${renderIptables(plan, 6) ?? ''}`];
  parts.push(`# ufw\n${ufwSteps(plan).map((s) => [`## ${s.say}`, ...(s.argv ? [s.argv.join(' ')] : []), ...(s.diff ?? [])].join('\n')).join('\n')}\n`);
  return parts.join('\n');
}

describe('planner', () => {
  const desired = buildDesired(config, allowed, dns);

  it('puts every (IP, proto, port) tuple into the family sets, sorted', () => {
    // Hand-pinned, so that regenerating golden files cannot silently bless a wrong set.
    expect(desired.sets[4]).toEqual([
      '192.0.2.0/24,tcp:8443',
      '198.51.100.53,tcp:53',
      '198.51.100.53,udp:53',
      '203.0.113.9,tcp:443',
      '203.0.113.9,udp:53',
      '203.0.113.10,tcp:443',
      '203.0.113.10,udp:53',
      '203.0.113.200,tcp:443',
    ]);
    expect(desired.sets[6]).toEqual(['2001:db8:10::10,tcp:443', '2001:db8:10::10,udp:53', '2001:db8:53::53,tcp:53', '2001:db8:53::53,udp:53', '2001:db8:beef::/48,tcp:443']);
  });

  it('judges every forwarded connection that is not a reply, a published port or same-segment traffic; allowed first, rejecting fast', () => {
    const rules = desired.nft!.rules;
    expect(rules.map((r) => r.tag)).toEqual(['replies', 'published', 'same-segment', 'allowed', 'allowed6', 'gate', 'gate6', 'record', 'record-noport', 'record6', 'record6-noport', 'reject-tcp', 'reject']);
    expect(rules[0]!.text).toBe('ct state established,related accept');
    expect(rules[2]!.text).toBe('fib daddr . iif oif exists meta mark set meta mark or 0x10000000 accept');
    // No rule names an interface: a bridge of any name is judged from the moment it exists.
    for (const r of rules) expect(r.text).not.toMatch(/iifname|oifname|docker0|br-/);
    expect(rules.at(-1)!.text).toBe('reject with icmpx admin-prohibited');
    expect(desired.nft!.sets[4]).toContain('203.0.113.10 . udp . 53');
    expect(desired.nft!.sets[6]).toContain('2001:db8:beef::/48 . tcp . 443');
    for (const r of [...desired.hostRules![4], ...desired.hostRules![6]]) expect(r).toMatch(/--comment "?egressfw /);
  });

  it('marks exactly what it allows, so an iptables FORWARD DROP behind the table (ufw on Docker 29 nftables) lets that through and nothing else', () => {
    const withExempt = buildDesired(parseConfig('containers: { exemptFrom: [wg0] }\ndns: { gate: { enabled: true } }', 'x'), [], dns).nft!.rules;
    const marked = withExempt.filter((r) => r.text.includes('meta mark set')).map((r) => r.tag);
    expect(marked).toEqual(['published', 'same-segment', 'allowed', 'allowed6', 'gate', 'gate6']);
    // every marking rule ORs the one bit in and accepts: other tools' mark bits survive
    for (const r of withExempt.filter((x) => marked.includes(x.tag))) expect(r.text).toMatch(/ meta mark set meta mark or 0x10000000 accept$/);
    // replies: ufw accepts RELATED,ESTABLISHED itself; an exempt VPN still meets the operator's ufw forward rules
    expect(withExempt.find((r) => r.tag === 'replies')!.text).toBe('ct state established,related accept');
    expect(withExempt.find((r) => r.tag === 'exempt-0')!.text).toBe('iifname "wg0" accept');
    // audit lets the rest through egressfw's table only: unmarked, so it opens nothing ufw's forward DROP closed
    const audit = buildDesired(parseConfig('mode: audit', 'x'), [], dns).nft!.rules;
    expect(audit.at(-1)).toEqual({ tag: 'audit', text: 'accept' });
  });

  it("the ufw block accepts the mark in ufw's forward path (both families), and only when containers are managed", () => {
    const blocks = desired.ufw!.blocks;
    expect(blocks[4].split('\n')).toContain('-A ufw-before-forward -m mark --mark 0x10000000/0x10000000 -m comment --comment "egressfw forward" -j ACCEPT');
    expect(blocks[6].split('\n')).toContain('-A ufw6-before-forward -m mark --mark 0x10000000/0x10000000 -m comment --comment "egressfw forward" -j ACCEPT');
    const hostOnly = buildDesired(parseConfig('containers: { enabled: false }', 'x'), [], dns).ufw!.blocks;
    expect(hostOnly[4]).not.toMatch(/forward/);
    expect(hostOnly[6]).not.toMatch(/forward/);
  });

  it('audit mode records and lets through: same chain, no reject', () => {
    const audit = buildDesired(parseConfig('mode: audit', 'x'), [], dns).nft!.rules;
    expect(audit.map((r) => r.tag).slice(-5)).toEqual(['record', 'record-noport', 'record6', 'record6-noport', 'audit']);
    expect(audit.some((r) => r.text.includes('reject'))).toBe(false);
  });

  it('ipv6: false allows nothing over IPv6, not even configured v6 networks or resolvers', () => {
    const v4only = buildDesired(parseConfig('ipv6: false\nallow: [{ cidr: "2001:db8::/32" }]\ndns: { servers: ["2001:db8:53::53"] }', 'x'), [], [{ host: '2001:db8:53::53', port: 53 }]);
    expect(v4only.sets[6]).toEqual([]);
    expect(v4only.nft!.sets[6]).toEqual([]);
    expect(v4only.ufw!.blocks[6]).not.toMatch(/2001:db8:53::53/);
  });

  it('renders the first sync on a Docker host with stock ufw (golden)', () => {
    const plan = diff(desired, freshKernel().observe());
    expect(plan.blockers).toEqual([]);
    // `ufw default` reloads ufw (and so loads the new block): no second, slow reload
    expect(plan.ops.filter((o) => o.kind.startsWith('ufw-')).map((o) => o.kind)).toEqual(['ufw-block', 'ufw-block', 'ufw-outgoing']);
    golden('first-sync.txt', renderAll(plan));
  });

  it('the ufw block declares the chain and lets DNS out, but references no ipset (ufw must load at boot)', () => {
    expect(desired.ufw!.blocks[4]).not.toMatch(/match-set/);
    expect(desired.ufw!.blocks[4]).toMatch(/^:EGRESSFW-HOST - \[0:0\]$/m);
    expect(desired.ufw!.blocks[4]).toMatch(/-A EGRESSFW-HOST -d 198\.51\.100\.53\/32 -p udp -m udp --dport 53 .* -j ACCEPT/);
    expect(desired.ufw!.blocks[6]).toMatch(/-A ufw6-before-output -m comment --comment "egressfw host" -j EGRESSFW-HOST/);
  });

  it('is idempotent: after applying a plan, the next plan is empty', () => {
    const k = freshKernel();
    k.apply(diff(desired, k.observe()));
    expect(diff(desired, k.observe()).ops).toEqual([]);
    // ... and stays so on a third round.
    expect(diff(desired, k.observe()).ops).toEqual([]);
  });

  it('a DNS change replaces the set through a temporary set and swap, touching nothing else', () => {
    const k = freshKernel();
    k.apply(diff(desired, k.observe()));
    const changed = buildDesired(config, [{ ...allowed[0]!, ips: [{ ip: '203.0.113.11', family: 4, source: 'answer', until: 0 }] }, allowed[1]!], dns);
    const plan = diff(changed, k.observe());
    expect(plan.ops.map((o) => o.kind)).toEqual(['set', 'set', 'nft']);
    expect(plan.ops[0]).toMatchObject({ kind: 'set', family: 4, added: ['203.0.113.11,tcp:443', '203.0.113.11,udp:53'] });
    // Only the sets: the chain stays as it is.
    expect(plan.ops[2]).toMatchObject({ kind: 'nft', create: false, chain: false, sets: [4, 6], added: { 4: 2, 6: 0 }, removed: { 4: 4, 6: 2 } });
    golden('dns-change.txt', renderAll(plan));
    k.apply(plan);
    expect(diff(changed, k.observe()).ops).toEqual([]);
  });

  it('repairs a flushed chain or set, and a table deleted by hand', () => {
    const k = freshKernel();
    k.apply(diff(desired, k.observe()));
    k.nft!.rules = [];
    expect(diff(desired, k.observe()).ops).toMatchObject([{ kind: 'nft', create: false, chain: true, sets: [] }]);
    k.nft!.sets.get('allow6')!.clear();
    expect(diff(desired, k.observe()).ops).toMatchObject([{ kind: 'nft', chain: true, sets: [6] }]);
    k.nft = null;
    const plan = diff(desired, k.observe());
    expect(plan.ops).toMatchObject([{ kind: 'nft', create: true, chain: true, sets: [4, 6] }]);
    k.apply(plan);
    expect(diff(desired, k.observe()).ops).toEqual([]);
  });

  it('a rule changed in place (same tag, other text) is rewritten', () => {
    const k = freshKernel();
    k.apply(diff(desired, k.observe()));
    const audit = buildDesired(parseConfig(`mode: audit\n${'allow: []'}`, 'x'), [], dns);
    expect(diff({ ...desired, nft: { ...desired.nft!, rules: desired.nft!.rules.map((r) => (r.tag === 'allowed' ? { ...r, text: `${r.text} ` } : r)) } }, k.observe()).ops).toMatchObject([{ kind: 'nft', chain: true }]);
    expect(diff({ ...desired, nft: { ...desired.nft!, rules: audit.nft!.rules } }, k.observe()).ops).toMatchObject([{ kind: 'nft', chain: true, sets: [] }]);
  });

  it('moves a pre-0.2 install (EGRESSFW chain jumped from DOCKER-USER and FORWARD) to the nft table, the old chain going in the same sync', () => {
    const k = freshKernel();
    const old = ['-A EGRESSFW -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "egressfw replies" -j RETURN'];
    k.tables[4].set('EGRESSFW', [...old]);
    k.tables[4].get('DOCKER-USER')!.unshift('-A DOCKER-USER -m comment --comment "egressfw jump" -j EGRESSFW');
    k.tables[6].set('EGRESSFW', [...old]);
    k.tables[6].get('FORWARD')!.unshift('-A FORWARD -m comment --comment "egressfw jump" -j EGRESSFW');
    const plan = diff(desired, k.observe());
    const kinds = plan.ops.map((o) => o.kind);
    // nft is applied before the iptables transactions: the old chain goes only once the table enforces.
    expect(kinds.indexOf('nft')).toBeLessThan(kinds.indexOf('legacy'));
    expect(plan.ops.filter((o) => o.kind === 'legacy')).toEqual([
      { kind: 'legacy', family: 4, deleteRules: ['-D DOCKER-USER -m comment --comment "egressfw jump" -j EGRESSFW'], dropChain: true },
      { kind: 'legacy', family: 6, deleteRules: ['-D FORWARD -m comment --comment "egressfw jump" -j EGRESSFW'], dropChain: true },
    ]);
    k.apply(plan);
    expect(k.tables[4].has('EGRESSFW')).toBe(false);
    expect(k.tables[4].get('DOCKER-USER')).toEqual(['-A DOCKER-USER -j RETURN']);
    expect(k.tables[6].get('FORWARD')).toEqual([]);
    expect(diff(desired, k.observe()).ops).toEqual([]);
  });

  it('containers.enabled: false removes the table it finds', () => {
    const k = freshKernel();
    k.apply(diff(desired, k.observe()));
    const off = buildDesired(parseConfig('containers: { enabled: false }', 'x'), allowed, dns);
    const plan = diff(off, k.observe());
    expect(plan.ops.filter((o) => o.kind.startsWith('nft'))).toEqual([{ kind: 'nft-delete' }]);
    k.apply(plan);
    expect(k.nft).toBeNull();
  });

  it('stops sync when ufw is inactive, unless enableUfw is set', () => {
    const k = freshKernel();
    k.ufw.enabled = false;
    expect(diff(desired, k.observe()).blockers[0]!.message).toMatch(/ufw is installed but not active.*ufw allow OpenSSH.*host\.enableUfw: true/);
    const opted = buildDesired(parseConfig('host: { enableUfw: true }', 'x'), [], dns);
    const plan = diff(opted, k.observe());
    expect(plan.blockers).toEqual([]);
    expect(plan.ops.some((o) => o.kind === 'ufw-enable')).toBe(true);
  });

  it('with ufw switched off later, the container part can still be planned alone', () => {
    const k = freshKernel();
    k.apply(diff(desired, k.observe()));
    k.ufw.enabled = false;
    k.nft!.rules = []; // damage while ufw is off
    const plan = diff(desired, k.observe());
    expect(plan.blockers[0]).toMatchObject({ code: 'ufw-inactive', message: expect.stringMatching(/ufw is installed but not active/) });
    const containers = withoutHost(plan);
    expect(containers.blockers).toEqual([]);
    expect(containers.ops.map((o) => o.kind)).toEqual(['nft']);
  });

  it('containers-only config needs no ufw and writes no host rules', () => {
    const only = buildDesired(parseConfig('host: { enabled: false }', 'x'), [], dns);
    const k = freshKernel();
    const obs = { ...k.observe(), ufw: null };
    const plan = diff(only, obs);
    expect(plan.blockers).toEqual([]);
    expect(plan.ops.some((o) => o.kind.startsWith('ufw') || (o.kind === 'chain' && o.chain === 'EGRESSFW-HOST'))).toBe(false);
  });

  it('refills the host chain after any ufw reload (ufw re-declares it from the block)', () => {
    const k = freshKernel();
    k.apply(diff(desired, k.observe()));
    const more = buildDesired(config, allowed, [...dns, { host: '198.51.100.54', port: 53 }]);
    const kinds = diff(more, k.observe()).ops.map((o) => (o.kind === 'chain' ? `${o.kind}:${o.chain}:${o.family}` : o.kind));
    expect(kinds).toEqual(['set', 'ufw-block', 'ufw-reload', 'nft', 'chain:EGRESSFW-HOST:4', 'chain:EGRESSFW-HOST:6']);
  });
});

describe('ufw file editing', () => {
  const block = '# BEGIN EGRESSFW (x)\n:EGRESSFW-HOST - [0:0]\n# END EGRESSFW';

  it('inserts before the COMMIT of *filter, replaces in place, removes cleanly', () => {
    const stock = fixture('before.rules');
    const once = upsertBlock(stock, block)!;
    expect(once.indexOf(block)).toBeLessThan(once.lastIndexOf('COMMIT'));
    expect(once.indexOf('-A ufw-before-output -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT')).toBeLessThan(once.indexOf(block));
    expect(extractBlock(once)).toBe(block);
    const block2 = block.replace('(x)', '(y)');
    const twice = upsertBlock(once, block2)!;
    expect(twice.split('BEGIN EGRESSFW').length).toBe(2);
    expect(removeBlock(twice)).toBe(stock);
  });

  it('refuses a file without a *filter section', () => {
    expect(upsertBlock('# empty\n', block)).toBeNull();
  });
});

describe('observed-state parsers', () => {
  it('parses iptables-save into chains and rules', () => {
    const t = parseIptablesSave('*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j X\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:DOCKER-USER - [0:0]\n-A DOCKER-USER -j RETURN\nCOMMIT\n');
    expect([...t.chains.keys()]).toEqual(['INPUT', 'DOCKER-USER']);
    expect(t.chains.get('DOCKER-USER')).toEqual(['-A DOCKER-USER -j RETURN']);
  });

  it('parses ipset save into canonical sorted entries', () => {
    const text = 'create egressfw-v6 hash:net,port family inet6\nadd egressfw-v6 2001:db8::1,tcp:443\nadd egressfw-v6 ::ffff:1.2.3.4,tcp:80\nadd egressfw-v6 2001:db8::/48,udp:53\nadd other 2001:db8::2,tcp:1\n';
    expect(parseIpsetSave(text, 'egressfw-v6')).toEqual(['::ffff:102:304,tcp:80', '2001:db8::/48,udp:53', '2001:db8::1,tcp:443']);
  });
});

describe('nft sets', () => {
  it('drops members covered by a network for the same proto and port (nft interval sets refuse overlaps)', () => {
    expect(
      withoutCovered(['10.0.0.0/8 . tcp . 443', '10.1.0.0/16 . tcp . 443', '10.2.3.4 . tcp . 443', '10.2.3.4 . tcp . 80', '203.0.113.1 . tcp . 443', '2001:db8::/32 . tcp . 443', '2001:db8::1 . tcp . 443', '2001:db9::1 . tcp . 443']),
    ).toEqual(['10.0.0.0/8 . tcp . 443', '10.2.3.4 . tcp . 80', '203.0.113.1 . tcp . 443', '2001:db8::/32 . tcp . 443', '2001:db9::1 . tcp . 443']);
  });

  it('parses nft -j listings: prefixes, concatenations, comments, chain spec', () => {
    const o = parseNftList(
      JSON.stringify({
        nftables: [
          { metainfo: { version: '1.0.6' } },
          { table: { family: 'inet', name: 'egressfw', handle: 1 } },
          { set: { family: 'inet', name: 'allow6', table: 'egressfw', elem: [{ concat: [{ prefix: { addr: '2001:DB8::', len: 48 } }, 'tcp', 443] }, { concat: ['2001:db8:0:0::1', 'udp', 53] }] } },
          { set: { family: 'inet', name: 'refused4', table: 'egressfw', elem: [{ elem: { val: { concat: ['198.51.100.66', '203.0.113.20', 'tcp', 80] }, counter: { packets: 1, bytes: 60 } } }] } },
          { chain: { family: 'inet', table: 'egressfw', name: 'forward', handle: 2, type: 'filter', hook: 'forward', prio: -1, policy: 'accept' } },
          { rule: { family: 'inet', table: 'egressfw', chain: 'forward', handle: 3, expr: [], comment: 'egressfw replies d715fd9a' } },
          { rule: { family: 'inet', table: 'egressfw', chain: 'forward', handle: 4, expr: [] } },
        ],
      }),
    );
    expect(o.sets.get('allow6')).toEqual(['2001:db8::/48 . tcp . 443', '2001:db8::1 . udp . 53']);
    expect(o.sets.get('refused4')).toEqual(['198.51.100.66 . 203.0.113.20 . tcp . 80']);
    expect(o.chain).toEqual({ type: 'filter', hook: 'forward', prio: -1, policy: 'accept' });
    expect(o.ruleComments).toEqual(['egressfw replies d715fd9a', '']);
    // The restore batch re-creates the table from the listing, without handles.
    const batch = JSON.parse(restoreBatch(o.raw)).nftables;
    expect(batch.slice(0, 2)).toEqual([{ add: { table: { family: 'inet', name: 'egressfw' } } }, { delete: { table: { family: 'inet', name: 'egressfw' } } }]);
    expect(JSON.stringify(batch)).not.toMatch(/handle/);
    expect(batch.find((c: { add?: { set?: { name: string } } }) => c.add?.set?.name === 'refused4').add.set.elem).toBeUndefined();
  });
});

describe('a ruleset flush (nftables.service): every table gone, ufw still enabled', () => {
  it("reloads ufw (its rules were in the deleted tables: the host was open), re-creates our table and refills EGRESSFW-HOST; then converges", () => {
    const desired = buildDesired(parseConfig('allow: [{ domain: api.example.com }]', 'x'), [], [{ host: '198.51.100.53', port: 53 }]);
    const k = new FakeKernel();
    k.ufw.files = { 4: fixture('before.rules'), 6: fixture('before6.rules') };
    k.apply(diff(desired, k.observe()));
    expect(diff(desired, k.observe()).ops).toEqual([]);
    // flush ruleset: iptables-nft's tables (ufw's chains, EGRESSFW-HOST) and our table are gone; the files and ufw.conf stay
    k.tables = { 4: new Map([['FORWARD', []], ['OUTPUT', []]]), 6: new Map([['FORWARD', []], ['OUTPUT', []]]) };
    k.nft = null;
    const repair = diff(desired, k.observe());
    // ipsets are not nftables: they survive the flush
    expect(repair.ops.map((o) => o.kind)).toEqual(['ufw-reload', 'nft', 'chain', 'chain']);
    expect(repair.ops.filter((o) => o.kind === 'chain').map((o) => (o as { reason: string }).reason)).toEqual(['refill after ufw reload', 'refill after ufw reload']);
    k.apply(repair);
    k.tables[4].set('ufw-before-output', k.tables[4].get('ufw-before-output') ?? []); // what the real reload loads
    k.tables[6].set('ufw6-before-output', k.tables[6].get('ufw6-before-output') ?? []);
    expect(diff(desired, k.observe()).ops).toEqual([]);
  });
});

describe('nft monitor events', () => {
  it("only the deletion of egressfw's own table counts", async () => {
    const { tableDeleted } = await import('../../src/plan/nft.js');
    expect(tableDeleted('delete table inet egressfw')).toBe(true);
    expect(tableDeleted('delete table inet egressfw\n')).toBe(true);
    for (const l of ['add table inet egressfw', 'delete table ip docker-bridges', 'delete table inet egressfw2', 'delete table ip egressfw', '# delete table inet egressfw x'])
      expect(tableDeleted(l), l).toBe(false);
  });
});
