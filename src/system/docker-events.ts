/**
 * Docker's events stream (GET /events on the Engine API socket), filtered to what moves a
 * container's address: container start/die/destroy, network connect/disconnect/create/destroy.
 * One JSON object per event; the parsing is pure (src/policy/follow.ts), this is the socket.
 */
import http from 'node:http';

export const EVENT_FILTERS = { type: ['container', 'network'], event: ['start', 'die', 'destroy', 'connect', 'disconnect', 'create'] };

export interface EventStream {
  close(): void;
}

export interface EventStreamHandlers {
  /** one event object, as Docker sent it */
  onEvent: (raw: unknown) => void;
  /** the stream is open (Docker answered 200): a full inventory read now misses nothing */
  onOpen: () => void;
  /** the stream ended or could not be opened (dockerd restarted, stopped): events may have been missed */
  onClose: (why: string) => void;
}

/** Largest single event accepted (a container with very many labels is a few KiB). */
const MAX_LINE = 1 << 20;

export function watchDockerEvents(socket: string, h: EventStreamHandlers): EventStream {
  let closed = false;
  let reported = false;
  const end = (why: string) => {
    if (reported) return;
    reported = true;
    if (!closed) h.onClose(why);
  };
  const path = `/events?filters=${encodeURIComponent(JSON.stringify(EVENT_FILTERS))}`;
  const req = http.request({ socketPath: socket, path, method: 'GET', agent: false, headers: { Host: 'docker', Accept: 'application/json' } }, (res) => {
    if (res.statusCode !== 200) {
      res.resume();
      return end(`GET /events answered ${res.statusCode}`);
    }
    h.onOpen();
    res.setEncoding('utf8');
    let buf = '';
    res.on('data', (chunk: string) => {
      buf += chunk;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        let event: unknown;
        try {
          event = JSON.parse(line);
        } catch {
          continue; // not JSON: skipped (the next full inventory corrects anything missed)
        }
        h.onEvent(event);
      }
      if (buf.length > MAX_LINE) {
        req.destroy();
        end('an event larger than 1 MiB');
      }
    });
    res.on('end', () => end('the stream ended (dockerd stopped or restarted?)'));
    res.on('error', (e) => end(e.message));
  });
  req.on('error', (e) => end(`cannot reach dockerd at ${socket}: ${(e as NodeJS.ErrnoException).code ?? e.message}`));
  req.end();
  return {
    close() {
      closed = true;
      req.destroy();
    },
  };
}
