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
 *    arrives on a bridge interface (`meta iifkind "bridge"`: every Docker
 *    bridge network, whatever its name), so a resolver on the host is no way
 *    around the gate; from anywhere else it is left alone (a DNS server the
 *    host runs for others). A host whose uplink is itself a bridge lists it
 *    in containers.exemptFrom.
 *  - the gate's port itself answers only redirected connections and
 *    loopback: nobody reaches it directly (input chain; ufw's INPUT accepts
 *    only connections in conntrack state DNAT).
 *  - DNS-over-TLS (853) cannot be redirected to a plain DNS server: the
 *    forward chain rejects it, and DNS that still gets there (53) too.
 */
import type { Family } from '../net/ip.js';
import type { NftRule } from './nft.js';
import { NFT } from './kernel-names.js';

export interface GateRulesInput {
  /** dns.gate.port */
  port: number;
  /** interfaces the operator routes for (a VPN; containers.exemptFrom, "+" = prefix): their DNS is not redirected */
  exemptInterfaces: string[];
}

const DNS = 'meta l4proto { tcp, udp } th dport 53';

export interface GateChain {
  name: string;
  /** the base chain declaration (inside `{ }`) */
  decl: string;
  /** how the chain reads back in `nft -j list` (type, hook, prio, policy) */
  spec: { type: string; hook: string; prio: number; policy: string };
  rules: NftRule[];
}

/** nat prerouting chain: container DNS to the gate (priority dstnat - 5: before Docker's own DNAT). */
export function gateNatChain(i: GateRulesInput): GateChain {
  const exempt = i.exemptInterfaces.map((x) => `"${x.replace(/\+$/, '*')}"`);
  return {
    name: NFT.gateChains[0],
    decl: 'type nat hook prerouting priority dstnat - 5; policy accept;',
    spec: { type: 'nat', hook: 'prerouting', prio: -105, policy: 'accept' },
    rules: [
      ...(exempt.length ? [{ tag: 'gate-exempt', text: `iifname { ${exempt.join(', ')} } return` }] : []),
      // DNS aimed at the host itself, arriving on a bridge (Docker's networks, whatever their name): a resolver on
      // the host is no way around the gate, and daemon.json dns may point at a bridge address.
      { tag: 'gate-to-host', text: `fib daddr type local meta iifkind "bridge" ${DNS} redirect to :${i.port}` },
      // Anything else aimed at the host: a DNS server the host runs for others, not ours.
      { tag: 'gate-host-others', text: 'fib daddr type local return' },
      // Same segment (a DNS server container next to its clients): left alone, as the forward chain does.
      { tag: 'gate-same-segment', text: `${DNS} fib daddr . iif oif exists return` },
      // Every other DNS that would be forwarded: containers' resolv.conf servers, --dns, Docker's embedded resolver.
      { tag: 'gate-redirect', text: `${DNS} redirect to :${i.port}` },
    ],
  };
}

/**
 * The gate's own upstream queries leave from these source ports (src/system/upstream-pool.ts binds
 * them): UDP 960-975, TCP 976-987. Below 1024, so only a process with CAP_NET_BIND_SERVICE can use them.
 */
export const GATE_SOURCE_PORTS = '960-987';

/**
 * nat output chain: the host's own DNS to the gate. Every host process (resolv.conf servers,
 * systemd-resolved's and a local dnsmasq's upstream queries, dockerd's embedded resolver when it asks
 * from the host's namespace, `dig @8.8.8.8`) is redirected to the gate on loopback, which answers
 * allowed names only. Except the gate's own upstream queries: a root socket (`meta skuid 0`) on a
 * reserved port below 1024. An unprivileged process can have neither; root can rewrite the firewall
 * anyway. DNS to the host itself (127.0.0.53, a dnsmasq on 127.0.0.1) is left to reach that resolver:
 * its upstream leg is caught here. While no gate listens the redirect meets a closed port: queries
 * fail at once (port unreachable), nothing hangs and nothing goes upstream.
 */
export function gateHostChain(i: Pick<GateRulesInput, 'port'>): GateChain {
  return {
    name: 'gate-host',
    decl: 'type nat hook output priority -105; policy accept;', // ("dstnat" names a priority in prerouting only)
    spec: { type: 'nat', hook: 'output', prio: -105, policy: 'accept' },
    rules: [
      { tag: 'gate-own', text: `meta skuid 0 meta l4proto { tcp, udp } th sport ${GATE_SOURCE_PORTS} th dport 53 return` },
      { tag: 'gate-host-local', text: 'fib daddr type local return' },
      { tag: 'gate-host-redirect', text: `${DNS} redirect to :${i.port}` },
    ],
  };
}

/**
 * nat postrouting chain: a redirected host query leaves its source address as it was (the host's own,
 * say 198.51.100.2), so the gate, bound to the wildcard address, would answer from that address and
 * not from loopback: the reply would match no connection and never be turned back into the upstream's
 * address (the client drops it). Rewriting the query's source to loopback makes the reply go
 * loopback to loopback, which conntrack maps back. Checked in a throwaway namespace: without it no
 * host query gets an answer. Redirected queries only (`ct status dnat`); nothing else uses `lo` here.
 */
export function gateHostSourceChain(i: Pick<GateRulesInput, 'port'>): GateChain {
  const to = `oif "lo" meta l4proto { tcp, udp } th dport ${i.port} ct status & dnat != 0`;
  return {
    name: 'gate-host-src',
    decl: 'type nat hook postrouting priority 95; policy accept;',
    spec: { type: 'nat', hook: 'postrouting', prio: 95, policy: 'accept' },
    rules: [
      { tag: 'gate-host-src4', text: `${to} snat ip to 127.0.0.1` },
      { tag: 'gate-host-src6', text: `${to} snat ip6 to ::1` },
    ],
  };
}

/** input chain: the gate's port answers redirected connections and loopback only. */
export function gateInputChain(i: Pick<GateRulesInput, 'port'>): GateChain {
  return {
    name: NFT.gateChains[1],
    decl: 'type filter hook input priority filter - 1; policy accept;',
    spec: { type: 'filter', hook: 'input', prio: -1, policy: 'accept' },
    rules: [{ tag: 'gate-direct', text: `meta l4proto { tcp, udp } th dport ${i.port} iif != "lo" ct status & dnat == 0 drop` }],
  };
}

/**
 * Forward chain rules: after the reply / published-port / same-segment accepts and
 * the operator exemptions, BEFORE the @allow/@gate accepts (the upstream resolvers
 * are in allow4 for the host: containers must not reach them but through the gate).
 */
export function gateForwardRules(): NftRule[] {
  return [
    { tag: 'gate-dns-tcp', text: 'meta l4proto tcp th dport { 53, 853 } reject with tcp reset' },
    { tag: 'gate-dns', text: 'meta l4proto udp th dport { 53, 853 } reject' },
  ];
}

/**
 * ufw block lines (iptables-restore, *filter of before.rules / before6.rules):
 * accept redirected DNS to the gate through ufw's INPUT. `--ctstate DNAT`
 * keeps the port closed to direct access even when our table is missing.
 */
export function gateUfwRules(family: Family, port: number): string[] {
  const chain = family === 4 ? 'ufw-before-input' : 'ufw6-before-input';
  const out = family === 4 ? 'ufw-before-output' : 'ufw6-before-output';
  const lo = family === 4 ? '127.0.0.1' : '::1';
  return [
    ...(['udp', 'tcp'] as const).map((p) => `-A ${chain} -p ${p} -m ${p} --dport ${port} -m conntrack --ctstate DNAT -m comment --comment "egressfw gate" -j ACCEPT`),
    // The host's DNS redirected to the gate (chain gate-host): the OUTPUT hook still names the original
    // interface after the redirect, so ufw's `-o lo` accept does not match it and its outgoing policy
    // would reject it (EPERM). Checked in a throwaway namespace.
    ...(['udp', 'tcp'] as const).map((p) => `-A ${out} -d ${lo} -p ${p} -m ${p} --dport ${port} -m conntrack --ctstate DNAT -m comment --comment "egressfw gate host" -j ACCEPT`),
  ];
}
