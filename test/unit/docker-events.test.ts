import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EVENT_FILTERS, watchDockerEvents } from '../../src/system/docker-events.js';

describe('Docker events stream (GET /events on a unix socket)', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  async function serve(handler: http.RequestListener): Promise<{ socket: string; close: () => Promise<void> }> {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'efw-events-'));
    dirs.push(dir);
    const socket = path.join(dir, 'docker.sock');
    const server = http.createServer(handler);
    await new Promise<void>((r) => server.listen(socket, r));
    return { socket, close: () => new Promise<void>((r) => server.close(() => r())) };
  }

  it('asks for the filtered events, hands over each JSON line (split across chunks), skips what is not JSON, and says when it ends', async () => {
    let asked = '';
    const s = await serve((req, res) => {
      asked = decodeURIComponent(req.url ?? '');
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.write('{"Type":"container","Action":"start","Actor":{"ID":"ab');
      setTimeout(() => {
        res.write('c"}}\nnot json\n{"Type":"network","Action":"connect"}\n');
        res.end();
      }, 20);
    });
    const got: unknown[] = [];
    let opened = 0;
    const closed = await new Promise<string>((resolve) => watchDockerEvents(s.socket, { onOpen: () => opened++, onEvent: (e) => got.push(e), onClose: resolve }));
    expect(asked).toBe(`/events?filters=${JSON.stringify(EVENT_FILTERS)}`);
    expect(opened).toBe(1);
    expect(got).toEqual([{ Type: 'container', Action: 'start', Actor: { ID: 'abc' } }, { Type: 'network', Action: 'connect' }]);
    expect(closed).toMatch(/ended/);
    await s.close();
  });

  it('a dockerd that is not there is a closed stream with the reason, never a throw', async () => {
    const why = await new Promise<string>((resolve) => watchDockerEvents('/nonexistent/docker.sock', { onOpen: () => {}, onEvent: () => {}, onClose: resolve }));
    expect(why).toMatch(/cannot reach dockerd at \/nonexistent\/docker\.sock: ENOENT/);
  });

  it('close() ends it without reporting a loss', async () => {
    const s = await serve((_req, res) => {
      res.writeHead(200);
      res.write('\n');
    });
    let lost = false;
    const w = await new Promise<ReturnType<typeof watchDockerEvents>>((resolve) => {
      const x = watchDockerEvents(s.socket, { onOpen: () => resolve(x), onEvent: () => {}, onClose: () => (lost = true) });
    });
    w.close();
    await new Promise((r) => setTimeout(r, 50));
    expect(lost).toBe(false);
    await s.close();
  });
});
