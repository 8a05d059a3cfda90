import { validate as validCron } from 'node-cron';
import { z } from 'zod';
import { parseCidr, parseIp } from '../net/ip.js';
import { checkDomain, checkInterface } from './name-checks.js';
import { matchesDockerName } from '../net/docker-interfaces.js';
import { checkComposeName, checkImageRef, checkWildcard } from '../proxy/validate.js';
import { parseMetricsListen } from '../metrics/listen.js';

export type Proto = 'tcp' | 'udp';
export interface Port {
  port: number;
  proto: Proto;
}

/** "300ms", "30s", "5m", "1h", "1d" or a number of seconds -> seconds. */
const duration = (what: string) =>
  z.union([z.number(), z.string()]).transform((v, ctx) => {
    const m = /^([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)?$/.exec(String(v).trim());
    const unit = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 }[(m?.[2] ?? 's') as 's'];
    const n = m ? Number(m[1]) * unit : NaN;
    if (!Number.isFinite(n) || n < 0 || n > 30 * 86400) {
      ctx.addIssue({ code: 'custom', message: `${what} must be a duration like 30, "300ms", "30s", "5m" or "1h" (at most 30 days)` });
      return z.NEVER;
    }
    return n;
  });

const port = z.union([z.number(), z.string()]).transform((v, ctx): Port => {
  const m = /^([0-9]{1,5})(?:\/(tcp|udp))?$/.exec(String(v).trim().toLowerCase());
  const n = m ? Number(m[1]) : NaN;
  if (!m || !(n >= 1 && n <= 65535)) {
    ctx.addIssue({ code: 'custom', message: `port must be 1-65535, optionally with "/tcp" or "/udp" (got ${JSON.stringify(v)})` });
    return z.NEVER;
  }
  return { port: n, proto: (m[2] as Proto | undefined) ?? 'tcp' };
});

/** The bridge names egressfw gives the proxy's egress network (proxy.egressBridge). */
export const EGRESS_BRIDGE = /^br-egressfw(-[a-z0-9]{1,3})?$/;

/** An exact name, or "*.example.com" (any name below example.com; only with the DNS gate, checked in load.ts). */
const domain = z.string().transform((v, ctx) => {
  const r = v.trim().startsWith('*.') ? checkWildcard(v) : checkDomain(v);
  if (!r.ok) {
    ctx.addIssue({ code: 'custom', message: r.problem });
    return z.NEVER;
  }
  return r.name;
});

const cidr = z.string().transform((v, ctx) => {
  const c = parseCidr(v.trim());
  if (!c) {
    ctx.addIssue({ code: 'custom', message: `not an IPv4/IPv6 address or network: ${JSON.stringify(v)} (e.g. 192.0.2.0/24, 2001:db8::/48)` });
    return z.NEVER;
  }
  if (c.prefix === 0) {
    // ipset's hash:net types refuse a zero prefix ("The value of the CIDR parameter of the IP address is invalid").
    const [bits, halves] = c.family === 4 ? [32, '0.0.0.0/1 and 128.0.0.0/1'] : [128, '::/1 and 8000::/1'];
    ctx.addIssue({
      code: 'custom',
      message: `${c.text} cannot be stored (ipset hash:net holds /1 to /${bits}): to allow every IPv${c.family} address on these ports, list ${halves}`,
    });
    return z.NEVER;
  }
  return c.text;
});

const ip = z.string().transform((v, ctx) => {
  const a = parseIp(v.trim());
  if (!a) {
    ctx.addIssue({ code: 'custom', message: `not an IP address: ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return a.text;
});

const iface = z.string().superRefine((v, ctx) => {
  const p = checkInterface(v);
  if (p) ctx.addIssue({ code: 'custom', message: p });
});

const entry = z
  .object({
    domain: domain.optional(),
    cidr: cidr.optional(),
    ports: z.array(port).min(1, 'give at least one port, or leave ports out for [443]').default([{ port: 443, proto: 'tcp' }]),
    allowPrivate: z.boolean().default(false),
  })
  .strict()
  .superRefine((e, ctx) => {
    if ((e.domain === undefined) === (e.cidr === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'each allow entry needs exactly one of `domain` or `cidr`' });
    }
  });

const composeName = (what: 'service' | 'network') =>
  z.string().superRefine((v, ctx) => {
    const p = checkComposeName(v, what);
    if (p) ctx.addIssue({ code: 'custom', message: p });
  });

const tcpPort = z.number().int().min(1, 'port must be 1-65535').max(65535, 'port must be 1-65535');

/** `egressfw proxy`: generated compose override + nginx configs (src/proxy). */
const proxySection = z
  .object({
    /** per-domain: one nginx stream pass-through per allowed domain; sni: one nginx routing by TLS SNI / HTTP Host */
    mode: z.enum(['per-domain', 'sni']).default('per-domain'),
    /** compose services to protect: moved onto the internal network, no route out */
    services: z.array(composeName('service')).default([]),
    /** compose services the protected ones must still reach (db, cache): added to the internal network, keeping their own */
    peers: z.array(composeName('service')).default([]),
    image: z
      .string()
      .superRefine((v, ctx) => {
        const p = checkImageRef(v);
        if (p) ctx.addIssue({ code: 'custom', message: p });
      })
      .default('nginx:1.28.0-bookworm'),
    internalNetwork: composeName('network').default('egressfw-internal'),
    egressNetwork: composeName('network').default('egressfw-egress'),
    /** IPv4 subnet for the internal network; gives the sni proxy a fixed address (for extra_hosts of wildcard names) */
    internalSubnet: z
      .string()
      .transform((v, ctx) => {
        const c = parseCidr(v.trim());
        if (!c || c.family !== 4 || c.prefix > 29 || !v.includes('/')) {
          ctx.addIssue({ code: 'custom', message: `not an IPv4 network of /29 or larger: ${JSON.stringify(v)} (e.g. 172.31.250.0/24)` });
          return z.NEVER;
        }
        return c.text;
      })
      .optional(),
    /** sni mode: "*.example.com" names (any depth below example.com, not example.com itself) */
    wildcards: z
      .array(
        z.string().transform((v, ctx) => {
          const r = checkWildcard(v);
          if (!r.ok) {
            ctx.addIssue({ code: 'custom', message: r.problem });
            return z.NEVER;
          }
          return r.name;
        }),
      )
      .default([]),
    /** bridge interface of the egress network when wildcards are used: the one extra firewall rule matches it */
    egressBridge: iface
      .refine((v) => !v.endsWith('+'), 'a bridge name, not a pattern')
      // egressfw names this bridge itself (the override's com.docker.network.bridge.name): never docker0,
      // docker_gwbridge, br-<id> or any bridge Docker or someone else made, which the rule would open to every address
      .refine(
        (v) => v.endsWith('+') || checkInterface(v) !== null || EGRESS_BRIDGE.test(v),
        'must be br-egressfw or br-egressfw-<1 to 3 letters or digits>: the bridge egressfw gives the proxy\'s egress network in the compose override (the wildcard rule lets it reach every public address on the proxied ports, so it must never name a bridge other containers sit on)',
      )
      .default('br-egressfw'),
    /** sni mode: ports routed by the TLS SNI name */
    tlsPorts: z.array(tcpPort).default([443]),
    /** sni mode: ports routed by the HTTP Host header */
    httpPorts: z.array(tcpPort).default([80]),
    /** local port of the proxies' health check listener (127.0.0.1 inside each proxy) */
    healthPort: tcpPort.default(8999),
  })
  .strict()
  .prefault({});

/**
 * A policy's name: it becomes part of nft chain and set names and of Kubernetes object names
 * (`egressfw export`), so a DNS label of at most 24 characters. "host" and "none" are reserved.
 */
export const POLICY_NAME = /^[a-z](?:[a-z0-9-]{0,22}[a-z0-9])?$/;
export const RESERVED_POLICIES = ['host', 'none'] as const;

/** The name a container's policy is given by: a defined policy, "host" (the top-level allow) or "none". */
const policyRef = z.string().superRefine((v, ctx) => {
  if (!POLICY_NAME.test(v)) ctx.addIssue({ code: 'custom', message: `not a policy name: ${JSON.stringify(v.slice(0, 40))} (lowercase letters, digits and "-", starting with a letter, at most 24; or "host" or "none")` });
});

/** Printable text without control characters: matched against what Docker reports, never put on a command line. */
const matchText = (what: string, max: number) =>
  z.string().min(1, `${what} must not be empty`).max(max, `${what} is at most ${max} characters`).refine((v) => !/[\u0000-\u001f\u007f]/.test(v), `${what} must not contain control characters`);

/** Which containers an assign entry selects: every key given must match (compose labels, any label, the name). */
const containerMatch = z
  .object({
    /** compose project (label com.docker.compose.project) */
    project: matchText('match.project', 255).optional(),
    /** compose service (label com.docker.compose.service) */
    service: matchText('match.service', 255).optional(),
    /** "key=value" (that value) or "key" (any value) */
    label: matchText('match.label', 1024).optional(),
    /** the container's name; "*" matches any run of characters, "?" one */
    name: matchText('match.name', 255).optional(),
  })
  .strict()
  .refine((m) => Object.values(m).some((v) => v !== undefined), 'give at least one of project, service, label, name');

const policySection = z.object({ allow: z.array(entry).default([]) }).strict();

export const configSchema = z
  .object({
    allow: z.array(entry).default([]),
    dns: z
      .object({
        servers: z.array(ip).min(1).optional(),
        timeout: duration('dns.timeout').default(2),
        attempts: z.number().int().min(1).max(10).default(2),
        concurrency: z.number().int().min(1).max(256).default(32),
        minTtl: duration('dns.minTtl').default(30),
        maxTtl: duration('dns.maxTtl').default(86400),
        /** addresses kept per name and family (a server answering thousands must not flood the sets); 256 at most */
        maxAddresses: z.number().int().min(1, 'dns.maxAddresses must be 1-256').max(256, 'dns.maxAddresses must be 1-256 (256 is the hard cap)').default(256),
        /** overall time for one name (every server, round and CNAME hop); default 20s, or dns.timeout if longer */
        deadline: duration('dns.deadline').optional(),
        /** the operator knows DNS is an open channel here (gate off): `status` then exits 0 for it */
        openAcknowledged: z.boolean().default(false),
        /** port of the DNS servers (53; tests and local resolvers may differ) */
        port: z.number().int().min(1).max(65535).default(53),
        /** the DNS gate (`egressfw daemon`): containers resolve only allowed names; see docs/dns-gate.md */
        gate: z
          .object({
            /**
             * Unset: on when egressfw runs as `egressfw daemon` (what `install --systemd` sets up), off in cron
             * mode or before it was installed (docs/dns-gate.md, "On by default"). true: wanted everywhere
             * (wildcards need it); false: off, DNS stays open.
             */
            enabled: z.boolean().optional(),
            /**
             * Where the gate listens. Containers never address it directly: their DNS (port 53, any
             * destination) is redirected to this port on the address of the bridge it arrives on, so
             * the wildcard addresses are what covers every bridge, present and future.
             */
            listen: z.array(ip).min(1).default(['0.0.0.0', '::']),
            port: z.number().int().min(1).max(65535).refine((n) => n !== 53, 'must not be 53 (the host may run its own resolver there; container DNS on 53 is redirected to this port)').default(5300),
            /** answers kept (each name and type is one); the oldest go first when full */
            cacheSize: z.number().int().min(0).max(1_000_000).default(20_000),
            /** <state dir>/gate.log is rotated at this size (bytes; "10MB" style also accepted) */
            logMaxBytes: z
              .union([z.number(), z.string()])
              .transform((v, ctx) => {
                const m = /^([0-9]+)\s*(b|kb|mb|gb)?$/i.exec(String(v).trim());
                const n = m ? Number(m[1]) * { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }[(m[2] ?? 'b').toLowerCase() as 'b'] : NaN;
                if (!(n >= 64 * 1024 && n <= 1024 ** 3)) {
                  ctx.addIssue({ code: 'custom', message: 'dns.gate.logMaxBytes must be a size from 64KB to 1GB (e.g. "10MB")' });
                  return z.NEVER;
                }
                return n;
              })
              .default(10 * 1024 ** 2),
            /** rotated files kept besides gate.log (gate.log.1 ... gate.log.N) */
            logFiles: z.number().int().min(1).max(20).default(2),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    staleGrace: duration('staleGrace').default(300),
    /** enforce: refuse what is not allowed; audit: record it and let it through (to discover the allowlist) */
    mode: z.enum(['enforce', 'audit']).default('enforce'),
    containers: z
      .object({
        enabled: z.boolean().default(true),
        /** before 0.2: interfaces judged. Every forwarded connection is judged now; kept only to warn. */
        bridges: z.array(iface).optional(),
        /**
         * Interfaces this host routes for besides Docker (a VPN such as wg0): connections entering from
         * them are not judged. Never a container bridge, never the uplink.
         */
        exemptFrom: z
          .array(
            iface.superRefine((v, ctx) => {
              // Any name Docker can generate (docker0, br-<id>, veth...), whatever Docker runs now; and the uplink.
              const docker = matchesDockerName(v);
              if (docker) {
                ctx.addIssue({ code: 'custom', message: `"${v}" can match ${docker.example}, ${docker.what}: containers would not be judged; list only interfaces you route for, such as a VPN (wg0, tun0)` });
              } else if (v === '+' || /^(e|en|eth|wl|ww)\+?$/.test(v)) {
                ctx.addIssue({ code: 'custom', message: `"${v}" would exempt the uplink itself: list only interfaces you route for, such as a VPN (wg0, tun0)` });
              }
            }),
          )
          .default([]),
        /** what a container no assign entry (nor label) selects gets: "host" (the top-level allow), "none", or a policy */
        default: policyRef.default('host'),
        /** first match wins; before the egressfw.policy label, which only chooses among defined policies */
        assign: z.array(z.object({ policy: policyRef, match: containerMatch }).strict()).default([]),
        /** honour the container label egressfw.policy (it can only select a policy this config defines) */
        policyLabel: z.boolean().default(true),
      })
      .strict()
      .prefault({}),
    /** named allowlists for containers (containers.assign / the egressfw.policy label select them) */
    policies: z.record(z.string(), policySection).default({}),
    host: z
      .object({
        enabled: z.boolean().default(true),
        /** ufw inactive: enable it ourselves only when the operator opted in (it denies incoming by default). */
        enableUfw: z.boolean().default(false),
        /** reject (default): blocked host connections fail at once; deny: they are dropped silently and time out */
        outgoing: z.enum(['reject', 'deny']).default('reject'),
      })
      .strict()
      .prefault({}),
    ipv6: z.boolean().default(true),
    schedule: z
      .object({
        /** cron expression for a full refresh (DNS + apply); earlier when a TTL runs out */
        refresh: z
          .string()
          .refine((v) => validCron(v), 'not a cron expression (e.g. "*/5 * * * *": every 5 minutes; 6 fields allow seconds)')
          .default('*/5 * * * *'),
        /** how often the daemon reads the kernel for drift (no DNS, no writes unless something drifted) */
        driftCheck: duration('schedule.driftCheck').refine((n) => n >= 1, 'schedule.driftCheck must be at least 1s').default(30),
        /** longest wait between retries of a failing refresh (it backs off from 5s) */
        retryMax: duration('schedule.retryMax').default(300),
      })
      .strict()
      .prefault({}),
    proxy: proxySection,
    /** Prometheus metrics from the daemon (both opt-in); see docs/metrics.md */
    metrics: z
      .object({
        /** node_exporter textfile collector: a .prom file, rewritten atomically every interval */
        textfile: z
          .string()
          .refine((v) => v.startsWith('/') && v.endsWith('.prom') && !v.includes('\0'), 'metrics.textfile must be an absolute path ending in .prom (node_exporter\'s textfile collector reads only *.prom), e.g. /var/lib/prometheus/node-exporter/egressfw.prom')
          .optional(),
        /** HTTP /metrics served by the daemon: "127.0.0.1:PORT", "[::1]:PORT" or "unix:PATH" (never a non-loopback address) */
        listen: z
          .string()
          .superRefine((v, ctx) => {
            const l = parseMetricsListen(v);
            if ('error' in l) ctx.addIssue({ code: 'custom', message: l.error });
          })
          .optional(),
        /** how often the kernel's counters are read and the textfile rewritten */
        interval: duration('metrics.interval').refine((n) => n >= 1, 'metrics.interval must be at least 1s').default(15),
        /** a series per allowed name (egressfw_domain_ok{domain}); off: names never appear in labels */
        domainLabels: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type RawConfig = z.output<typeof configSchema>;
