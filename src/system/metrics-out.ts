/**
 * The two ways metrics leave the daemon: node_exporter's textfile (a temp
 * file in the same directory, renamed over the .prom: the collector never
 * reads half a file) and an HTTP /metrics endpoint on loopback or a unix
 * socket. The only side effects of metrics.
 */
import { createServer, type Server } from 'node:http';
import { lstat, unlink } from 'node:fs/promises';
import { PreconditionError } from '../errors.js';
import { listenText, type MetricsListen } from '../metrics/listen.js';

export interface Exposition {
  render: () => Promise<string>;
  contentType: string;
}

export interface MetricsServer {
  /** where it listens, as the config spells it */
  address: string;
  close: () => Promise<void>;
}

/** Serve GET /metrics (and HEAD); anything else 404, other methods 405. */
export async function serveMetrics(listen: MetricsListen, exp: Exposition, onError: (e: Error) => void): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (url !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('egressfw: metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    exp.render().then(
      (text) => res.writeHead(200, { 'content-type': exp.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (e: Error) => {
        onError(e);
        res.writeHead(500, { 'content-type': 'text/plain' }).end('egressfw: metrics could not be rendered\n');
      },
    );
  });
  // A slow or idle client must not hold sockets for long.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 5_000;
  server.maxConnections = 64;
  const where = listenText(listen);
  if (listen.kind === 'unix') {
    // A socket left by a daemon that died is replaced; any other file there is not ours.
    const st = await lstat(listen.path).catch(() => null);
    if (st && !st.isSocket()) throw new PreconditionError(`metrics.listen ${where}: ${listen.path} exists and is not a socket; remove it or choose another path`);
    if (st) await unlink(listen.path);
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new PreconditionError(
          e.code === 'EADDRINUSE'
            ? `metrics.listen ${where} is in use by another process: choose another port (or stop what listens there)`
            : `metrics.listen ${where}: cannot listen (${e.code ?? e.message}); check the address${listen.kind === 'unix' ? ' and that its directory exists' : ''}`,
        ),
      ),
    );
    if (listen.kind === 'unix') server.listen(listen.path, () => resolve());
    else server.listen({ host: listen.host, port: listen.port, ipv6Only: listen.host === '::1' }, () => resolve());
  });
  server.on('error', onError);
  return {
    address: where,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        if (listen.kind === 'unix') void unlink(listen.path).catch(() => {});
      }),
  };
}
