import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { gateForwardRules, gateHostChain, gateHostSourceChain, gateInputChain, gateNatChain, gateUfwRules } from '../../src/plan/gate.js';
import { GATE_TCP_PORTS, GATE_UDP_PORTS } from '../../src/system/upstream-pool.js';
import { buildNftDesired, renderNftScript } from '../../src/plan/nft.js';
import { buildDesired } from '../../src/plan/desired.js';
import { diff } from '../../src/plan/diff.js';
import { describeOp } from '../../src/plan/render.js';
import { FakeKernel } from '../support/fake-kernel.js';
import { fixture, golden } from '../support/files.js';

describe('gate kernel rules (chains in table inet egressfw, forward lines, ufw lines)', () => {
  const input = { port: 5300, exemptInterfaces: ['wg0', 'tun+'] };

  it('renders the chains, the forward lines and the ufw lines', () => {
    const nat = gateNatChain(input);
    const text = [
      ...[nat, gateInputChain(input), gateHostChain(input), gateHostSourceChain(input)].flatMap((c) => [`chain ${c.name} { ${c.decl}`, ...c.rules.map((r) => `  ${r.text}  # ${r.tag}`), '}']),
      ...gateForwardRules().map((r) => `forward: ${r.text}`),
      ...gateUfwRules(4, 5300),
      ...gateUfwRules(6, 5300),
    ].join('\n');
    golden('gate-rules.txt', `${text}\n`);
    // pinned by hand: the order that makes it work
    const at = (tag: string) => nat.rules.findIndex((r) => r.tag === tag);
    expect(at('gate-exempt')).toBe(0);
    expect(nat.rules[0]!.text).toBe('iifname { "wg0", "tun*" } return');
    expect(at('gate-to-host')).toBeLessThan(at('gate-host-others'));
    expect(at('gate-host-others')).toBeLessThan(at('gate-same-segment'));
    expect(at('gate-same-segment')).toBeLessThan(at('gate-redirect'));
    expect(nat.rules.at(-1)!.text).toBe('meta l4proto { tcp, udp } th dport 53 redirect to :5300');
  });

  it("host DNS: everything to port 53 is redirected, except root sockets on the gate's own reserved ports (below 1024)", () => {
    const host = gateHostChain(input);
    expect(host.spec).toEqual({ type: 'nat', hook: 'output', prio: -105, policy: 'accept' });
    expect(host.rules.map((r) => r.tag)).toEqual(['gate-own', 'gate-host-local', 'gate-host-redirect']);
    // the rule's port range is exactly what the upstream pool binds
    const [lo, hi] = host.rules[0]!.text.match(/th sport (\d+)-(\d+)/)!.slice(1).map(Number);
    expect([lo, hi]).toEqual([GATE_UDP_PORTS.first, GATE_TCP_PORTS.last]);
    expect(GATE_TCP_PORTS.first).toBe(GATE_UDP_PORTS.last + 1);
    expect(hi).toBeLessThan(1024);
    expect(host.rules[0]!.text).toMatch(/^meta skuid 0 /);
    // host.enabled: false leaves the host's DNS alone (egressfw does not restrict the host then)
    const off = parseConfig('dns: {gate: {enabled: true}}\nhost: {enabled: false}\n', 'x.yml');
    expect(buildNftDesired(off, { 4: [], 6: [] }).gate.map((c) => c.name)).toEqual(['gate-dns', 'gate-input']);
  });

  it('sync wiring: with the gate on, the chains are in the table and DNS/DoT rejects come before the allow accepts; off, render removes them', () => {
    const on = parseConfig('dns: {gate: {enabled: true, port: 5301}}\ncontainers: {exemptFrom: [wg0]}\n', 'x.yml');
    const want = buildNftDesired(on, { 4: [], 6: [] });
    expect(want.gate.map((c) => c.name)).toEqual(['gate-dns', 'gate-input', 'gate-host', 'gate-host-src']);
    const tags = want.rules.map((r) => r.tag);
    expect(tags.indexOf('gate-dns')).toBeGreaterThan(tags.indexOf('exempt'));
    expect(tags.indexOf('gate-dns')).toBeLessThan(tags.indexOf('allowed'));
    const script = renderNftScript(want, { sets: [], chain: true });
    expect(script).toMatch(/^add chain inet egressfw gate-dns \{ type nat hook prerouting priority dstnat - 5; policy accept; \}$/m);
    expect(script).toMatch(/^add rule inet egressfw gate-dns meta l4proto \{ tcp, udp \} th dport 53 redirect to :5301 comment "egressfw gate-redirect [0-9a-f]{8}"$/m);
    const off = buildNftDesired(parseConfig('{}', 'x.yml'), { 4: [], 6: [] });
    expect(off.gate).toEqual([]);
    expect(off.rules.some((r) => r.tag.startsWith('gate-dns'))).toBe(false);
    expect(renderNftScript(off, { sets: [], chain: true })).not.toMatch(/gate-/);
    expect(renderNftScript(off, { sets: [], chain: true, dropChains: ['gate-dns'] })).toMatch(/^flush chain inet egressfw gate-dns\ndelete chain inet egressfw gate-dns$/m);
  });

  it('sync with the gate on converges (apply, plan again: nothing), and turning it off removes its chains and ufw lines', () => {
    const dns = [{ host: '198.51.100.53', port: 53 }];
    const k = new FakeKernel();
    k.ufw.files = { 4: fixture('before.rules'), 6: fixture('before6.rules') };
    const on = parseConfig('allow: [{ domain: "*.example.com" }]\ndns: { servers: [198.51.100.53], gate: { enabled: true } }', 'x');
    k.apply(diff(buildDesired(on, [], dns), k.observe()));
    expect(diff(buildDesired(on, [], dns), k.observe()).ops).toEqual([]);
    expect([...k.observe().nft!.gateChains.keys()]).toEqual(['gate-dns', 'gate-input', 'gate-host', 'gate-host-src']);
    expect(k.ufw.files[4]).toMatch(/^-A ufw-before-input -p udp -m udp --dport 5300 -m conntrack --ctstate DNAT .*-j ACCEPT$/m);
    const off = parseConfig('dns: { servers: [198.51.100.53] }', 'x');
    const plan = diff(buildDesired(off, [], dns), k.observe());
    expect(plan.ops.map(describeOp).join('\n')).toMatch(/remove gate-dns, gate-input, gate-host, gate-host-src \(dns\.gate off\)/);
    k.apply(plan);
    expect(k.observe().nft!.gateChains.size).toBe(0);
    expect(k.ufw.files[4]).not.toMatch(/5300/);
    expect(diff(buildDesired(off, [], dns), k.observe()).ops).toEqual([]);
  });
});
