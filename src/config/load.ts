import { readFile } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.js';
import { parseCidr, compareIp, type Family } from '../net/ip.js';
import { configSchema, type Port } from './schema.js';
import { normaliseProxy, type ProxyConfig } from '../proxy/config.js';

export const DEFAULT_CONFIG_PATH = '/etc/egressfw/egressfw.yml';

export interface DomainRule {
  name: string;
  ports: Port[];
  allowPrivate: boolean;
}
export interface CidrRule {
  cidr: string;
  family: Family;
  ports: Port[];
}
export interface GateConfig {
  enabled: boolean;
  listen: string[];
  port: number;
  cacheSize: number;
  logMaxBytes: number;
  logFiles: number;
}
export interface Config {
  /** exact names (resolved by sync, and answered by the DNS gate) */
  domains: DomainRule[];
  /** "*.example.com" entries: any name below example.com; answered only by the DNS gate (name keeps the "*.") */
  wildcards: DomainRule[];
  cidrs: CidrRule[];
  dns: {
    /** undefined: use the nameservers of /etc/resolv.conf */
    servers: string[] | undefined;
    port: number;
    timeoutMs: number;
    attempts: number;
    concurrency: number;
    minTtl: number;
    maxTtl: number;
    gate: GateConfig;
  };
  staleGrace: number;
  mode: 'enforce' | 'audit';
  containers: { enabled: boolean; exemptFrom: string[] };
  /** not errors, but worth a line on stderr (printed by the command) */
  warnings: string[];
  host: { enabled: boolean; enableUfw: boolean; outgoing: 'deny' | 'reject' };
  ipv6: boolean;
  schedule: { refresh: string; driftCheck: number; retryMax: number };
  /** `egressfw proxy` (and the one firewall rule SNI wildcards need) */
  proxy: ProxyConfig;
}

/** `allow[2].ports[0]` from zod's path array. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : `${out ? '.' : ''}${String(p)}`;
  return out || '(top level)';
}

function formatIssues(issues: z.core.$ZodIssue[]): string[] {
  return issues.map((i) => {
    let msg = i.message;
    if (i.code === 'unrecognized_keys') msg = `unknown key${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => `"${k}"`).join(', ')} (check the spelling; see examples/egressfw.yml)`;
    return `${formatPath(i.path)}: ${msg}`;
  });
}

export function sortPorts(ports: Port[]): Port[] {
  const seen = new Map<string, Port>();
  for (const p of ports) seen.set(`${p.proto}:${p.port}`, p);
  return [...seen.values()].sort((a, b) => (a.proto === b.proto ? a.port - b.port : a.proto < b.proto ? -1 : 1));
}

/** Pure: text of a YAML or JSON file -> validated, normalised Config. Throws ConfigError listing every problem. */
export function parseConfig(text: string, file: string): Config {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    // yaml's pretty messages say "... at line N, column M:" then quote the source: keep the first line.
    throw new ConfigError(file, doc.errors.map((e) => `YAML: ${e.message.split('\n')[0]!.replace(/:$/, '')}`));
  }
  const data: unknown = doc.toJS() ?? {};
  const parsed = configSchema.safeParse(data);
  if (!parsed.success) throw new ConfigError(file, formatIssues(parsed.error.issues));
  const raw = parsed.data;
  if (raw.dns.minTtl > raw.dns.maxTtl) throw new ConfigError(file, ['dns.minTtl: must not be greater than dns.maxTtl']);
  const { proxy, problems } = normaliseProxy(raw);
  if (problems.length > 0) throw new ConfigError(file, problems);

  // Duplicates merge: the same name (or network) listed twice allows the union of its ports.
  const domains = new Map<string, DomainRule>();
  const wildcards = new Map<string, DomainRule>();
  const cidrs = new Map<string, CidrRule>();
  const wildcardProblems: string[] = [];
  for (const [i, e] of raw.allow.entries()) {
    if (e.domain?.startsWith('*.') && !raw.dns.gate.enabled) {
      wildcardProblems.push(
        `allow[${i}].domain: "${e.domain}" is a wildcard: it needs the DNS gate (set \`dns.gate.enabled: true\`, see docs/dns-gate.md), since an IP firewall alone has no list of IPs for it; or list each name, or use \`egressfw proxy --mode sni\``,
      );
    }
    if (e.domain !== undefined) {
      const into = e.domain.startsWith('*.') ? wildcards : domains;
      const prev = into.get(e.domain);
      into.set(e.domain, {
        name: e.domain,
        ports: sortPorts([...(prev?.ports ?? []), ...e.ports]),
        allowPrivate: (prev?.allowPrivate ?? false) || e.allowPrivate,
      });
    } else if (e.cidr !== undefined) {
      const prev = cidrs.get(e.cidr);
      cidrs.set(e.cidr, { cidr: e.cidr, family: parseCidr(e.cidr)!.family, ports: sortPorts([...(prev?.ports ?? []), ...e.ports]) });
    }
  }
  if (raw.dns.gate.enabled && !raw.containers.enabled) {
    wildcardProblems.push('dns.gate.enabled: the DNS gate judges containers\' DNS in egressfw\'s nft table, which containers.enabled: false turns off; enable both or neither');
  }
  if (wildcardProblems.length > 0) throw new ConfigError(file, wildcardProblems);
  const byName = (a: DomainRule, b: DomainRule) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  return {
    domains: [...domains.values()].sort(byName),
    wildcards: [...wildcards.values()].sort(byName),
    cidrs: [...cidrs.values()].sort((a, b) => compareIp(a.cidr, b.cidr)),
    dns: {
      servers: raw.dns.servers ? [...new Set(raw.dns.servers)] : undefined,
      port: raw.dns.port,
      timeoutMs: Math.max(1, Math.round(raw.dns.timeout * 1000)),
      attempts: raw.dns.attempts,
      concurrency: raw.dns.concurrency,
      minTtl: raw.dns.minTtl,
      maxTtl: raw.dns.maxTtl,
      gate: { ...raw.dns.gate, listen: [...new Set(raw.dns.gate.listen)] },
    },
    staleGrace: raw.staleGrace,
    mode: raw.mode,
    containers: { enabled: raw.containers.enabled, exemptFrom: raw.containers.exemptFrom },
    warnings: raw.containers.bridges
      ? ['containers.bridges is no longer used: egressfw now judges every forwarded connection, whatever the bridge is called; remove the key (use containers.exemptFrom for interfaces you route for, such as a VPN)']
      : [],
    host: raw.host,
    ipv6: raw.ipv6,
    schedule: raw.schedule,
    proxy,
  };
}

export async function loadConfig(file: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? `file not found; create it (start from examples/egressfw.yml) or pass --config FILE`
        : code === 'EACCES'
          ? 'permission denied; run with sudo or make the file readable'
          : (e as Error).message;
    throw new ConfigError(file, [why]);
  }
  return parseConfig(text, file);
}

/** Pure: nameservers of a resolv.conf text (IPv6 link-local with zone ids are skipped). */
export function parseResolvConf(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    const c = parseCidr(m[1]!);
    if (c && !m[1]!.includes('/')) out.push(c.text.split('/')[0]!);
  }
  return [...new Set(out)];
}
