import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.js';
import { parseCidr, compareIp, refusedExample, type Family } from '../net/ip.js';
import { NotReadable, readRegularFile, thousands, tooLarge } from '../system/read-file.js';
import { configSchema, POLICY_NAME, RESERVED_POLICIES, type Port, type RawConfig } from './schema.js';
import { normaliseProxy, type ProxyConfig } from '../proxy/config.js';
import { DEFAULT_DEADLINE_MS } from '../resolve/resolver.js';
import { parseMetricsListen, type MetricsListen } from '../metrics/listen.js';
import { printable } from '../text.js';

/** A config is a few KiB; a bigger file is the wrong one, or an attempt to exhaust memory. */
export const MAX_CONFIG_BYTES = 1024 * 1024;
/** YAML aliases expanded at most (yaml's default, made explicit): a few are handy, thousands are a bomb. */
const MAX_ALIASES = 100;
/** Networks this large (IPv4 /8, IPv6 /16 or wider) get a warning: they hardly restrict anything. */
const LARGE_PREFIX = { 4: 8, 6: 16 } as const;

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
/** One allow list: the top level (the host's, and containers' by default) or a policy's. */
export interface AllowList {
  /** exact names (resolved by sync, and answered by the DNS gate) */
  domains: DomainRule[];
  /** "*.example.com" entries: any name below example.com; answered only by the DNS gate (name keeps the "*.") */
  wildcards: DomainRule[];
  cidrs: CidrRule[];
}
/** A named allowlist for containers (`policies.NAME`). */
export interface Policy extends AllowList {
  name: string;
}
/** Which containers an assign entry selects: every key given must match. */
export interface ContainerMatch {
  /** compose project (label com.docker.compose.project), exact */
  project?: string;
  /** compose service (label com.docker.compose.service), exact */
  service?: string;
  /** a label: that value, or any value when `value` is absent */
  label?: { key: string; value?: string };
  /** container name (no leading "/"); "*" any run of characters, "?" one */
  name?: string;
}
export interface AssignRule {
  /** position in containers.assign (named in plan/status: "containers.assign[1]") */
  index: number;
  /** a defined policy, "host", "none", or an unknown name (the containers it selects get nothing) */
  policy: string;
  match: ContainerMatch;
}
export interface GateConfig {
  /** in force: `setting`, or when unset, whether egressfw runs as the daemon (withScheduler) */
  enabled: boolean;
  /** dns.gate.enabled as written: undefined = on under the daemon, off otherwise */
  setting: boolean | undefined;
  listen: string[];
  port: number;
  cacheSize: number;
  logMaxBytes: number;
  logFiles: number;
}
export interface Config extends AllowList {
  /** per-workload allowlists, sorted by name; empty when the config defines none */
  policies: Policy[];
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
    /** addresses kept per name and family (at most 256) */
    maxAddresses: number;
    /** overall time for one name, all queries included */
    deadlineMs: number;
    /** dns.openAcknowledged: DNS being open (gate off) is known and accepted */
    openAcknowledged: boolean;
  };
  staleGrace: number;
  mode: 'enforce' | 'audit';
  containers: {
    enabled: boolean;
    exemptFrom: string[];
    /** what a container no assign entry (nor label) selects gets: "host", "none" or a policy name */
    default: string;
    assign: AssignRule[];
    /** the egressfw.policy label selects a defined policy */
    policyLabel: boolean;
  };
  host: { enabled: boolean; enableUfw: boolean; outgoing: 'deny' | 'reject' };
  ipv6: boolean;
  schedule: { refresh: string; driftCheck: number; retryMax: number };
  /** `egressfw proxy` (and the one firewall rule SNI wildcards need) */
  proxy: ProxyConfig;
  /** Prometheus metrics from the daemon: both outputs opt-in */
  metrics: { textfile: string | null; listen: MetricsListen | null; intervalSec: number; domainLabels: boolean };
  /** things that are allowed but probably not meant; the commands print them (to stderr) */
  warnings: string[];
}

/** `allow[2].ports[0]` from zod's path array. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : `${out ? '.' : ''}${String(p)}`;
  return out || '(top level)';
}

/** A key from the file, as a message may name it: short and escaped (the file may be any file: `--config /etc/shadow`). */
const MAX_KEY_SHOWN = 32;
const MAX_KEYS_SHOWN = 5;
const MAX_PROBLEM_CHARS = 400;
const keyText = (k: string) => printable(JSON.stringify(k.length > MAX_KEY_SHOWN ? `${k.slice(0, MAX_KEY_SHOWN)}…` : k));
const short = (msg: string) => (msg.length > MAX_PROBLEM_CHARS ? `${msg.slice(0, MAX_PROBLEM_CHARS)}…` : msg);

function formatIssues(issues: z.core.$ZodIssue[]): string[] {
  return issues.map((i) => {
    let msg = i.message;
    if (i.code === 'unrecognized_keys') {
      const more = i.keys.length > MAX_KEYS_SHOWN ? ` and ${i.keys.length - MAX_KEYS_SHOWN} more` : '';
      msg = `unknown key${i.keys.length > 1 ? 's' : ''} ${i.keys.slice(0, MAX_KEYS_SHOWN).map(keyText).join(', ')}${more} (check the spelling; see examples/egressfw.yml)`;
    }
    // paths are the schema's own keys; messages may quote a value (a bad name): short and escaped
    return `${formatPath(i.path)}: ${printable(short(msg))}`;
  });
}

const TOP_LEVEL_KEYS = Object.keys(configSchema.shape);
const NOT_A_CONFIG = `is not an egressfw config (one has top-level keys such as ${TOP_LEVEL_KEYS.slice(0, 4).join(', ')}; see examples/egressfw.yml): is this the right file?`;

/**
 * A file that is not an egressfw config at all is said to be one, without a word of its
 * contents: not a mapping, or a mapping without one key egressfw knows. Only a file that
 * looks like a config gets its unknown keys named.
 */
function notAConfig(data: unknown): string | null {
  if (data === null || typeof data !== 'object' || Array.isArray(data) || data instanceof Map || data instanceof Set) return `the file is not a mapping of keys: it ${NOT_A_CONFIG}`;
  const keys = Object.keys(data);
  if (keys.length > 0 && !keys.some((k) => TOP_LEVEL_KEYS.includes(k))) return `none of its ${keys.length} top-level keys is one egressfw knows: the file ${NOT_A_CONFIG}`;
  return null;
}

/** yaml's first message line, without any source text it quotes (an alias or tag name): the file may be any file. */
function yamlProblem(message: string): string {
  const first = message.split('\n')[0]!.replace(/:$/, '');
  return printable(short(first.replace(/: .*?( at line \d+, column \d+)?$/, '$1')));
}

export function sortPorts(ports: Port[]): Port[] {
  const seen = new Map<string, Port>();
  for (const p of ports) seen.set(`${p.proto}:${p.port}`, p);
  return [...seen.values()].sort((a, b) => (a.proto === b.proto ? a.port - b.port : a.proto < b.proto ? -1 : 1));
}

/** Pure: text of a YAML or JSON file -> validated, normalised Config. Throws ConfigError listing every problem. */
export function parseConfig(text: string, file: string): Config {
  const size = Buffer.byteLength(text);
  if (size > MAX_CONFIG_BYTES) throw new ConfigError(file, [tooBig(size)]);
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    // yaml's pretty messages say "... at line N, column M:" then quote the source: keep the first line.
    throw new ConfigError(file, doc.errors.map((e) => `YAML: ${yamlProblem(e.message)}`));
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIASES }) ?? {};
  } catch (e) {
    // yaml throws a ReferenceError when aliases expand too far (a "billion laughs" bomb).
    const why = /alias count/i.test((e as Error).message)
      ? `too many aliases (more than ${MAX_ALIASES} expanded, counting nested ones): a config needs few; this looks like a YAML bomb`
      : `cannot be read: ${yamlProblem((e as Error).message)}`;
    throw new ConfigError(file, [`YAML: ${why}`]);
  }
  const alien = notAConfig(data);
  if (alien) throw new ConfigError(file, [alien]);
  const parsed = configSchema.safeParse(data);
  if (!parsed.success) throw new ConfigError(file, formatIssues(parsed.error.issues));
  const raw = parsed.data;
  if (raw.dns.minTtl > raw.dns.maxTtl) throw new ConfigError(file, ['dns.minTtl: must not be greater than dns.maxTtl']);
  if (raw.dns.deadline !== undefined && raw.dns.deadline < raw.dns.timeout) {
    throw new ConfigError(file, [`dns.deadline: must be at least dns.timeout (${raw.dns.timeout} s): it bounds every query of one name`]);
  }
  const { proxy, problems } = normaliseProxy(raw);
  if (problems.length > 0) throw new ConfigError(file, problems);

  const wildcardProblems: string[] = [];
  const top = normaliseAllow(raw.allow, 'allow', raw.dns.gate.enabled === true, wildcardProblems);
  const { policies, assign, problems: policyProblems, warnings: policyWarnings } = normalisePolicies(raw, wildcardProblems);
  wildcardProblems.push(...policyProblems);
  if (raw.dns.gate.enabled === true && !raw.containers.enabled) {
    wildcardProblems.push('dns.gate.enabled: the DNS gate judges containers\' DNS in egressfw\'s nft table, which containers.enabled: false turns off; enable both or neither');
  }
  if (wildcardProblems.length > 0) throw new ConfigError(file, wildcardProblems);
  return {
    warnings: [
      ...configWarnings(raw.allow, 'allow', raw.allow.length === 0 && Object.keys(raw.policies).length === 0),
      ...Object.entries(raw.policies).flatMap(([name, p]) => configWarnings(p.allow, `policies.${name}.allow`, false)),
      ...policyWarnings,
      ...(raw.containers.bridges
        ? ['containers.bridges is no longer used: egressfw now judges every forwarded connection, whatever the bridge is called; remove the key (use containers.exemptFrom for interfaces you route for, such as a VPN)']
        : []),
    ],
    ...top,
    policies,
    dns: {
      servers: raw.dns.servers ? [...new Set(raw.dns.servers)] : undefined,
      port: raw.dns.port,
      timeoutMs: Math.max(1, Math.round(raw.dns.timeout * 1000)),
      attempts: raw.dns.attempts,
      concurrency: raw.dns.concurrency,
      minTtl: raw.dns.minTtl,
      maxTtl: raw.dns.maxTtl,
      // Parsed alone, an unset gate is off: withScheduler() turns it on under the daemon.
      gate: { ...raw.dns.gate, setting: raw.dns.gate.enabled, enabled: raw.dns.gate.enabled === true, listen: [...new Set(raw.dns.gate.listen)] },
      maxAddresses: raw.dns.maxAddresses,
      deadlineMs: Math.round((raw.dns.deadline ?? Math.max(DEFAULT_DEADLINE_MS / 1000, raw.dns.timeout)) * 1000),
      openAcknowledged: raw.dns.openAcknowledged,
    },
    staleGrace: raw.staleGrace,
    mode: raw.mode,
    containers: {
      enabled: raw.containers.enabled,
      exemptFrom: raw.containers.exemptFrom,
      default: raw.containers.default,
      assign,
      policyLabel: raw.containers.policyLabel,
    },
    host: raw.host,
    ipv6: raw.ipv6,
    schedule: raw.schedule,
    proxy,
    metrics: {
      textfile: raw.metrics.textfile ?? null,
      listen: raw.metrics.listen === undefined ? null : (parseMetricsListen(raw.metrics.listen) as MetricsListen),
      intervalSec: raw.metrics.interval,
      domainLabels: raw.metrics.domainLabels,
    },
  };
}

const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** Pure: one allow list (the top level or a policy's) -> exact names, wildcards and networks, duplicates merged. */
function normaliseAllow(allow: RawConfig['allow'], path: string, gate: boolean, problems: string[]): AllowList {
  // Duplicates merge: the same name (or network) listed twice allows the union of its ports.
  const domains = new Map<string, DomainRule>();
  const wildcards = new Map<string, DomainRule>();
  const cidrs = new Map<string, CidrRule>();
  for (const [i, e] of allow.entries()) {
    if (e.domain?.startsWith('*.') && !gate) {
      problems.push(
        `${path}[${i}].domain: "${e.domain}" is a wildcard: it needs the DNS gate (set \`dns.gate.enabled: true\`, see docs/dns-gate.md), since an IP firewall alone has no list of IPs for it; or list each name, or use \`egressfw proxy --mode sni\``,
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
  return {
    domains: [...domains.values()].sort(byName),
    wildcards: [...wildcards.values()].sort(byName),
    cidrs: [...cidrs.values()].sort((a, b) => compareIp(a.cidr, b.cidr)),
  };
}

/** "key=value" or "key" -> the label test an assign entry makes. */
function parseLabelMatch(text: string): { key: string; value?: string } {
  const eq = text.indexOf('=');
  return eq < 0 ? { key: text } : { key: text.slice(0, eq), value: text.slice(eq + 1) };
}

/**
 * Pure: the policies and the container assignment. A name given in `containers.default` or
 * `containers.assign` that no policy defines is a warning, not an error: the containers it
 * selects get nothing (never the default), and plan, sync and status say so.
 */
function normalisePolicies(raw: RawConfig, problems: string[]): { policies: Policy[]; assign: AssignRule[]; problems: string[]; warnings: string[] } {
  const out: string[] = [];
  const warnings: string[] = [];
  const policies: Policy[] = [];
  for (const [name, p] of Object.entries(raw.policies)) {
    if (!POLICY_NAME.test(name)) {
      out.push(`policies.${JSON.stringify(name.slice(0, 40))}: not a policy name (lowercase letters, digits and "-", starting with a letter, at most 24)`);
      continue;
    }
    if ((RESERVED_POLICIES as readonly string[]).includes(name)) {
      out.push(`policies.${name}: "${name}" is reserved (containers.default: host means the top-level allow list, none means nothing); pick another name`);
      continue;
    }
    policies.push({ name, ...normaliseAllow(p.allow, `policies.${name}.allow`, raw.dns.gate.enabled === true, problems) });
  }
  policies.sort(byName);
  const known = new Set<string>([...RESERVED_POLICIES, ...policies.map((p) => p.name)]);
  const unknown = (path: string, name: string) =>
    `${path}: no policy "${name}" is defined: the containers it selects get nothing (neither the default nor the host's list); define policies.${name} or fix the name`;
  if (!known.has(raw.containers.default)) warnings.push(unknown('containers.default', raw.containers.default));
  const assign = raw.containers.assign.map((a, index): AssignRule => {
    if (!known.has(a.policy)) warnings.push(unknown(`containers.assign[${index}].policy`, a.policy));
    const m = a.match;
    return {
      index,
      policy: a.policy,
      match: {
        ...(m.project !== undefined ? { project: m.project } : {}),
        ...(m.service !== undefined ? { service: m.service } : {}),
        ...(m.label !== undefined ? { label: parseLabelMatch(m.label) } : {}),
        ...(m.name !== undefined ? { name: m.name.replace(/^\//, '') } : {}),
      },
    };
  });
  return { policies, assign, problems: out, warnings };
}

const tooBig = (size: number) => `${tooLarge(size, MAX_CONFIG_BYTES)}: an egressfw config is a few KiB; is this the right file?`;

/** Pure: what is allowed but probably not meant, in the order of the allow list. */
function configWarnings(allow: RawConfig['allow'], path: string, warnEmpty: boolean): string[] {
  if (warnEmpty) return ['allow is empty: the config allows nothing, so sync blocks all outbound traffic except DNS to the configured servers'];
  const out: string[] = [];
  allow.forEach((e, i) => {
    const c = e.cidr === undefined ? null : parseCidr(e.cidr);
    if (!c) return;
    const bits = c.family === 4 ? 32 : 128;
    if (c.prefix <= LARGE_PREFIX[c.family]) {
      const count = bits - c.prefix <= 52 ? thousands(2 ** (bits - c.prefix)) : `2^${bits - c.prefix}`;
      out.push(`${path}[${i}].cidr: ${c.text} is very large (${count} addresses): it hardly restricts anything; check it is meant`);
    }
    const special = refusedExample(c);
    if (special) {
      out.push(`${path}[${i}].cidr: ${c.text} includes private or special-purpose addresses, e.g. ${special.ip} (${special.reason}); allowed for ${path === 'allow' ? 'every container and the host' : 'every container of this policy'}`);
    }
  });
  return out;
}

export async function loadConfig(file: string): Promise<Config> {
  let text: string;
  try {
    text = await readRegularFile(file, MAX_CONFIG_BYTES);
  } catch (e) {
    if (e instanceof NotReadable) {
      throw new ConfigError(file, [e.message.startsWith('the file is larger') ? `${e.message}: an egressfw config is a few KiB; is this the right file?` : `${e.message}: give the path of the config file`]);
    }
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

/** How egressfw is scheduled here: `egressfw daemon` (systemd), cron, or not installed (sync by hand). */
export type Scheduler = 'daemon' | 'cron' | null;

/**
 * Pure: the config in force under this scheduler. An unset dns.gate.enabled
 * means on under the daemon (the one that runs the gate) and off otherwise;
 * plan, sync, status and the daemon all read the same marker, so they render
 * the same rules (no drift between a hand-run sync and the daemon).
 */
export function withScheduler(config: Config, scheduler: Scheduler): Config {
  const { setting } = config.dns.gate;
  const enabled = setting ?? (scheduler === 'daemon' && config.containers.enabled);
  if (enabled === config.dns.gate.enabled) return config;
  return { ...config, dns: { ...config.dns, gate: { ...config.dns.gate, enabled } } };
}
