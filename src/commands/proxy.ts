import path from 'node:path';
import { loadConfig } from '../config/load.js';
import { upstreamHosts } from '../resolve/upstream.js';
import { UsageError } from '../errors.js';
import { parseIp } from '../net/ip.js';
import { checkBaseCompose, checkResolvedCompose, loadBaseCompose, parseBaseCompose, type BaseCompose } from '../proxy/base.js';
import type { ProxyConfig, ProxyMode } from '../proxy/config.js';
import { COMPOSE_FILE, GENERATED_MARKER, NGINX_DIR, checkMountDir, renderProxy } from '../proxy/render.js';
import { checkComposeName } from '../proxy/validate.js';
import type { ComposeConfig } from '../system/compose.js';

/** compose's own lookup order in a project dir */
const COMPOSE_NAMES = ['compose.yaml', 'compose.yml', 'docker-compose.yaml', 'docker-compose.yml'];

export interface ProxyOptions {
  config: string;
  out: string;
  mode?: string;
  /** comma-separated, overrides proxy.services */
  services?: string;
  /** the user's compose file; default: the first of compose.yaml, compose.yml, docker-compose.y(a)ml in the current dir */
  compose?: string;
  force: boolean;
}

export interface ProxyDeps {
  readText: (file: string) => Promise<string | null>;
  /** write a file, creating its directory */
  writeText: (file: string, text: string) => Promise<void>;
  removeFile: (file: string) => Promise<void>;
  /** file names in a directory ([] when it does not exist) */
  listDir: (dir: string) => Promise<string[]>;
  /** the compose CLI's own `config` (absent in tests that do not ask; it returns null when no CLI is installed) */
  composeConfig?: ComposeConfig;
  cwd: string;
  out: (text: string) => void;
  warn: (text: string) => void;
}

/**
 * `egressfw proxy`: render the compose override and nginx configs into the out
 * dir. Writes nothing outside it, and overwrites only files it generated
 * (their first line is the marker) unless --force.
 */
export async function runProxy(opts: ProxyOptions, deps: ProxyDeps): Promise<number> {
  const config = await loadConfig(opts.config);
  const proxy: ProxyConfig = { ...config.proxy };
  if (opts.mode !== undefined) {
    if (opts.mode !== 'per-domain' && opts.mode !== 'sni') throw new UsageError(`--mode must be per-domain or sni, got ${JSON.stringify(opts.mode)}`);
    proxy.mode = opts.mode as ProxyMode;
  }
  if (opts.services !== undefined) {
    const list = opts.services.split(',').map((s) => s.trim()).filter(Boolean);
    for (const s of list) {
      const p = checkComposeName(s, 'service');
      if (p) throw new UsageError(`--services: ${p}`);
    }
    proxy.services = [...new Set(list)].sort();
    proxy.peers = proxy.peers.filter((p) => !proxy.services.includes(p));
  }
  if (proxy.services.length === 0) {
    throw new UsageError('no services to protect: list them under proxy.services in the config or pass --services a,b');
  }
  if (proxy.mode === 'per-domain' && proxy.wildcards.length > 0) {
    throw new UsageError(`proxy.wildcards (${proxy.wildcards.join(', ')}) need --mode sni: a per-domain proxy forwards to one fixed name`);
  }
  if (config.domains.length === 0 && proxy.wildcards.length === 0) {
    throw new UsageError('nothing to proxy: the config allows no domain (allow[].domain) and no proxy.wildcards');
  }

  // Resolvers: the same servers egressfw asks (and allows in the firewall). Loopback stubs (systemd-resolved's
  // 127.0.0.53) are not reachable from a container, and the egress network has no IPv6.
  const { hosts: servers, from } = await upstreamHosts(config, deps.readText);
  const resolvers = servers.filter((s) => parseIp(s)?.family === 4 && !s.startsWith('127.'));
  if (resolvers.length === 0) {
    throw new UsageError(
      `no IPv4 DNS server the proxies can reach in ${from} (${servers.join(', ') || 'none'}): set dns.servers to your upstream resolvers (a loopback stub such as 127.0.0.53 is not reachable from a container)`,
    );
  }
  const skipped = servers.filter((s) => !resolvers.includes(s));
  if (skipped.length) deps.warn(`note: the proxies do not use ${skipped.join(', ')} (IPv6 or loopback); they ask ${resolvers.join(', ')}`);

  // The user's compose file: read it when there is one, to refuse an override that could not isolate the services.
  let base: BaseCompose | undefined;
  let baseFile = opts.compose;
  if (baseFile === undefined) {
    for (const n of COMPOSE_NAMES) {
      if ((await deps.readText(path.resolve(deps.cwd, n))) !== null) {
        baseFile = n;
        break;
      }
    }
  }
  const projectDir = baseFile ? path.dirname(path.resolve(deps.cwd, baseFile)) : deps.cwd;
  // Judged as compose resolves it: egressfw's own reading (merge keys, !!set, extends), and, when the
  // compose CLI is installed, its own `config` of the file with the override, which has the last word.
  const baseAbs = baseFile === undefined ? undefined : path.resolve(deps.cwd, baseFile);
  let ownReading: string | null = null;
  if (baseFile !== undefined && baseAbs !== undefined) {
    if ((await deps.readText(baseAbs)) === null) throw new UsageError(`--compose ${baseFile}: cannot read it`);
    try {
      base = await loadBaseCompose(baseAbs, baseFile, deps.readText);
    } catch (e) {
      ownReading = (e as Error).message;
      const alone = await deps.composeConfig?.(baseAbs, null, projectDir);
      if (!alone) throw new UsageError(ownReading);
      if ('error' in alone) throw new UsageError(`\`${alone.cli} config\` cannot read ${baseFile}: ${alone.error}`);
      base = parseBaseCompose(alone.text, baseFile);
    }
  }

  const outDir = path.resolve(deps.cwd, opts.out);
  let mountDir = path.relative(projectDir, outDir) || '.';
  if (!mountDir.startsWith('..') && mountDir !== '.') mountDir = `./${mountDir}`;
  const mountProblem = checkMountDir(mountDir);
  if (mountProblem) throw new UsageError(`--out: ${mountProblem}`);

  const rendered = renderProxy({
    domains: config.domains,
    proxy,
    resolvers,
    dnsPort: config.dns.port,
    validSeconds: Math.max(1, Math.ceil(config.dns.minTtl)),
    mountDir,
    // the usage line in the file is run from the project dir
    baseFile: baseFile ? path.basename(baseFile) : 'compose.yml',
    ...(base ? { base } : {}),
  });
  if (proxy.mode === 'sni' && !rendered.files.some((f) => f.path.endsWith('.conf') && /listen \d+;/.test(f.content))) {
    throw new UsageError(`nothing to proxy in sni mode: no allowed domain uses proxy.tlsPorts (${proxy.tlsPorts.join(', ')}) or proxy.httpPorts (${proxy.httpPorts.join(', ')})`);
  }

  if (base && baseAbs !== undefined) {
    // egressfw's own reading, unless it could not resolve the file (then only the CLI judges)
    const check = ownReading === null ? checkBaseCompose(base, proxy.services, proxy.peers, rendered.generatedServices) : { problems: [], warnings: [] };
    // What egressfw's own reading finds is said in its words; only a file that passes it goes to the CLI.
    const override = rendered.files.find((f) => f.path === COMPOSE_FILE)!.content;
    const merged = check.problems.length ? null : await deps.composeConfig?.(baseAbs, override, projectDir);
    if (merged && 'error' in merged) throw new UsageError(`\`${merged.cli} config\` refuses ${base.file} with the override (nothing written): ${merged.error}`);
    if (merged) check.problems.push(...checkResolvedCompose(merged.text, merged.cli, base.file, proxy.services, proxy.peers));
    for (const w of check.warnings) deps.warn(`warning: ${w}`);
    if (check.problems.length) {
      throw new UsageError(`the override could not isolate the protected services (nothing written):\n${check.problems.map((p) => `  - ${p}`).join('\n')}`);
    }
  } else {
    deps.warn(
      `warning: no compose file found in ${deps.cwd} (pass --compose FILE): not checked that the protected services list no networks of their own (compose would keep those, with their route out)`,
    );
  }

  // Refuse to clobber files egressfw did not write; remove generated files the new render no longer has.
  const targets = new Map(rendered.files.map((f) => [path.join(outDir, f.path), f.content]));
  const foreign: string[] = [];
  for (const file of targets.keys()) {
    const old = await deps.readText(file);
    if (old !== null && !old.startsWith(GENERATED_MARKER) && !opts.force) foreign.push(file);
  }
  if (foreign.length) {
    throw new UsageError(`not overwriting files egressfw did not generate (no "${GENERATED_MARKER}" first line); move them or pass --force:\n${foreign.map((f) => `  ${f}`).join('\n')}`);
  }
  const stale: string[] = [];
  for (const name of await deps.listDir(path.join(outDir, NGINX_DIR))) {
    const file = path.join(outDir, NGINX_DIR, name);
    if (!name.endsWith('.conf') || targets.has(file)) continue;
    if ((await deps.readText(file))?.startsWith(GENERATED_MARKER)) stale.push(file);
  }
  for (const [file, text] of targets) {
    if (!file.startsWith(outDir + path.sep)) throw new Error(`internal: ${file} is outside ${outDir}`);
    await deps.writeText(file, text);
  }
  for (const file of stale) await deps.removeFile(file);

  const rel = (f: string) => path.relative(deps.cwd, f) || f;
  const lines = [`egressfw proxy (mode ${proxy.mode}): protecting ${proxy.services.join(', ')}${proxy.peers.length ? `; peers ${proxy.peers.join(', ')}` : ''}`];
  for (const file of targets.keys()) lines.push(`  wrote ${rel(file)}`);
  for (const file of stale) lines.push(`  removed ${rel(file)} (no longer allowed)`);
  if (rendered.proxyAddress) lines.push(`proxy address on ${proxy.internalNetwork}: ${rendered.proxyAddress}`);
  for (const n of rendered.notes) lines.push(`note: ${n}`);
  lines.push(
    '',
    'Start it with your compose file:',
    `  docker compose -f ${base ? rel(path.resolve(deps.cwd, base.file)) : 'compose.yml'} -f ${rel(path.join(outDir, COMPOSE_FILE))} up -d`,
    "The proxies' own traffic crosses the firewall: run `egressfw sync` with the same config so it allows it.",
  );
  deps.out(`${lines.join('\n')}\n`);
  return 0;
}
