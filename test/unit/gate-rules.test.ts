import { describe, expect, it } from 'vitest';
import { gateForwardRules, gateInputChain, gateNatChain, gateUfwRules } from '../../src/plan/gate.js';
import { golden } from '../support/files.js';

describe('gate kernel rules (nft text for table inet egressfw, ufw lines)', () => {
  const input = { port: 5300, dockerSubnets: { 4: ['172.17.0.0/16', '198.51.100.128/25'], 6: ['2001:DB8:1::/64'] }, exemptInterfaces: ['wg0'] };

  it('renders the chains, the forward lines and the ufw lines', () => {
    const text = [gateNatChain(input), gateInputChain(input), ...gateForwardRules(), ...gateUfwRules(4, 5300), ...gateUfwRules(6, 5300)].join('\n');
    golden('gate-rules.txt', `${text}\n`);
    // pinned by hand: the order that makes it work
    const nat = gateNatChain(input).split('\n');
    const at = (re: RegExp) => nat.findIndex((l) => re.test(l));
    expect(at(/container DNS to the host/)).toBeLessThan(at(/fib daddr type local return/));
    expect(at(/fib daddr type local return/)).toBeLessThan(at(/same segment/));
    expect(at(/same segment/)).toBeLessThan(at(/forwarded DNS/));
    expect(nat).toContain('  ip6 saddr { 2001:db8:1::/64 } fib daddr type local meta l4proto { tcp, udp } th dport 53 redirect to :5300 comment "egressfw gate: container DNS to the host"');
  });

  it('no Docker subnets and no exemptions: those rules are left out, forwarded DNS is still redirected', () => {
    const nat = gateNatChain({ port: 5300, dockerSubnets: { 4: [], 6: [] }, exemptInterfaces: [] });
    expect(nat).not.toMatch(/saddr|iifname/);
    expect(nat).toMatch(/th dport 53 redirect to :5300 comment "egressfw gate: forwarded DNS"/);
  });
});
