/**
 * Is DNS an open channel on this host, and for whom? With the gate off,
 * containers (and the host) resolve any name through the upstream resolvers,
 * so any data can leave as queries for names no one allowed. plan, sync and
 * status say so the way they name a NOT ENFORCED network. Pure.
 */
import type { Config, Scheduler } from '../config/load.js';

export interface DnsOpen {
  /** who can send any name upstream */
  who: string[];
  /** why the gate is off */
  why: string;
  /** how to close it */
  fix: string;
  /** dns.openAcknowledged: true (status then exits 0 for it) */
  acknowledged: boolean;
}

export function dnsOpen(config: Config, scheduler: Scheduler): DnsOpen | null {
  if (config.dns.gate.enabled) return null;
  const who = [...(config.containers.enabled ? ['containers'] : []), ...(config.host.enabled ? ['the host'] : [])];
  if (!who.length) return null;
  const why =
    config.dns.gate.setting === false
      ? 'dns.gate.enabled is false'
      : !config.containers.enabled
        ? 'containers.enabled is false (the gate works through egressfw\'s nft table)'
        : scheduler === 'cron'
          ? 'egressfw runs from cron, which runs no DNS gate'
          : 'egressfw does not run as `egressfw daemon` here (not installed yet, or run by hand)';
  const fix =
    config.dns.gate.setting === false || !config.containers.enabled
      ? 'set dns.gate.enabled: true (or leave it unset) and run `sudo egressfw install --systemd`'
      : 'run egressfw as the daemon: `sudo egressfw install --systemd` (the gate is on under it)';
  return { who, why, fix, acknowledged: config.dns.openAcknowledged };
}

/** The lines plan, sync and status print. */
export function dnsOpenText(o: DnsOpen): string[] {
  if (o.acknowledged) return [`DNS open (acknowledged by dns.openAcknowledged): ${o.who.join(' and ')} resolve any name upstream; ${o.why}`];
  return [
    `!!! DNS OPEN: ${o.who.join(' and ')} can resolve ANY name through the upstream resolvers, so data can leave as DNS queries !!!`,
    `!!!   why: ${o.why}`,
    `!!!   close it: ${o.fix}; or accept it with dns.openAcknowledged: true`,
  ];
}
