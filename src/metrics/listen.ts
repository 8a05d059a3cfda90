/**
 * `metrics.listen`: where the daemon serves /metrics. Loopback or a unix
 * socket only: the endpoint has no authentication, and what it tells (which
 * parts are not enforced, what is refused) helps an attacker. Pure.
 */
export type MetricsListen = { kind: 'tcp'; host: '127.0.0.1' | '::1'; port: number } | { kind: 'unix'; path: string };

const HINT = 'egressfw serves metrics only on loopback ("127.0.0.1:9633", "[::1]:9633") or a unix socket ("unix:/run/egressfw-metrics.sock"); to scrape it from elsewhere use metrics.textfile with node_exporter, or a reverse proxy with authentication';

/** The parsed address, or a message naming the fix. */
export function parseMetricsListen(v: string): MetricsListen | { error: string } {
  if (v.startsWith('unix:')) {
    const p = v.slice(5);
    if (!p.startsWith('/') || p.includes('\0') || p.length > 107) return { error: `"${v}": a unix socket path must be absolute and at most 107 bytes (e.g. "unix:/run/egressfw-metrics.sock")` };
    return { kind: 'unix', path: p };
  }
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):([0-9]{1,5})$/.exec(v);
  if (!m) return { error: `"${v}" is not HOST:PORT or unix:PATH; ${HINT}` };
  const host = (m[1] ?? m[2])!.toLowerCase();
  const port = Number(m[3]);
  if (!(port >= 1 && port <= 65535)) return { error: `"${v}": port must be 1-65535` };
  if (host === '127.0.0.1' || host === 'localhost') return { kind: 'tcp', host: '127.0.0.1', port };
  if (host === '::1') return { kind: 'tcp', host: '::1', port };
  return { error: `"${v}" is not a loopback address: ${HINT}` };
}

export const listenText = (l: MetricsListen) => (l.kind === 'unix' ? `unix:${l.path}` : l.host === '::1' ? `[::1]:${l.port}` : `${l.host}:${l.port}`);
