/** Is the gate answering? One UDP query to it over loopback; any well-formed answer counts. */
import dgram from 'node:dgram';
import { randomInt } from 'node:crypto';

/** Never allowed (".invalid" cannot be registered): the gate answers REFUSED and does not log it from loopback. */
export const PROBE_NAME = 'health.egressfw.invalid';

export function probeGate(port: number, host = '127.0.0.1', timeoutMs = 500): Promise<{ ok: boolean; ms: number; detail: string }> {
  const id = randomInt(0, 0x10000);
  const labels = PROBE_NAME.split('.');
  const q = Buffer.concat([
    Buffer.from([id >> 8, id & 0xff, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]),
    ...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])),
    Buffer.from([0, 0, 1, 0, 1]),
  ]);
  const t0 = process.hrtime.bigint();
  const ms = () => Number(process.hrtime.bigint() - t0) / 1e6;
  return new Promise((resolve) => {
    const sock = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const done = (ok: boolean, detail: string) => {
      clearTimeout(timer);
      sock.close();
      resolve({ ok, ms: ms(), detail });
    };
    const timer = setTimeout(() => done(false, `no answer within ${timeoutMs} ms`), timeoutMs);
    sock.on('error', (e) => done(false, e.message));
    sock.on('message', (m) => {
      if (m.length >= 12 && m.readUInt16BE(0) === id && m[2]! & 0x80) done(true, 'answering');
    });
    sock.send(q, port, host);
  });
}
