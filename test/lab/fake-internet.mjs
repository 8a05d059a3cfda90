// The lab's "internet": HTTP and HTTPS servers for every site address.
// Runs inside the lab's inet network namespace (started by lab.ts), no deps.
//
//   node fake-internet.mjs CONFIG.json
//   CONFIG = { sites: [{name, v4, v6?}], httpPorts: [80, 8080], tlsPorts: [443],
//              cert: PATH, key: PATH }
//
// Every listener binds the wildcard address (`::`, dual-stack), so it answers on
// every address of the namespace; the body names the local address it was
// reached on, which is what tests assert on:
//   GET /      -> "site=203.0.113.10 port=80 name=allowed.test\n"
//   GET /ip    -> "<client source address>\n"  (shows NAT / which family was used)
// Prints "ready" on stdout once every port listens.
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const nameOf = new Map();
for (const s of cfg.sites) {
  nameOf.set(s.v4, s.name);
  if (s.v6) nameOf.set(s.v6, s.name);
}

const plain = (a) => (a ?? '').replace(/^::ffff:/, '');

function handler(req, res) {
  const local = plain(req.socket.localAddress);
  const body =
    req.url === '/ip'
      ? `${plain(req.socket.remoteAddress)}\n`
      : `site=${local} port=${req.socket.localPort} name=${nameOf.get(local) ?? '?'}\n`;
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), connection: 'close' });
  res.end(body);
}

const tls = {
  key: fs.readFileSync(cfg.key),
  cert: fs.readFileSync(cfg.cert),
  // busybox wget's TLS sends no signature_algorithms extension: OpenSSL 3 only
  // accepts that handshake at security level 0.
  ciphers: 'DEFAULT:@SECLEVEL=0',
};

const servers = [
  ...cfg.httpPorts.map((port) => [http.createServer(handler), port]),
  ...cfg.tlsPorts.map((port) => [https.createServer(tls, handler), port]),
];
await Promise.all(
  servers.map(
    ([srv, port]) =>
      new Promise((resolve, reject) => {
        srv.once('error', reject);
        srv.listen({ host: '::', port, ipv6Only: false }, resolve);
      }),
  ),
);
process.stdout.write('ready\n');
