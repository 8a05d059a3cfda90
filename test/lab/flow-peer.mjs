// Long-lived flows for test/lab/flows.test.ts, no deps. Started with nsenter into a lab namespace.
//
//   node flow-peer.mjs server PORT ADDR...          TCP echo on PORT (every address), UDP echo on PORT+1 on each
//                                                   ADDR (so a reply leaves from the address the client sent to)
//   node flow-peer.mjs client tcp|udp HOST PORT OUT  one connection (or one UDP socket, one source port)
//                                                   sending a line every 100 ms; OUT holds how many replies came
//   node flow-peer.mjs probe HOST PORT              until a TCP echo answers (10 s at most): a server that a
//                                                   client reaches before it listens closes that client for good
// Prints "ready" once listening (server) or connected (client).
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';

const [mode, ...args] = process.argv.slice(2);
if (mode === 'server') {
  const port = Number(args[0]);
  const tcp = net.createServer((s) => {
    s.on('data', (d) => s.write(d));
    s.on('error', () => {});
  });
  const addrs = args.slice(1);
  let up = 0;
  const ready = () => ++up === addrs.length + 1 && console.log('ready');
  tcp.listen(port, '::', ready);
  for (const a of addrs) {
    const udp = dgram.createSocket(a.includes(':') ? 'udp6' : 'udp4');
    udp.on('message', (m, r) => udp.send(m, r.port, r.address));
    udp.bind(port + 1, a, ready);
  }
} else if (mode === 'probe') {
  const [host, portText] = args;
  const deadline = Date.now() + 9_000;
  const attempt = () => {
    const s = net.connect(Number(portText), host, () => s.write('probe\n'));
    const retry = () => {
      s.destroy();
      if (Date.now() > deadline) process.exit(1);
      setTimeout(attempt, 100);
    };
    s.setTimeout(1000, retry);
    s.on('data', () => {
      console.log('ready');
      s.destroy();
      process.exit(0);
    });
    s.on('error', retry);
    s.on('end', retry);
  };
  attempt();
} else if (mode === 'client') {
  const [proto, host, portText, out] = args;
  const port = Number(portText);
  let replies = 0;
  const count = (n) => {
    replies += n;
    fs.writeFileSync(out, String(replies));
  };
  fs.writeFileSync(out, '0');
  if (proto === 'tcp') {
    const s = net.connect(port, host, () => {
      console.log('ready');
      setInterval(() => s.write('x\n'), 100);
    });
    s.on('data', (d) => count(d.toString().split('\n').length - 1));
    s.on('error', (e) => fs.appendFileSync(`${out}.log`, `${e.message}\n`));
    s.on('close', () => fs.appendFileSync(`${out}.log`, 'connection closed\n'));
  } else {
    const u = dgram.createSocket('udp4');
    u.on('message', () => count(1));
    u.on('error', (e) => fs.appendFileSync(`${out}.log`, `${e.message}\n`));
    u.bind(0, () => {
      console.log('ready');
      setInterval(() => u.send('x\n', port, host), 100);
    });
  }
}
