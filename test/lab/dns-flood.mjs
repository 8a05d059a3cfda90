// A DNS flood for the gate lab test, run inside one container's network namespace (nsenter):
// COUNT unique names under ZONE sent to SERVER:53 over MS milliseconds, then the answers counted by rcode.
import dgram from 'node:dgram';

const [server, zone, count, ms] = [process.argv[2], process.argv[3], Number(process.argv[4]), Number(process.argv[5])];
const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 << 20 });
const rcodes = {};
let answers = 0;
sock.on('message', (m) => {
  answers++;
  const rc = m[3] & 0x0f;
  rcodes[rc] = (rcodes[rc] ?? 0) + 1;
});
function query(i) {
  const labels = [`f${i}x${Math.random().toString(36).slice(2, 8)}`, ...zone.split('.')];
  const q = Buffer.concat([
    Buffer.from([(i >> 8) & 0xff, i & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]),
    ...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])),
    Buffer.from([0, 0, 1, 0, 1]),
  ]);
  sock.send(q, 53, server);
}
const ticks = Math.max(1, Math.round(ms / 10));
let sent = 0;
const t0 = Date.now();
const timer = setInterval(() => {
  const until = Math.min(count, Math.round((count * (Date.now() - t0)) / ms));
  while (sent < until) query(sent++);
  if (sent >= count) {
    clearInterval(timer);
    const sendMs = Date.now() - t0;
    setTimeout(() => {
      console.log(JSON.stringify({ sent, sendMs, answers, rcodes }));
      sock.close();
    }, 3000);
  }
}, ms / ticks);
