/**
 * Client IP -> container, from the Docker API (recorded at query time:
 * containers come and go, their IPs get reused). The map is refreshed when
 * an IP is not in it, at most once per `minRefreshMs`, and one refresh
 * serves every query waiting for it.
 */

/** What the Docker client gives (src/system/docker.ts `containers()`), reduced to what attribution needs. */
export interface ContainerInfo {
  id: string;
  name: string;
  labels: Record<string, string>;
  networks: { ipv4: string | null; ipv6: string | null }[];
}

export interface ContainerRef {
  /** short id (12 hex) */
  id: string;
  name: string;
  /** compose service and project, when the container carries compose's labels */
  service?: string;
  project?: string;
}

export function refOf(c: ContainerInfo): ContainerRef {
  const service = c.labels['com.docker.compose.service'];
  const project = c.labels['com.docker.compose.project'];
  return { id: c.id.slice(0, 12), name: c.name.replace(/^\//, ''), ...(service ? { service } : {}), ...(project ? { project } : {}) };
}

export class Attribution {
  private map = new Map<string, ContainerRef>();
  private lastRefresh = -Infinity;
  private running: Promise<void> | null = null;
  /** the last refresh failed (Docker down): lookups answer undefined until the next one works */
  lastError: string | null = null;

  constructor(
    private readonly list: () => Promise<ContainerInfo[]>,
    private readonly nowMs: () => number,
    private readonly minRefreshMs = 2000,
  ) {}

  async lookup(ip: string): Promise<ContainerRef | undefined> {
    const hit = this.map.get(ip);
    if (hit) return hit;
    if (this.running) await this.running;
    else if (this.nowMs() - this.lastRefresh >= this.minRefreshMs) await this.refresh();
    return this.map.get(ip);
  }

  refresh(): Promise<void> {
    if (this.running) return this.running;
    this.lastRefresh = this.nowMs();
    this.running = this.list()
      .then(
        (cs) => {
          const m = new Map<string, ContainerRef>();
          for (const c of cs) {
            const ref = refOf(c);
            for (const n of c.networks) {
              if (n.ipv4) m.set(n.ipv4, ref);
              if (n.ipv6) m.set(n.ipv6, ref);
            }
          }
          this.map = m;
          this.lastError = null;
        },
        (e: Error) => {
          this.lastError = e.message;
        },
      )
      .finally(() => {
        this.running = null;
      });
    return this.running;
  }
}
