import http from 'node:http';
import type { ContainerInfo } from '../audit/collect.js';

/**
 * STAND-IN until the Docker API client (src/system/docker.ts, branch `docker`)
 * is on main: then `listContainers` becomes
 * `() => dockerClient().containers({ all: true })` and this file goes.
 * One GET /containers/json?all=1 on Docker's unix socket (no spawn).
 */

interface ApiContainer {
  Id: string;
  Names?: string[];
  Image?: string;
  Labels?: Record<string, string> | null;
  State?: string;
  NetworkSettings?: { Networks?: Record<string, { IPAddress?: string; GlobalIPv6Address?: string }> | null };
}

export function dockerSocket(env: NodeJS.ProcessEnv = process.env): string {
  const host = env.DOCKER_HOST;
  return host?.startsWith('unix://') ? host.slice('unix://'.length) : '/var/run/docker.sock';
}

/** Pure: Docker's /containers/json -> ContainerInfo. */
export function fromApi(list: ApiContainer[]): ContainerInfo[] {
  return list.map((c) => ({
    id: c.Id,
    name: (c.Names?.[0] ?? c.Id.slice(0, 12)).replace(/^\//, ''),
    image: c.Image ?? '',
    labels: c.Labels ?? {},
    state: c.State ?? 'unknown',
    networks: Object.entries(c.NetworkSettings?.Networks ?? {}).map(([name, n]) => ({ name, ipv4: n.IPAddress || null, ipv6: n.GlobalIPv6Address || null })),
  }));
}

export function listContainers(socketPath = dockerSocket(), timeoutMs = 5000): Promise<ContainerInfo[]> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath, path: '/containers/json?all=1', timeout: timeoutMs, headers: { host: 'docker' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) return reject(new Error(`Docker API ${socketPath}: HTTP ${res.statusCode}: ${body.slice(0, 200)}`));
        try {
          resolve(fromApi(JSON.parse(body) as ApiContainer[]));
        } catch (e) {
          reject(new Error(`Docker API ${socketPath}: ${(e as Error).message}`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`Docker API ${socketPath}: no answer in ${timeoutMs} ms`)));
    req.on('error', (e) => reject(new Error(`Docker API ${socketPath}: ${e.message}`)));
  });
}
