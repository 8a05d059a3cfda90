import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { buildDesired } from '../../src/plan/desired.js';
import { diff, withoutHost, type Plan } from '../../src/plan/diff.js';
import { extractBlock, parseIptablesSave, parseIpsetSave } from '../../src/plan/observed.js';
import { renderIpset, renderIptables, ufwSteps } from '../../src/plan/render.js';
import { removeBlock, upsertBlock } from '../../src/plan/ufw-file.js';
import type { AllowedDomain } from '../../src/resolve/merge.js';
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
  const parts = [`# ipset restore\n${renderIpset(plan) ?? ''}`, `# iptables-restore --noflush\n${renderIptables(plan, 4) ?? ''}`, `# ip6tables-restore --noflush\n${renderIptables(plan, 6) ?? ''}`];
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

  it('judges only bridge-to-outside traffic, replies first, rejecting fast', () => {
    const rules = desired.containerRules![4];
    expect(rules[0]).toBe('-A EGRESSFW -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "egressfw replies" -j RETURN');
    expect(rules).toContain('-A EGRESSFW -o br-+ -m comment --comment "egressfw to-bridge" -j RETURN');
    expect(rules.indexOf('-A EGRESSFW -m set --match-set egressfw-v4 dst,dst -m comment --comment "egressfw allowed" -j RETURN')).toBeLessThan(
      rules.indexOf('-A EGRESSFW -i docker0 -p tcp -m comment --comment "egressfw reject" -j REJECT --reject-with tcp-reset'),
    );
    expect(desired.containerRules![6]).toContain('-A EGRESSFW -i br-+ -m comment --comment "egressfw reject" -j REJECT --reject-with icmp6-adm-prohibited');
    for (const r of [...rules, ...desired.hostRules![4], ...desired.hostRules![6]]) expect(r).toMatch(/--comment "?egressfw /);
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
    expect(plan.ops.map((o) => o.kind)).toEqual(['set', 'set']);
    expect(plan.ops[0]).toMatchObject({ kind: 'set', family: 4, added: ['203.0.113.11,tcp:443', '203.0.113.11,udp:53'] });
    golden('dns-change.txt', renderAll(plan));
    k.apply(plan);
    expect(diff(changed, k.observe()).ops).toEqual([]);
  });

  it('repairs a jump that Docker pushed down, and removes duplicates', () => {
    const k = freshKernel();
    k.apply(diff(desired, k.observe()));
    k.tables[4].set('DOCKER-USER', ['-A DOCKER-USER -j SOMETHING', '-A DOCKER-USER -m comment --comment "egressfw jump" -j EGRESSFW', '-A DOCKER-USER -m comment --comment "egressfw jump" -j EGRESSFW']);
    const plan = diff(desired, k.observe());
    expect(plan.ops).toEqual([
      {
        kind: 'jump',
        family: 4,
        parent: 'DOCKER-USER',
        createParent: false,
        deleteRules: ['-D DOCKER-USER -m comment --comment "egressfw jump" -j EGRESSFW', '-D DOCKER-USER -m comment --comment "egressfw jump" -j EGRESSFW'],
        insert: true,
      },
    ]);
    k.apply(plan);
    expect(k.tables[4].get('DOCKER-USER')).toEqual(['-A DOCKER-USER -m comment --comment "egressfw jump" -j EGRESSFW', '-A DOCKER-USER -j SOMETHING']);
  });

  it('where FORWARD does not lead to DOCKER-USER (Docker 20.10 IPv6) the jump also goes first in FORWARD; it leaves once Docker hooks DOCKER-USER', () => {
    const k = freshKernel();
    k.apply(diff(desired, k.observe()));
    expect(k.tables[6].get('FORWARD')![0]).toBe('-A FORWARD -m comment --comment "egressfw jump" -j EGRESSFW');
    expect(k.tables[4].get('FORWARD')).not.toContain('-A FORWARD -m comment --comment "egressfw jump" -j EGRESSFW');
    k.tables[6].get('FORWARD')!.unshift('-A FORWARD -j DOCKER-USER');
    const plan = diff(desired, k.observe());
    expect(plan.ops).toMatchObject([{ kind: 'jump', family: 6, parent: 'FORWARD', insert: false }]);
  });

  it('stops sync when ufw is inactive, unless enableUfw is set', () => {
    const k = freshKernel();
    k.ufw.enabled = false;
    expect(diff(desired, k.observe()).blockers[0]).toMatch(/ufw is installed but not active.*ufw allow OpenSSH.*host\.enableUfw: true/);
    const opted = buildDesired(parseConfig('host: { enableUfw: true }', 'x'), [], dns);
    const plan = diff(opted, k.observe());
    expect(plan.blockers).toEqual([]);
    expect(plan.ops.some((o) => o.kind === 'ufw-enable')).toBe(true);
  });

  it('with ufw switched off later, the container part can still be planned alone', () => {
    const k = freshKernel();
    k.apply(diff(desired, k.observe()));
    k.ufw.enabled = false;
    k.tables[4].set('EGRESSFW', []); // damage while ufw is off
    const plan = diff(desired, k.observe());
    expect(plan.blockers[0]).toMatch(/ufw is installed but not active/);
    const containers = withoutHost(plan);
    expect(containers.blockers).toEqual([]);
    expect(containers.ops.map((o) => (o.kind === 'chain' ? `${o.chain}/${o.family}` : o.kind))).toEqual(['EGRESSFW/4']);
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
    expect(kinds).toEqual(['set', 'ufw-block', 'ufw-reload', 'chain:EGRESSFW-HOST:4', 'chain:EGRESSFW-HOST:6']);
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
