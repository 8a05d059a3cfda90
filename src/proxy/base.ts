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
import path from 'node:path';
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

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Set);

/** compose reads YAML merge keys (`<<: *anchor`) and `!!set`; tags of its own (`!reset`, `!override`) only the compose CLI can apply. */
function readYaml(text: string, file: string): Record<string, unknown> {
  const doc = parseDocument(text, { prettyErrors: true, merge: true, customTags: ['set'] });
  if (doc.errors.length > 0) throw new Error(`${file}: not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}`);
  const tag = doc.warnings.find((w) => /Unresolved tag/.test(w.message));
  if (tag) {
    throw new Error(
      `${file}: ${tag.message.split('\n')[0]!.replace(/:$/, '')}: egressfw cannot judge the file as compose would resolve it; install the compose CLI (\`docker compose\` or \`docker-compose\`), whose own \`config\` is then the judge`,
    );
  }
  const data: unknown = doc.toJS({ maxAliasCount: 100 });
  if (!isRecord(data) || !isRecord(data.services)) throw new Error(`${file}: no \`services:\` mapping; is this a compose file?`);
  if (data.include !== undefined) {
    throw new Error(`${file}: uses \`include:\`, which egressfw does not resolve itself; install the compose CLI (\`docker compose\`), whose own \`config\` is then the judge`);
  }
  return data;
}

/** A service's own network facts (before `extends`). Networks: a list, a set (`!!set`) or a mapping. */
function serviceFacts(svc: unknown): BaseService {
  const s = isRecord(svc) ? svc : {};
  const nets = s.networks;
  return {
    networks: Array.isArray(nets) || nets instanceof Set ? [...nets].map(String) : isRecord(nets) ? Object.keys(nets) : null,
    networkMode: typeof s.network_mode === 'string' ? s.network_mode : undefined,
    publishesPorts: (Array.isArray(s.ports) && s.ports.length > 0) || (s.ports instanceof Set && s.ports.size > 0),
  };
}

function internalNetworksOf(data: Record<string, unknown>): Set<string> {
  const out = new Set<string>();
  if (isRecord(data.networks)) {
    for (const [name, n] of Object.entries(data.networks)) if (isRecord(n) && n.internal === true) out.add(name);
  }
  return out;
}

/** Parse one compose file (YAML; merge keys and `!!set` resolved). `extends` is not followed: see loadBaseCompose. */
export function parseBaseCompose(text: string, file: string): BaseCompose {
  const data = readYaml(text, file);
  const services = new Map<string, BaseService>();
  for (const [name, svc] of Object.entries(data.services as Record<string, unknown>)) services.set(name, serviceFacts(svc));
  return { file, services, internalNetworks: internalNetworksOf(data) };
}

/** How deep `extends` may chain (compose has no limit; a real project needs two or three). */
const MAX_EXTENDS = 10;

/**
 * The user's compose file as compose resolves it without its CLI: merge keys, `!!set`, and
 * `extends` (same file or another, relative to the file that names it) followed, the
 * service's networks united with what it extends and network_mode inherited. What cannot be
 * resolved (a file that cannot be read, a loop, a tag only compose knows) is an Error
 * naming it. `read` is the only effect (absolute path -> text, null when missing).
 */
export async function loadBaseCompose(absFile: string, shownAs: string, read: (file: string) => Promise<string | null>): Promise<BaseCompose> {
  const files = new Map<string, Record<string, unknown>>();
  const load = async (file: string, by: string): Promise<Record<string, unknown>> => {
    let data = files.get(file);
    if (!data) {
      const text = await read(file);
      if (text === null) throw new Error(`${by}: cannot read ${file}`);
      data = readYaml(text, file === absFile ? shownAs : file);
      files.set(file, data);
    }
    return data;
  };
  const resolve = async (file: string, name: string, chain: string[]): Promise<BaseService> => {
    const data = await load(file, chain.at(-1) ?? shownAs);
    const svc = (data.services as Record<string, unknown>)[name];
    const where = file === absFile ? shownAs : file;
    if (svc === undefined) throw new Error(`${chain.at(-1) ?? shownAs}: extends service "${name}", which is not in ${where}`);
    const own = serviceFacts(svc);
    const ext = isRecord(svc) ? svc.extends : undefined;
    if (ext === undefined) return own;
    const target = typeof ext === 'string' ? { service: ext, file } : isRecord(ext) && typeof ext.service === 'string' ? { service: ext.service, file: typeof ext.file === 'string' ? path.resolve(path.dirname(file), ext.file) : file } : null;
    const here = `${where}: service "${name}"`;
    if (!target) throw new Error(`${here}: \`extends\` must name a service (\`extends: base\` or \`extends: { service: base, file: other.yml }\`)`);
    const key = `${target.file}#${target.service}`;
    if (chain.includes(key)) throw new Error(`${here}: \`extends\` loops back to service "${target.service}"`);
    if (chain.length >= MAX_EXTENDS) throw new Error(`${here}: \`extends\` chains more than ${MAX_EXTENDS} deep`);
    const parent = await resolve(target.file, target.service, [...chain, key]).catch((e: Error) => {
      throw new Error(e.message.startsWith(here) ? e.message : `${here}: extends ${target.service}: ${e.message}`);
    });
    return {
      networks: own.networks || parent.networks ? [...new Set([...(parent.networks ?? []), ...(own.networks ?? [])])] : null,
      networkMode: own.networkMode ?? parent.networkMode,
      publishesPorts: own.publishesPorts || parent.publishesPorts,
    };
  };
  const data = await load(absFile, shownAs);
  const services = new Map<string, BaseService>();
  for (const name of Object.keys(data.services as Record<string, unknown>)) services.set(name, await resolve(absFile, name, [`${absFile}#${name}`]));
  return { file: shownAs, services, internalNetworks: internalNetworksOf(data) };
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

/**
 * The compose CLI's own `config` of the user's file plus the generated override: the source
 * of truth for what each protected service ends up on. Each must be on internal networks
 * only and set no network_mode; a peer must set no network_mode.
 */
export function checkResolvedCompose(text: string, cli: string, baseFile: string, services: string[], peers: string[]): string[] {
  let merged: BaseCompose;
  try {
    merged = parseBaseCompose(text, `\`${cli} config\``);
  } catch (e) {
    return [`${(e as Error).message} (its output could not be read)`];
  }
  const problems: string[] = [];
  const how = `as \`${cli} config\` resolves ${baseFile} with the override (merge keys, extends and all)`;
  for (const name of services) {
    const s = merged.services.get(name);
    if (!s) {
      problems.push(`service "${name}" (proxy.services / --services) is not in ${baseFile} ${how}`);
      continue;
    }
    if (s.networkMode !== undefined) problems.push(`service "${name}" ends up with network_mode: ${s.networkMode} ${how}; an override file cannot undo that. Remove network_mode there.`);
    const open = (s.networks ?? []).filter((n) => !merged.internalNetworks.has(n));
    if (open.length > 0) {
      problems.push(
        `service "${name}" ends up on ${open.join(', ')} ${how}: a route out. Remove its \`networks:\` in ${baseFile} (egressfw puts it on the internal network), wherever they come from, or make those networks \`internal: true\`.`,
      );
    }
  }
  for (const name of peers) {
    const s = merged.services.get(name);
    if (s?.networkMode !== undefined) problems.push(`peer "${name}" ends up with network_mode: ${s.networkMode} ${how}; it cannot join the internal network`);
  }
  return problems;
}
