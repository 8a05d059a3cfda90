import { readFileSync } from 'node:fs';
import path from 'node:path';
import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { forbiddenReason, parseIp, REFUSED_V4_CIDRS, REFUSED_V6_CIDRS } from '../../src/net/ip.js';

const why = (text: string) => forbiddenReason(parseIp(text)!);

describe('rebinding guard (IANA special-purpose registries)', () => {
  it('refuses the blocks the review found accepted', () => {
    const refused = {
      '64:ff9b:1::1': /local-use NAT64/,
      '::ffff:0:a00:1': /reserved/, // ::ffff:0:0:0/96, "IPv4-translated" (RFC 2765), inside ::/8
      '::ffff:0:808:808': /reserved/,
      '::a00:1': /reserved/, // ::/96, IPv4-compatible (deprecated)
      '::808:808': /reserved/,
      '2002:a00:1::1': /6to4/, // 6to4 of a private IPv4
      '2002:808:808::1': /6to4/, // 6to4 of a public one: refused too (see src/net/ip.ts)
      '2001::1': /Teredo/,
      '2001:0:4136:e378:8000:63bf:3fff:fdd2': /Teredo/,
      'fec0::1': /site-local/,
      '198.18.0.1': /benchmarking/,
      '198.19.255.255': /benchmarking/,
      '100::1': /discard-only/,
      '2001:2::1': /benchmarking/,
      '2001:10::1': /ORCHID/,
      '2001:1ff:ffff::1': /IETF protocol assignments/,
      '5f00::1': /SRv6/,
      '100:0:0:1::1': /reserved/,
      '4000::1': /reserved/,
      '192.0.0.8': /IETF protocol assignments/,
      '192.0.0.170': /IETF protocol assignments/,
      '192.88.99.1': /6to4 relay/,
      '255.255.255.255': /reserved/,
      '168.63.129.16': /Azure/,
      '64:ff9b::a9fe:a9fe': /NAT64-embedded link-local \(incl\. 169\.254\.169\.254 metadata\)/,
      '::ffff:a9fe:a9fe': /IPv4-mapped link-local/,
    };
    for (const [ip, reason] of Object.entries(refused)) expect([ip, why(ip)]).toEqual([ip, expect.stringMatching(reason)]);
  });

  it('accepts public addresses, the documentation ranges and the globally reachable special blocks', () => {
    const accepted = [
      '8.8.8.8', '1.1.1.1', '2606:4700:4700::1111', '2001:4860:4860::8888',
      // documentation: not routed, and the lab's fake internet lives there
      '192.0.2.1', '198.51.100.7', '203.0.113.5', '2001:db8::1', '3fff::1',
      // "Globally Reachable: True" in IANA's registries
      '192.0.0.9', '192.0.0.10', '192.31.196.1', '192.52.193.1', '192.175.48.1',
      '2001:1::1', '2001:1::2', '2001:1::3', '2001:3::1', '2001:4:112::1', '2001:20::1', '2001:30::1', '2620:4f:8000::1',
      // IPv4 embedded in NAT64 and IPv4-mapped forms is judged by that IPv4
      '64:ff9b::808:808', '::ffff:808:808',
    ];
    for (const ip of accepted) expect([ip, why(ip)]).toEqual([ip, null]);
  });

  /*
   * Python's ipaddress (3.13) follows the same registries. Where egressfw decides otherwise,
   * the sample must be listed here with the reason; a listed sample that agrees fails too.
   */
  const inNet = (text: string, cidr: string) => {
    const a = ipaddr.parse(text);
    const [net, len] = ipaddr.parseCIDR(cidr);
    return a.kind() === net.kind() && a.match(net, len);
  };
  const DIFFERENT: [(ip: string) => boolean, string][] = [
    [(t) => ['192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24', '2001:db8::/32', '3fff::/20'].some((c) => inNet(t, c)), 'documentation ranges stay accepted: not routed, and the lab uses them'],
    [(t) => inNet(t, '224.0.0.0/4'), 'multicast (224.0.0.0/4): IANA multicast registry, not the special-purpose one'],
    [(t) => inNet(t, 'ff00::/8'), 'multicast (ff00::/8): IANA IPv6 address space registry'],
    [(t) => inNet(t, 'fec0::/10'), 'fec0::/10: deprecated site-local (RFC 3879), still treated as internal'],
    [(t) => inNet(t, '192.88.99.0/24'), '192.88.99.0/24: deprecated 6to4 relay anycast (RFC 7526), refused like 6to4'],
    [(t) => t === '168.63.129.16', 'Azure WireServer: a metadata endpoint on a public address'],
    [(t) => t === '::ffff:6440:1', 'Python calls ::ffff:100.64.0.1 global (its 100.64.0.0/10 quirk); CGNAT is refused'],
    [(t) => t === '2001:1::3', 'DNS-SD SRP anycast (2001:1::3/128): globally reachable in the registry, newer than Python 3.13.0'],
    [(t) => t.includes(':') && !inNet(t, '2000::/3') && !inNet(t, 'ff00::/8') && !inNet(t, 'fec0::/10'), 'outside 2000::/3 is reserved by the IETF (IANA IPv6 address space registry): nobody can be given such an address'],
  ];

  it('agrees with Python ipaddress is_global, except where listed with a reason', () => {
    const file = path.resolve(path.dirname(new URL(import.meta.url).pathname), 'golden/python-is-global.json');
    const golden = JSON.parse(readFileSync(file, 'utf8')) as { python: string; is_global: Record<string, boolean> };
    expect(golden.python >= '3.13').toBe(true);
    const samples = Object.entries(golden.is_global);
    expect(samples.length).toBeGreaterThan(250);
    const unexplained: string[] = [];
    const used = new Set<string>();
    for (const [text, pyGlobal] of samples) {
      const ip = parseIp(text)!;
      const ours = forbiddenReason(ip) === null;
      if (ours === pyGlobal) continue;
      const d = DIFFERENT.find(([is]) => is(ip.text));
      if (d) used.add(d[1]);
      else unexplained.push(`${text}: python ${pyGlobal ? 'global' : 'not global'}, egressfw ${ours ? 'accepts' : `refuses (${forbiddenReason(ip)})`}`);
    }
    expect(unexplained).toEqual([]);
    // Every listed difference is seen in the samples (no stale excuses).
    expect(DIFFERENT.map(([, w]) => w).filter((w) => !used.has(w))).toEqual([]);
  });

  it('exports the refused ranges as CIDRs that refuse exactly what the guard refuses', () => {
    expect(REFUSED_V4_CIDRS).toEqual([
      '0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '168.63.129.16/32', '169.254.0.0/16', '172.16.0.0/12',
      '192.0.0.0/29', '192.0.0.8/32', '192.0.0.11/32', '192.0.0.12/30', '192.0.0.16/28', '192.0.0.32/27', '192.0.0.64/26', '192.0.0.128/25',
      '192.88.99.0/24', '192.168.0.0/16', '198.18.0.0/15', '224.0.0.0/3',
    ]);
    const inList = (text: string) => {
      const a = ipaddr.parse(text);
      return (a.kind() === 'ipv4' ? REFUSED_V4_CIDRS : REFUSED_V6_CIDRS).some((c) => a.match(ipaddr.parseCIDR(c)));
    };
    const golden = JSON.parse(readFileSync(path.resolve(path.dirname(new URL(import.meta.url).pathname), 'golden/python-is-global.json'), 'utf8')) as { is_global: Record<string, boolean> };
    const samples = [...Object.keys(golden.is_global), '64:ff9b::a00:1', '64:ff9b::808:808', '::ffff:a00:1', '::ffff:808:808', '64:ff9b::ffff:ffff', '::ffff:ffff:ffff'];
    const mismatched = samples.filter((s) => inList(s) !== (why(s) !== null));
    expect(mismatched).toEqual([]);
    // Every entry is canonical network text.
    for (const c of [...REFUSED_V4_CIDRS, ...REFUSED_V6_CIDRS]) expect(ipaddr.parseCIDR(c).toString().replace(/\/\d+$/, '')).toBe(c.split('/')[0]);
  });
});
