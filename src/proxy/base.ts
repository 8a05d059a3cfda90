/**
 * What `egressfw proxy` needs to know about the user's own compose file, and
 * the checks that make the override safe. Pure: text in, facts and problems out.
 *
 * Why this matters: compose merges a service's `networks` from override files
 * (it adds, never removes). A service that lists networks itself in compose.yml
 * would keep them, and their route out, whatever the override says. A service
 * that lists none gets only the override's networks: that is how egressfw takes
 * a protected service off the default network.
 */
import { parseDocument } from 'yaml';

export interface BaseService {
  /** networks listed in compose.yml, or null when none are (the service is implicitly on "default") */
  networks: string[] | null;
  networkMode: string | undefined;
  publishesPorts: boolean;
}
export interface BaseCompose {
  file: string;
  services: Map<string, BaseService>;
  /** top-level networks declared `internal: true` */
  internalNetworks: Set<string>;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Parse a compose file (YAML). Throws Error with a readable message when it is not one. */
export function parseBaseCompose(text: string, file: string): BaseCompose {
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) throw new Error(`${file}: not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}`);
  const data: unknown = doc.toJS();
  if (!isRecord(data) || !isRecord(data.services)) throw new Error(`${file}: no \`services:\` mapping; is this a compose file?`);
  const services = new Map<string, BaseService>();
  for (const [name, svc] of Object.entries(data.services)) {
    const s = isRecord(svc) ? svc : {};
    const nets = s.networks;
    services.set(name, {
      networks: Array.isArray(nets) ? nets.map(String) : isRecord(nets) ? Object.keys(nets) : null,
      networkMode: typeof s.network_mode === 'string' ? s.network_mode : undefined,
      publishesPorts: Array.isArray(s.ports) && s.ports.length > 0,
    });
  }
  const internalNetworks = new Set<string>();
  if (isRecord(data.networks)) {
    for (const [name, n] of Object.entries(data.networks)) if (isRecord(n) && n.internal === true) internalNetworks.add(name);
  }
  return { file, services, internalNetworks };
}

export interface BaseCheck {
  /** stop: the override could not deliver what it promises */
  problems: string[];
  /** worth knowing, not fatal */
  warnings: string[];
}

/** Can the protected services be taken off every network with a route out, and can the peers join the internal network? */
export function checkBaseCompose(base: BaseCompose, services: string[], peers: string[], generatedNames: string[]): BaseCheck {
  const problems: string[] = [];
  const warnings: string[] = [];
  for (const name of services) {
    const s = base.services.get(name);
    if (!s) {
      problems.push(`service "${name}" (proxy.services / --services) is not in ${base.file}`);
      continue;
    }
    if (s.networkMode !== undefined) {
      problems.push(`service "${name}" sets network_mode: ${s.networkMode} in ${base.file}; an override file cannot undo that. Remove network_mode there.`);
    }
    const open = (s.networks ?? []).filter((n) => !base.internalNetworks.has(n));
    if (open.length > 0) {
      problems.push(
        `service "${name}" lists networks in ${base.file} (${open.join(', ')}); compose adds an override's networks to those, so it would keep a route out. ` +
          `Remove its \`networks:\` there (egressfw puts it on the internal network) or make those networks \`internal: true\`; list services it must reach under proxy.peers.`,
      );
    }
    if (s.publishesPorts) {
      warnings.push(`service "${name}" publishes ports; a container on an internal network only cannot be reached through published ports (put a reverse proxy among proxy.peers in front of it)`);
    }
  }
  for (const name of peers) {
    const s = base.services.get(name);
    if (!s) problems.push(`service "${name}" (proxy.peers) is not in ${base.file}`);
    else if (s.networkMode !== undefined) problems.push(`peer "${name}" sets network_mode: ${s.networkMode} in ${base.file}; it cannot join the internal network`);
  }
  for (const g of generatedNames) {
    if (base.services.has(g)) problems.push(`${base.file} already has a service named "${g}", which egressfw generates; rename it`);
  }
  return { problems, warnings };
}
