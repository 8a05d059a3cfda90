// Helpers for the proxy lab test: a compose project inside the lab's Docker host,
// run with Debian's docker-compose 1.29, and clients inside its containers.
import fs from 'node:fs';
import path from 'node:path';
import { CLI } from './efw.js';
import { ensureNginxImage, type ExecResult, type Lab } from './lab.js';

/** The lab's nginx image under a pinned tag (egressfw refuses unpinned images). */
export const PINNED_NGINX = 'efw-nginx:1.22-bookworm';
export const PROJECT = 'efwp';
/** internal network subnet: a free part of the lab's documentation range (docker0 is .64/26, the pool .128/25) */
export const INTERNAL_SUBNET = '198.51.100.32/28';
export const PROXY_ADDR = '198.51.100.46';

export async function pinnedNginx(lab: Lab): Promise<string> {
  const img = await ensureNginxImage(lab);
  const r = await lab.docker(['tag', img, PINNED_NGINX]);
  if (r.exitCode !== 0) throw new Error(`docker tag: ${r.stderr}`);
  return PINNED_NGINX;
}

/**
 * The app's own compose file: two protected clients (busybox; and the nginx image,
 * whose openssl verifies certificates) and a peer they must still reach.
 * The clients map a wildcard name to the sni proxy's fixed address, as docs/proxy.md says.
 */
export function writeProject(lab: Lab, nginxImage: string): string {
  const dir = path.join(lab.dir, 'project');
  fs.mkdirSync(dir, { recursive: true });
  const extraHosts = `    extra_hosts:\n      - "www.wild.test:${PROXY_ADDR}"\n      - "deep.down.wild.test:${PROXY_ADDR}"\n`;
  fs.writeFileSync(
    path.join(dir, 'compose.yml'),
    `version: "2.4"
services:
  client:
    image: busybox:latest
    command: [sleep, "86400"]
${extraHosts}  tlsclient:
    image: ${nginxImage}
    command: [sleep, "86400"]
    volumes:
      - "${lab.caCert}:/lab-ca.crt:ro"
${extraHosts}  db:
    image: busybox:latest
    command: [sh, -c, "mkdir -p /www && echo peer-ok > /www/index.html && exec httpd -f -p 8080 -h /www"]
`,
  );
  return dir;
}

export function egressfwConfig(lab: Lab, mode: 'per-domain' | 'sni', image: string): string {
  const file = path.join(lab.dir, `egressfw-${mode}.yml`);
  fs.writeFileSync(
    file,
    `allow:
  - domain: allowed.test
    ports: [80, 443]
dns:
  servers: [${lab.dnsServer}]
  timeout: 1s
  minTtl: 1s
staleGrace: 30s
host:
  enabled: false
proxy:
  mode: ${mode}
  services: [client, tlsclient]
  peers: [db]
  image: ${image}
  internalSubnet: ${INTERNAL_SUBNET}
${mode === 'sni' ? '  wildcards: ["*.wild.test"]\n' : ''}`,
  );
  return file;
}

export class Project {
  constructor(
    readonly lab: Lab,
    readonly dir: string,
  ) {}

  /** argv run inside the lab host from the project dir (nsenter into a mount namespace does not keep the cwd) */
  inDir(argv: string[], timeoutMs = 60_000): Promise<ExecResult> {
    return this.lab.host(['sh', '-c', 'cd "$0" && exec "$@"', this.dir, ...argv], { timeoutMs });
  }

  compose(args: string[], timeoutMs = 120_000): Promise<ExecResult> {
    return this.inDir(['docker-compose', '-p', PROJECT, '-f', 'compose.yml', '-f', 'egress-proxy/compose.egress.yml', ...args], timeoutMs);
  }

  /** `egressfw proxy` in the project dir (it finds compose.yml there) */
  proxyCmd(config: string, extra: string[] = []): Promise<ExecResult> {
    return this.inDir([process.execPath, CLI, 'proxy', '--config', config, '--out', 'egress-proxy', ...extra]);
  }

  container(service: string): string {
    return `${PROJECT}_${service}_1`;
  }

  exec(service: string, argv: string[], timeoutMs = 20_000): Promise<ExecResult> {
    return this.lab.docker(['exec', this.container(service), ...argv], { timeoutMs });
  }

  /** busybox wget from the busybox client; ok = exit 0 */
  async wget(url: string, opts: { header?: string; timeoutSec?: number } = {}): Promise<ExecResult & { ok: boolean }> {
    const r = await this.exec('client', [
      'timeout', String(opts.timeoutSec ?? 3), 'wget', '-q', '-O', '-', ...(opts.header ? ['--header', opts.header] : []), url,
    ]);
    return { ...r, ok: r.exitCode === 0 };
  }

  /**
   * openssl s_client from the nginx-image client: TLS to host:443 with the given SNI,
   * the chain verified against the lab CA (and the name, when verifyName is set),
   * then GET / with Host: sni.
   */
  async tls(host: string, sni: string, opts: { verifyName?: string; timeoutSec?: number } = {}): Promise<ExecResult & { ok: boolean }> {
    const req = `GET / HTTP/1.0\\r\\nHost: ${sni}\\r\\n\\r\\n`;
    const verify = ['-verify_return_error', '-CAfile', '/lab-ca.crt', ...(opts.verifyName ? ['-verify_hostname', opts.verifyName] : [])].join(' ');
    const r = await this.exec('tlsclient', [
      'timeout', String(opts.timeoutSec ?? 3), 'sh', '-c',
      `printf '${req}' | openssl s_client -quiet -connect ${host}:443 -servername ${sni} ${verify}`,
    ]);
    return { ...r, ok: r.exitCode === 0 && /site=/.test(r.stdout) };
  }
}
