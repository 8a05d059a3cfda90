/**
 * Kernel rules of the DNS gate, as nft and iptables-restore text. Pure.
 * The lead's table `inet egressfw` takes the two chains whole and the
 * forward lines in its forward chain; the ufw lines go in the ufw block.
 *
 * How container DNS reaches the gate, on any Docker version and network,
 * without knowing bridge names:
 *  - DNS (udp/tcp 53) that arrives from outside the host and would be
 *    forwarded (its destination is not one of the host's addresses) is
 *    redirected (`redirect to :PORT`: the address of the interface it came
 *    in on, port PORT), where the gate listens on the wildcard address.
 *    This is every container's DNS: resolv.conf servers copied into the
 *    container, `--dns X`, and Docker 20.10's embedded resolver (it forwards
 *    from the container's namespace). Same-segment DNS (a DNS server
 *    container next to its clients) is left alone, like the forward chain does.
 *  - DNS aimed at one of the host's own addresses is redirected when it
 *    comes from a Docker subnet (so a resolver on the host is no way around
 *    the gate, and daemon.json `dns` can point at a bridge address); from
 *    anywhere else it is left alone (a DNS server the host runs for others).
 *  - the gate's port itself answers only redirected connections and
 *    loopback: nobody reaches it directly (input chain; ufw's INPUT accepts
 *    only connections in conntrack state DNAT).
 *  - DNS-over-TLS (853) cannot be redirected to a plain DNS server: the
 *    forward chain rejects it, and DNS that still gets there (53) too.
 */
import type { Family } from '../net/ip.js';
import { parseCidr } from '../net/ip.js';

export interface GateRulesInput {
  /** dns.gate.port */
  port: number;
  /** Docker's subnets (sources treated as containers for DNS aimed at the host itself); empty: that rule is left out */
  dockerSubnets: Record<Family, string[]>;
  /** interfaces the operator routes for (a VPN): their DNS is not redirected */
  exemptInterfaces: string[];
}

const DNS = 'meta l4proto { tcp, udp } th dport 53';
const q = (s: string) => `"${s}"`;

/** nat prerouting chain (inside `table inet egressfw { ... }`): container DNS to the gate. */
export function gateNatChain(i: GateRulesInput): string {
  const subnets = (f: Family) => i.dockerSubnets[f].map((c) => parseCidr(c)!.text);
  const lines = [
    'chain gate-dns {',
    '  type nat hook prerouting priority dstnat - 5; policy accept;',
    ...(i.exemptInterfaces.length ? [`  iifname { ${i.exemptInterfaces.map(q).join(', ')} } return comment "egressfw gate: operator exemptions"`] : []),
    ...([4, 6] as Family[])
      .filter((f) => subnets(f).length)
      .map((f) => `  ${f === 4 ? 'ip' : 'ip6'} saddr { ${subnets(f).join(', ')} } fib daddr type local ${DNS} redirect to :${i.port} comment "egressfw gate: container DNS to the host"`),
    `  fib daddr type local return comment "egressfw gate: DNS servers of the host, for others"`,
    `  ${DNS} fib daddr . iif oif exists return comment "egressfw gate: same segment"`,
    `  ${DNS} redirect to :${i.port} comment "egressfw gate: forwarded DNS"`,
    '}',
  ];
  return lines.join('\n');
}

/** input chain: the gate's port answers redirected connections and loopback only. */
export function gateInputChain(i: Pick<GateRulesInput, 'port'>): string {
  return [
    'chain gate-input {',
    '  type filter hook input priority filter - 1; policy accept;',
    `  meta l4proto { tcp, udp } th dport ${i.port} iif != "lo" ct status & dnat == 0 drop comment "egressfw gate: only redirected DNS"`,
    '}',
  ].join('\n');
}

/**
 * Lines for the forward chain: after the reply / published-port / same-segment
 * accepts and the operator exemptions, BEFORE the @allow/@gate accepts (the
 * upstream resolvers may be in allow4 for the host: containers must not use them).
 */
export function gateForwardRules(): string[] {
  return [
    `meta l4proto tcp th dport { 53, 853 } reject with tcp reset comment "egressfw gate: DNS and DNS-over-TLS only through the gate"`,
    `meta l4proto udp th dport { 53, 853 } reject comment "egressfw gate: DNS and DNS-over-TLS only through the gate"`,
  ];
}

/**
 * ufw block lines (iptables-restore, *filter of before.rules / before6.rules):
 * accept redirected DNS to the gate through ufw's INPUT. `--ctstate DNAT`
 * keeps the port closed to direct access even when our table is missing.
 */
export function gateUfwRules(family: Family, port: number): string[] {
  const chain = family === 4 ? 'ufw-before-input' : 'ufw6-before-input';
  return (['udp', 'tcp'] as const).map((p) => `-A ${chain} -p ${p} -m ${p} --dport ${port} -m conntrack --ctstate DNAT -m comment --comment "egressfw gate" -j ACCEPT`);
}
